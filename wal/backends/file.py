"""File storage (the default): etcd's on-disk layout, the segmented WAL plus ``.snap`` files.

``<dir>/member/wal/%016x-%016x.wal`` and ``<dir>/member/snap/%016x-%016x.snap``. Start-up
follows etcd's bootstrap: list the WAL's valid snapshot records (index <= committed), load
the newest readable ``.snap`` among them (broken ones become ``.broken``), open the WAL at
that snapshot and read everything after it, repairing a torn tail once. A snapshot is saved
as etcd v3.5 does it: the ``.snap`` file first, then the WAL snapshot record, so a crash
can orphan a file but never leave a WAL record without its file. ``compact`` releases the
segment locks below the snapshot (keeping the largest, as etcd) and purges unlocked segments
beyond ``max_wals``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from wal.errors import (
    FsyncError,
    NoSnapshotError,
    UnexpectedEOFError,
    WALError,
    WALExistsError,
    WALNotFoundError,
)
from wal.fileutil import LockedFile, fsync_dir
from wal.hooks import HOOKS, Hooks
from wal.pagewriter import Chunk
from wal.purge import purge
from wal.records import Entry, HardState, SnapshotRecord
from wal.repair import repair
from wal.segment import exist
from wal.snap import DEFAULT_MAX_SNAPSHOTS, Snapshot, Snapshotter, snap_name
from wal.storage import (
    FaultHook,
    Lifecycle,
    LoadedState,
    LogBounds,
    Phase,
    SnapshotDataWriter,
    after_append,
    after_snapshot,
    check_append,
    check_compact,
    check_snapshot,
    snapshot_replaces_log,
)
from wal.verify import valid_snapshot_entries
from wal.wal import WAL

DEFAULT_MAX_WALS = 5  # etcd's --max-wals default; 0 keeps every segment
LOCK_NAME = "raftnode.lock"


class FileStorage:
    """The ``file`` backend."""

    __slots__ = (
        "_bounds",
        "_hook",
        "_life",
        "_lock",
        "_wal",
        "max_wals",
        "member_dir",
        "preallocate",
        "segment_size",
        "snap_dir",
        "snapshotter",
        "unsafe_no_fsync",
        "wal_dir",
    )

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        *,
        unsafe_no_fsync: bool = False,
        segment_size: int | None = None,
        preallocate: bool = True,
        max_wals: int = DEFAULT_MAX_WALS,
        max_snapshots: int = DEFAULT_MAX_SNAPSHOTS,
        hook: FaultHook | None = None,
    ) -> None:
        if max_wals < 0:
            raise ValueError(f"max_wals must be >= 0 (0 = unlimited), got {max_wals}")
        self.member_dir = Path(dirpath) / "member"
        self.wal_dir = self.member_dir / "wal"
        self.snap_dir = self.member_dir / "snap"
        self.unsafe_no_fsync = unsafe_no_fsync
        self.segment_size = segment_size
        self.preallocate = preallocate
        self.max_wals = max_wals
        self.snapshotter = Snapshotter(
            self.snap_dir, unsafe_no_fsync=unsafe_no_fsync, max_snapshots=max_snapshots
        )
        self._hook = hook
        self._life = Lifecycle(f"file:{self.member_dir}")
        self._wal: WAL | None = None
        self._lock: LockedFile | None = None
        self._bounds = LogBounds()

    # --- lifecycle ---

    def exists(self) -> bool:
        self._life.require(Phase.NEW, Phase.OPEN)
        return exist(str(self.wal_dir))

    def bootstrap(self, metadata: bytes) -> None:
        self._life.require(Phase.NEW)
        self._acquire()
        try:
            if exist(str(self.wal_dir)):
                raise WALExistsError(f"file storage: a WAL already exists in {self.wal_dir}")
            try:
                self.snap_dir.mkdir(parents=True, exist_ok=True)
                if not self.unsafe_no_fsync:
                    fsync_dir(str(self.member_dir))
                    fsync_dir(str(self.member_dir.parent))
            except OSError as exc:
                raise FsyncError(f"file storage: cannot create {self.member_dir}: {exc}") from exc
            try:
                w = WAL.create(
                    str(self.wal_dir),
                    bytes(metadata),
                    segment_size=self.segment_size,
                    unsafe_no_fsync=self.unsafe_no_fsync,
                    preallocate=self.preallocate,
                )
                w.close()
            except OSError as exc:
                raise FsyncError(f"file storage: cannot create {self.wal_dir}: {exc}") from exc
        finally:
            self._release()

    def load(self) -> LoadedState:
        self._life.require(Phase.NEW)
        if not exist(str(self.wal_dir)):
            raise WALNotFoundError(f"file storage: no WAL in {self.wal_dir}")
        # The member lock comes first: nothing in snap/ may be renamed or cleaned up while
        # another process is this member's writer.
        self._acquire()
        try:
            valid = valid_snapshot_entries(str(self.wal_dir))
            try:
                snap: Snapshot | None = self.snapshotter.load_newest_available(valid)
            except NoSnapshotError:
                snap = None  # etcd: "Recovering WAL from scratch"
            record = snap.record if snap is not None else SnapshotRecord()
            w, (metadata, hard_state, entries) = self._open_and_read(record)
        except BaseException:
            self._release()
            raise
        state = LoadedState(
            metadata=metadata, hard_state=hard_state, snapshot=snap, entries=entries
        )
        self._wal = w
        self._bounds = LogBounds.of(state)
        self._life.phase = Phase.OPEN
        return state

    def _open_and_read(
        self, record: SnapshotRecord
    ) -> tuple[WAL, tuple[bytes, HardState, list[Entry]]]:
        """Open for append and read all; repair a torn tail once and retry (etcd's readWAL)."""
        repaired = False
        while True:
            w = WAL.open(
                str(self.wal_dir),
                record,
                segment_size=self.segment_size,
                unsafe_no_fsync=self.unsafe_no_fsync,
            )
            try:
                read = w.read_all()
            except UnexpectedEOFError:
                w.close()
                if repaired or not repair(str(self.wal_dir)):
                    raise
                repaired = True
                continue
            except BaseException:
                w.close()
                raise
            if self._hook is not None:  # keep the process-wide metrics observers
                w.hooks = Hooks(
                    failpoint=self._hook, on_fsync=HOOKS.on_fsync, on_write=HOOKS.on_write
                )
            return w, read

    def close(self) -> None:
        if self._life.phase is Phase.CLOSED:
            return
        w = self._wal
        self._wal = None
        if self._life.phase is not Phase.FAILED:
            self._life.phase = Phase.CLOSED
        try:
            if w is not None:
                w.close()
        except WALError:
            pass  # a failed WAL may refuse a clean close; its files are released anyway
        finally:
            self._release()

    def _acquire(self) -> None:
        """Lock ``member/raftnode.lock``: one writer per member, WALLockedError at once."""
        self.member_dir.mkdir(parents=True, exist_ok=True)
        self._lock = LockedFile(str(self.member_dir / LOCK_NAME), os.O_RDWR | os.O_CREAT)

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()

    # --- writes ---

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        self._life.require(Phase.OPEN)
        check_append(self._bounds, entries)
        if hard_state is not None and hard_state.is_empty():
            hard_state = None  # raft's IsEmptyHardState: nothing to persist (as the WAL does)
        if hard_state is None and not entries:
            return
        w = self._wal
        assert w is not None
        try:
            w.save(hard_state, entries)
        except BaseException as exc:
            self._fatal(exc, "save")
        after_append(self._bounds, hard_state, entries)

    def snapshot_data_writer(self) -> SnapshotDataWriter:
        """Writes the ``.snap`` file (temp, fsync, rename, directory fsync) and nothing
        else, with the backend's one Snapshotter: it remembers the last file's parts, so
        the new file references those it is handed again, and a purge on the disk thread
        meanwhile sees which older files this save pins."""
        snapper = self.snapshotter

        def write(record: SnapshotRecord, data: Sequence[Chunk]) -> None:
            snapper.save_parts(record, data, purge=False)
        return write

    def save_snapshot(self, snapshot: Snapshot, *, data_written: bool = False) -> None:
        self._life.require(Phase.OPEN)
        check_snapshot(self._bounds, snapshot)
        if data_written and not (self.snapshotter.dir
                                 / snap_name(snapshot.term, snapshot.index)).exists():
            raise NoSnapshotError(
                f"snapshot {snapshot.term}/{snapshot.index} said written, but "
                f"{snap_name(snapshot.term, snapshot.index)} is not in {self.snapshotter.dir}")
        # A replacing snapshot (raft's restore) drops the log after it: the WAL's replay
        # must apply that on reload from the snapshot record alone (etcd-io/etcd#22442).
        replaced = snapshot_replaces_log(self._bounds, snapshot)
        w = self._wal
        assert w is not None
        try:
            if not data_written:  # the file first (etcd v3.5 order)
                self.snapshotter.save(snapshot, purge=False)
            w.save_snapshot(snapshot.record)
        except BaseException as exc:
            self._fatal(exc, "save_snapshot")
        after_snapshot(self._bounds, snapshot, replaced)
        try:  # only now may older files go, and never the one a reload would start from
            self.snapshotter.purge(protect=self._bounds.compactable())
        except BaseException as exc:
            self._fatal(exc, "purging snapshot files")

    def compact(self, index: int) -> None:
        self._life.require(Phase.OPEN)
        check_compact(self._bounds, index)
        w = self._wal
        assert w is not None
        try:
            w.release_lock_to(index)
            if self.max_wals:
                purge(str(self.wal_dir), self.max_wals)
        except BaseException as exc:
            self._fatal(exc, "compact")

    def _fatal(self, exc: BaseException, what: str) -> NoReturn:
        """Re-raise typed, failing the backend for good unless nothing was written.

        WALErrors other than FsyncError are refusals the WAL makes before writing a byte:
        nothing changed. Anything else (an I/O fault, or an exception that interrupted a
        write half-way) leaves the medium in doubt: the backend is failed.
        """
        if isinstance(exc, WALError) and not isinstance(exc, FsyncError):
            raise exc
        self._life.fail(exc)
        if isinstance(exc, OSError):
            raise FsyncError(f"file storage {self.member_dir}: {what} failed: {exc}") from exc
        raise exc
