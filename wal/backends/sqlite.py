"""SQLite storage: stdlib sqlite3 as the log, the hashicorp raft-boltdb design for comparison.

One database ``<dir>/member/raft.sqlite`` in WAL journal mode with ``synchronous=FULL``
(``OFF`` under unsafe_no_fsync), three tables (``state``: one row of metadata and hard
state; ``log``: one row per entry; ``snapshot``: data with our own CRC-32C, since SQLite does
not checksum pages) and one transaction per ``save``, so a batch and its hard state become
durable together at COMMIT. A lock on ``raft.sqlite.lock`` (the WAL's own LockedFile) keeps a
second writer out with WALLockedError, as the file WAL does (SQLite's locks would make it wait).
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import crc32c

from wal.errors import (
    FsyncError,
    SliceOutOfRangeError,
    SnapshotCRCError,
    WALError,
    WALExistsError,
    WALNotFoundError,
)
from wal.fileutil import LockedFile, fsync_dir
from wal.hooks import HOOKS
from wal.records import Entry, HardState
from wal.snap import DEFAULT_MAX_SNAPSHOTS, Snapshot
from wal.storage import (
    WAL_AFTER_FSYNC,
    WAL_BEFORE_FSYNC,
    WAL_WRITE,
    FaultHook,
    Lifecycle,
    LoadedState,
    LogBounds,
    Phase,
    after_append,
    after_snapshot,
    check_append,
    check_compact,
    check_snapshot,
    snapshot_replaces_log,
)

DB_NAME = "raft.sqlite"
SCHEMA_VERSION = 1
_SCHEMA = (
    "CREATE TABLE state (id INTEGER PRIMARY KEY CHECK (id = 0), schema INTEGER NOT NULL,"
    " metadata BLOB NOT NULL, term INTEGER NOT NULL, vote INTEGER NOT NULL,"
    " comm INTEGER NOT NULL)",
    "CREATE TABLE log (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,"
    " type INTEGER NOT NULL, data BLOB NOT NULL)",
    "CREATE TABLE snapshot (idx INTEGER PRIMARY KEY, term INTEGER NOT NULL,"
    " crc INTEGER NOT NULL, data BLOB NOT NULL)",
)


class SqliteStorage:
    """The ``sqlite`` backend."""

    __slots__ = (
        "_bounds",
        "_db",
        "_hook",
        "_life",
        "_lock",
        "dir",
        "max_snapshots",
        "path",
        "unsafe_no_fsync",
    )

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        *,
        unsafe_no_fsync: bool = False,
        max_snapshots: int = DEFAULT_MAX_SNAPSHOTS,
        hook: FaultHook | None = None,
    ) -> None:
        self.dir = Path(os.path.abspath(dirpath)) / "member"  # absolute: sqlite opens a URI
        self.path = self.dir / DB_NAME
        self.unsafe_no_fsync = unsafe_no_fsync
        self.max_snapshots = max_snapshots
        self._hook = hook
        self._life = Lifecycle(f"sqlite:{self.path}")
        self._db: sqlite3.Connection | None = None
        self._lock: LockedFile | None = None
        self._bounds = LogBounds()

    # --- lifecycle ---

    def exists(self) -> bool:
        self._life.require(Phase.NEW, Phase.OPEN)
        if self._life.phase is Phase.OPEN:
            return True
        if not self.path.exists():
            return False
        db = self._connect(create=False)
        try:
            return self._has_state(db)
        finally:
            db.close()

    def bootstrap(self, metadata: bytes) -> None:
        self._life.require(Phase.NEW)
        self._acquire()
        try:
            if self.path.exists():
                db = self._connect(create=False)
                try:
                    if self._has_state(db):
                        raise WALExistsError(f"sqlite storage {self.path} already exists")
                finally:
                    db.close()
                # A bootstrap that crashed before its commit left an empty file: start over.
                for suffix in ("", "-wal", "-shm"):
                    Path(str(self.path) + suffix).unlink(missing_ok=True)
            db = self._connect(create=True)
            try:
                with self._txn(db):
                    for stmt in _SCHEMA:
                        db.execute(stmt)
                    db.execute(
                        "INSERT INTO state VALUES (0, ?, ?, 0, 0, 0)",
                        (SCHEMA_VERSION, bytes(metadata)),
                    )
            finally:
                db.close()
            if not self.unsafe_no_fsync:
                fsync_dir(str(self.dir))
        except sqlite3.Error as exc:
            raise FsyncError(f"sqlite storage {self.path}: bootstrap failed: {exc}") from exc
        finally:
            self._release()

    def load(self) -> LoadedState:
        self._life.require(Phase.NEW)
        if not self.path.exists():
            raise WALNotFoundError(f"sqlite storage {self.path} does not exist")
        self._acquire()
        try:
            db = self._connect(create=False)
            self._db = db
            if not self._has_state(db):
                raise WALNotFoundError(f"sqlite storage {self.path} was never bootstrapped")
            state = self._read(db)
        except BaseException:
            self._close_db()
            self._release()
            raise
        self._bounds = LogBounds.of(state)
        self._life.phase = Phase.OPEN
        return state

    def close(self) -> None:
        if self._life.phase is Phase.CLOSED:
            return
        self._close_db()
        self._release()
        if self._life.phase is not Phase.FAILED:
            self._life.phase = Phase.CLOSED

    # --- writes ---

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        self._life.require(Phase.OPEN)
        check_append(self._bounds, entries)
        if hard_state is not None and hard_state.is_empty():
            hard_state = None  # raft's IsEmptyHardState: nothing to persist (as the WAL does)
        if hard_state is None and not entries:
            return
        db = self._db
        assert db is not None
        with self._write("save"):
            self._fault(WAL_WRITE)
            db.execute("BEGIN IMMEDIATE")
            if entries:
                db.execute("DELETE FROM log WHERE idx >= ?", (entries[0].index,))
                db.executemany(
                    "INSERT INTO log VALUES (?, ?, ?, ?)",
                    [(e.index, e.term, e.type, e.data) for e in entries],
                )
            if hard_state is not None:
                db.execute(
                    "UPDATE state SET term = ?, vote = ?, comm = ? WHERE id = 0",
                    (hard_state.term, hard_state.vote, hard_state.commit),
                )
            self._fault(WAL_BEFORE_FSYNC)
            self._commit(db)
            self._fault(WAL_AFTER_FSYNC)
        after_append(self._bounds, hard_state, entries)

    def snapshot_data_writer(self) -> None:
        return None  # the data is part of the store's own write

    def save_snapshot(self, snapshot: Snapshot, *, data_written: bool = False) -> None:
        self._life.require(Phase.OPEN)
        if data_written:
            raise ValueError("this backend writes snapshot data itself: data_written=False")
        check_snapshot(self._bounds, snapshot)
        replaced = snapshot_replaces_log(self._bounds, snapshot)
        db = self._db
        assert db is not None
        with self._write("save_snapshot"):
            self._fault(WAL_WRITE)
            db.execute("BEGIN IMMEDIATE")
            if replaced:  # raft's restore: the entries after the snapshot are stale
                db.execute("DELETE FROM log WHERE idx > ?", (snapshot.index,))
            db.execute(
                "INSERT OR REPLACE INTO snapshot VALUES (?, ?, ?, ?)",
                (snapshot.index, snapshot.term, crc32c.crc32c(snapshot.data), snapshot.data),
            )
            if self.max_snapshots:  # never drop the snapshot a reload would start from
                b = self._bounds
                protect = snapshot.index if snapshot.index <= b.commit else b.compactable()
                db.execute(
                    "DELETE FROM snapshot WHERE idx < ? AND idx NOT IN"
                    " (SELECT idx FROM snapshot ORDER BY term DESC, idx DESC LIMIT ?)",
                    (protect, self.max_snapshots),
                )
            self._fault(WAL_BEFORE_FSYNC)
            self._commit(db)
            self._fault(WAL_AFTER_FSYNC)
        after_snapshot(self._bounds, snapshot, replaced)

    def compact(self, index: int) -> None:
        self._life.require(Phase.OPEN)
        check_compact(self._bounds, index)
        db = self._db
        assert db is not None
        with self._write("compact"):
            db.execute("BEGIN IMMEDIATE")
            db.execute("DELETE FROM log WHERE idx <= ?", (index,))
            db.execute("COMMIT")

    # --- helpers ---

    def _fault(self, point: str) -> None:
        hook = self._hook if self._hook is not None else HOOKS.failpoint
        if hook is not None:
            hook(point)

    def _commit(self, db: sqlite3.Connection) -> None:
        """COMMIT, where synchronous=FULL fsyncs; timed like the WAL's fdatasync."""
        t0 = time.perf_counter()
        db.execute("COMMIT")
        observe = HOOKS.on_fsync
        if observe is not None and not self.unsafe_no_fsync:
            observe(time.perf_counter() - t0)

    @contextmanager
    def _write(self, what: str) -> Iterator[None]:
        """Any failure inside a write is fatal: roll back, mark failed, raise FsyncError
        (or re-raise what was not an I/O error, e.g. a failpoint's panic)."""
        try:
            yield
        except BaseException as exc:  # whatever interrupted a write leaves it in doubt
            self._life.fail(exc)
            db = self._db
            if db is not None and db.in_transaction:
                try:
                    db.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            if isinstance(exc, (sqlite3.Error, OSError)):
                raise FsyncError(f"sqlite storage {self.path}: {what} failed: {exc}") from exc
            raise

    @contextmanager
    def _txn(self, db: sqlite3.Connection) -> Iterator[None]:
        db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        if create:
            self.dir.mkdir(parents=True, exist_ok=True)
            uri = f"{self.path.as_uri()}?mode=rwc"
        else:
            uri = f"{self.path.as_uri()}?mode=rw"
        try:
            db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(f"PRAGMA synchronous={'OFF' if self.unsafe_no_fsync else 'FULL'}")
        except sqlite3.Error as exc:
            raise WALError(f"sqlite storage {self.path}: cannot open: {exc}") from exc
        return db

    @staticmethod
    def _has_state(db: sqlite3.Connection) -> bool:
        row = db.execute(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'state'"
        ).fetchone()
        if not row or row[0] == 0:
            return False
        return db.execute("SELECT 1 FROM state WHERE id = 0").fetchone() is not None

    def _read(self, db: sqlite3.Connection) -> LoadedState:
        schema, metadata, term, vote, comm = db.execute(
            "SELECT schema, metadata, term, vote, comm FROM state WHERE id = 0"
        ).fetchone()
        if schema != SCHEMA_VERSION:
            raise WALError(f"sqlite storage {self.path}: unknown schema version {schema}")
        hard_state = HardState(term=term, vote=vote, commit=comm)
        snap = None
        row = db.execute(
            "SELECT idx, term, crc, data FROM snapshot WHERE idx <= ? ORDER BY idx DESC LIMIT 1",
            (comm,),
        ).fetchone()
        if row is not None:
            idx, sterm, crc, data = row
            if crc32c.crc32c(data) != crc:
                raise SnapshotCRCError(
                    f"sqlite storage {self.path}: snapshot at index {idx} fails its CRC"
                )
            snap = Snapshot(index=idx, term=sterm, data=bytes(data))
        after = snap.index if snap is not None else 0
        entries = [
            Entry(index=i, term=t, data=bytes(d), type=ty)
            for i, t, ty, d in db.execute(
                "SELECT idx, term, type, data FROM log WHERE idx > ? ORDER BY idx", (after,)
            )
        ]
        if entries and (
            entries[0].index != after + 1 or entries[-1].index - after != len(entries)
        ):
            raise SliceOutOfRangeError(
                f"sqlite storage {self.path}: log after snapshot {after} is not contiguous"
            )
        return LoadedState(
            metadata=bytes(metadata), hard_state=hard_state, snapshot=snap, entries=entries
        )

    def _acquire(self) -> None:
        """Exclusive lock on ``raft.sqlite.lock``: WALLockedError at once if held elsewhere."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock = LockedFile(str(self.dir / (DB_NAME + ".lock")), os.O_RDWR | os.O_CREAT)

    def _release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.close()

    def _close_db(self) -> None:
        db = self._db
        if db is not None:
            self._db = None
            try:
                db.close()
            except sqlite3.Error:
                pass
