"""The segmented write-ahead log: etcd's ``wal.WAL`` with the same recovery rules.

Life cycle: ``create`` a new log, or ``open`` one (for append) / ``open_for_read`` at a
snapshot, then ``read_all`` once (which, in write mode, also zeroes any torn tail and
positions the writer), then ``save``/``save_snapshot``, and ``close``.

Any write or fsync error is fatal for the object (fail-stop, never retried): it raises
:class:`FsyncError` and every later call raises too. An fsync that failed may have lost
the dirty pages it was meant to persist; retrying and succeeding would lie.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from collections.abc import Sequence
from types import TracebackType

from wal.decoder import Decoder
from wal.errors import (
    FsyncError,
    SliceOutOfRangeError,
    SnapshotNotFoundError,
    WALError,
    WALExistsError,
)
from wal.fileutil import (
    PRIVATE_DIR_MODE,
    LockedFile,
    fdatasync,
    fsync_dir,
    zero_to_end,
)
from wal.fileutil import preallocate as preallocate_file
from wal.framing import (
    CRC,
    METADATA,
    SNAPSHOT,
    STATE,
    Chunk,
    Encoder,
    pack_snapshot,
    pack_state,
)
from wal.hooks import HOOKS, WAL_AFTER_FSYNC, WAL_BEFORE_FSYNC, WAL_WRITE, Hooks
from wal.pagewriter import PageWriter
from wal.pipeline import FilePipeline
from wal.records import Entry, HardState, SnapshotRecord
from wal.replay import replay
from wal.segment import exist, parse_wal_name, select_wal_files, wal_name

#: Default segment size: 64,000,000 bytes (etcd's, not MiB). Tests may lower it.
SEGMENT_SIZE_BYTES = 64_000_000
#: An fdatasync slower than this is logged (etcd's warnSyncDuration).
WARN_SYNC_SECONDS = 1.0

log = logging.getLogger("wal")
_EMPTY_STATE = HardState()


class WAL:
    """A write-ahead log directory, opened for append or for read."""

    def __init__(
        self,
        dirpath: str,
        *,
        segment_size: int | None,
        unsafe_no_fsync: bool,
        preallocate: bool,
        write: bool,
    ) -> None:
        self.dir = dirpath
        self.segment_size = SEGMENT_SIZE_BYTES if segment_size is None else segment_size
        if self.segment_size <= 0:
            raise ValueError(f"segment_size must be positive, got {self.segment_size}")
        self.unsafe_no_fsync = unsafe_no_fsync
        self.preallocate = preallocate
        self.hooks: Hooks = HOOKS
        self.metadata = b""
        self.state = _EMPTY_STATE
        self.start = SnapshotRecord()
        self.enti = 0  # index of the last entry written (or snapshot, if later)
        self._write_mode = write
        self._read_paths: list[str] | None = None
        self._locks: list[LockedFile] = []
        self._encoder: Encoder | None = None
        self._pw: PageWriter | None = None
        self._pipeline: FilePipeline | None = None
        self._failed: BaseException | None = None
        self._closed = False

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        dirpath: str | os.PathLike[str],
        metadata: bytes,
        *,
        segment_size: int | None = None,
        unsafe_no_fsync: bool = False,
        preallocate: bool = True,
    ) -> WAL:
        """Make a new WAL in ``dirpath``, atomically: built in ``<dir>.tmp``, then renamed."""
        if type(metadata) is not bytes:
            raise TypeError(f"metadata must be bytes, not {type(metadata).__name__}")
        dirpath = os.path.normpath(os.fspath(dirpath))
        if exist(dirpath):
            raise WALExistsError(f"wal: {dirpath!r} already holds a WAL")
        if os.path.isdir(dirpath) and os.listdir(dirpath):
            raise WALExistsError(f"wal: {dirpath!r} exists and is not empty")
        parent = os.path.dirname(os.path.abspath(dirpath))
        os.makedirs(parent, exist_ok=True)
        tmp = dirpath + ".tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp, PRIVATE_DIR_MODE)
        w = cls(
            dirpath,
            segment_size=segment_size,
            unsafe_no_fsync=unsafe_no_fsync,
            preallocate=preallocate,
            write=True,
        )
        try:
            f = LockedFile(
                os.path.join(tmp, wal_name(0, 0)), os.O_CREAT | os.O_EXCL | os.O_RDWR
            )
            w._locks.append(f)
            if preallocate:
                try:
                    preallocate_file(f.fd, w.segment_size)
                except OSError as err:
                    raise FsyncError(f"wal: cannot preallocate {f.path!r}: {err}") from err
            w.metadata = metadata
            w._encoder = Encoder(0)
            w._pw = PageWriter(f.fd, 0)
            w._write(w._encoder.encode(CRC, b"") + w._encoder.encode(METADATA, metadata))
            w.save_snapshot(SnapshotRecord())
            w._rename_into_place(tmp)
            w._pipeline = FilePipeline(dirpath, w.segment_size, preallocate=preallocate)
        except BaseException:
            w._release()
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return w

    def _rename_into_place(self, tmp: str) -> None:
        if os.path.isdir(self.dir):
            os.rmdir(self.dir)  # empty (checked above); rename cannot replace a full dir
        f = self._locks[0]
        final = os.path.join(self.dir, os.path.basename(f.path))
        if os.name == "nt":  # Windows cannot rename a directory with open files in it
            f.close()
            os.rename(tmp, self.dir)
            nf = LockedFile(final, os.O_RDWR)
            os.lseek(nf.fd, self._pw.end if self._pw else 0, os.SEEK_SET)
            self._locks[0] = nf
            assert self._pw is not None
            self._pw.fd = nf.fd
        else:
            os.rename(tmp, self.dir)
            f.renamed(final)
        t0 = time.perf_counter()
        fsync_dir(os.path.dirname(os.path.abspath(self.dir)))
        self._observe_fsync(time.perf_counter() - t0)

    @classmethod
    def open(
        cls,
        dirpath: str | os.PathLike[str],
        snapshot: SnapshotRecord = SnapshotRecord(),  # noqa: B008 (immutable)
        *,
        segment_size: int | None = None,
        unsafe_no_fsync: bool = False,
        preallocate: bool = True,
    ) -> WAL:
        """Open for append at ``snapshot``: locks every segment from the one holding it."""
        return cls._open_at_index(
            os.fspath(dirpath), snapshot, True, segment_size, unsafe_no_fsync, preallocate
        )

    @classmethod
    def open_for_read(
        cls,
        dirpath: str | os.PathLike[str],
        snapshot: SnapshotRecord = SnapshotRecord(),  # noqa: B008 (immutable)
    ) -> WAL:
        """Open read-only, without locks (works beside a writer); a torn tail is tolerated."""
        return cls._open_at_index(os.fspath(dirpath), snapshot, False, None, False, False)

    @classmethod
    def _open_at_index(
        cls,
        dirpath: str,
        snap: SnapshotRecord,
        write: bool,
        segment_size: int | None,
        unsafe_no_fsync: bool,
        prealloc: bool,
    ) -> WAL:
        names = select_wal_files(dirpath, snap.index)
        w = cls(
            dirpath,
            segment_size=segment_size,
            unsafe_no_fsync=unsafe_no_fsync,
            preallocate=prealloc,
            write=write,
        )
        w.start = snap
        w._read_paths = [os.path.join(dirpath, n) for n in names]
        if write:
            try:
                for p in w._read_paths:
                    w._locks.append(LockedFile(p, os.O_RDWR))
            except BaseException:
                w._release()
                raise
        return w

    # ---- reading ------------------------------------------------------------------------

    def read_all(self) -> tuple[bytes, HardState, list[Entry]]:
        """Metadata, the latest hard state, and the entries after the opened snapshot.

        Entries may be uncommitted: do not apply those above ``state.commit``. In write
        mode the log must end cleanly (a torn tail raises UnexpectedEOFError: run
        ``repair``); the tail past the last record is then zeroed and appends may start.
        """
        self._check_usable()
        paths = self._read_paths
        if paths is None:
            raise WALError(f"wal: decoder not found for {self.dir!r} (read_all already done?)")
        self._read_paths = None
        dec = Decoder(paths)
        r = replay(dec, self.start, tolerate_torn=not self._write_mode)
        if not r.matched:
            raise SnapshotNotFoundError(
                f"wal: snapshot not found in {self.dir!r}: no snapshot record at index "
                f"{self.start.index} (term {self.start.term})"
            )
        self.metadata = r.metadata if r.metadata is not None else b""
        self.state = r.state
        self.enti = r.last_index
        if self._write_mode:
            tail = self._locks[-1]
            assert dec.path == tail.path, (dec.path, tail.path)
            try:
                zero_to_end(tail.fd, dec.last_offset)
                os.lseek(tail.fd, dec.last_offset, os.SEEK_SET)
            except OSError as err:
                raise self._fail(f"zeroing the tail of {tail.path!r}", err) from err
            self._encoder = Encoder(dec.crc)
            self._pw = PageWriter(tail.fd, dec.last_offset)
            self._pipeline = FilePipeline(self.dir, self.segment_size, preallocate=self.preallocate)
        return self.metadata, self.state, r.entries

    # ---- writing ------------------------------------------------------------------------

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Append ``entries`` then ``hard_state``, in one write; fdatasync when raft needs it.

        Sync happens when there are entries or the term/vote changed (raft's MustSync); a
        commit-only change is written but not synced. Bad input raises before any byte is
        written. Rotates to a new segment once the tail passes ``segment_size``.
        """
        enc, pw = self._writer()
        no_state = hard_state is None or hard_state.is_empty()
        if no_state and not entries:
            return
        parts: list[Chunk] = []
        state_data = b"" if hard_state is None or no_state else enc.pack_state(hard_state)
        last = -1
        if entries:
            first = entries[0].index
            if first < 0:
                raise ValueError(f"entry index {first} is negative")
            if first > self.enti + 1:
                raise SliceOutOfRangeError(
                    f"wal: entry {first} would leave a gap after index {self.enti} in {self.dir!r}"
                )
            last = enc.encode_entries(entries, parts)
        if hard_state is not None and not no_state:
            parts.append(enc.encode(STATE, state_data))
            must_sync = bool(entries) or (
                hard_state.term != self.state.term or hard_state.vote != self.state.vote
            )
            self.state = hard_state
        else:
            must_sync = True
        # a save that syncs flushes at once: one writev, the page writer copies nothing
        self._write_parts(parts, sum(map(len, parts)), flush=must_sync)
        if entries:
            self.enti = last
        if pw.end < self.segment_size:
            if must_sync:
                self._sync()
            return
        self._cut()

    def save_snapshot(self, snapshot: SnapshotRecord) -> None:
        """Record a snapshot marker and sync (always: a purge may follow)."""
        enc, _ = self._writer()
        data = pack_snapshot(snapshot)
        self._write(enc.encode(SNAPSHOT, data))
        self.enti = max(self.enti, snapshot.index)
        self._sync()

    def release_lock_to(self, index: int) -> None:
        """Release locks of segments wholly below ``index``, keeping the largest of them.

        etcd's rule: holding 1..6, ``release_lock_to(4)`` releases 1,2 and keeps 3. If no
        segment starts at or above ``index``, all but the last are released.
        """
        self._check_usable()
        locks = self._locks
        if not locks:
            return
        smaller = len(locks) - 1
        for i, lf in enumerate(locks):
            if parse_wal_name(os.path.basename(lf.path))[1] >= index:
                smaller = i - 1
                break
        if smaller <= 0:
            return
        for lf in locks[:smaller]:
            lf.close()
        del locks[:smaller]

    def close(self) -> None:
        """Flush and sync the tail (unless failed), stop the pipeline, release every lock.

        Idempotent, and never refuses: a failed WAL still lets go of its files.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._pipeline is not None:
                self._pipeline.close()
                self._pipeline = None
            if self._failed is None and self._pw is not None:
                self._sync()
        finally:
            self._release()

    def __enter__(self) -> WAL:
        return self

    def __exit__(
        self,
        et: type[BaseException] | None,
        ev: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def tail_path(self) -> str | None:
        """Path of the segment being appended to (None in read mode)."""
        return self._locks[-1].path if self._locks else None

    @property
    def locked_paths(self) -> list[str]:
        return [lf.path for lf in self._locks]

    @property
    def failed(self) -> bool:
        return self._failed is not None

    # ---- internals ----------------------------------------------------------------------

    def _release(self) -> None:
        if self._pipeline is not None:
            try:
                self._pipeline.close()
            finally:
                self._pipeline = None
        for lf in self._locks:
            lf.close()
        self._locks.clear()

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise FsyncError(
                f"wal: {self.dir!r} is unusable after an earlier failure: {self._failed!r}"
            )
        if self._closed:
            raise WALError(f"wal: {self.dir!r} is closed")

    def _writer(self) -> tuple[Encoder, PageWriter]:
        self._check_usable()
        if not self._write_mode:
            raise WALError(f"wal: {self.dir!r} was opened for read")
        if self._encoder is None or self._pw is None:
            raise WALError(f"wal: read_all must run before appending to {self.dir!r}")
        return self._encoder, self._pw

    def _fail(self, what: str, err: BaseException) -> FsyncError:
        self._failed = err
        return FsyncError(f"wal: {what} failed in {self.dir!r}: {err}; the WAL is now unusable")

    def _tail_name(self) -> str:
        return self._locks[-1].path if self._locks else self.dir

    def _write(self, data: bytes) -> None:
        self._write_parts((data,), len(data))

    def _write_parts(self, parts: Sequence[Chunk], total: int, *, flush: bool = False) -> None:
        pw = self._pw
        assert pw is not None
        hooks = self.hooks
        t0 = time.perf_counter()
        try:
            if hooks.failpoint is not None:
                hooks.failpoint(WAL_WRITE)
            pw.write_parts(parts, total, flush=flush)
        except OSError as err:
            raise self._fail(f"write to {self._tail_name()!r}", err) from err
        except BaseException as err:
            self._failed = err
            raise
        if hooks.on_write is not None:
            hooks.on_write(time.perf_counter() - t0, total)

    def _sync(self) -> None:
        pw = self._pw
        assert pw is not None
        hooks = self.hooks
        try:
            pw.flush()
        except OSError as err:
            raise self._fail(f"write to {self._tail_name()!r}", err) from err
        except BaseException as err:
            self._failed = err
            raise
        if self.unsafe_no_fsync:
            return
        fp = hooks.failpoint
        t0 = time.perf_counter()
        try:
            if fp is not None:
                fp(WAL_BEFORE_FSYNC)
            fdatasync(pw.fd)
            if fp is not None:
                fp(WAL_AFTER_FSYNC)
        except OSError as err:
            raise self._fail(f"fdatasync of {self._tail_name()!r}", err) from err
        except BaseException as err:
            self._failed = err
            raise
        dt = time.perf_counter() - t0
        self._observe_fsync(dt)
        if dt > WARN_SYNC_SECONDS:
            log.warning("slow fdatasync of %s: %.3fs (expected < %ss)", self._tail_name(), dt,
                        WARN_SYNC_SECONDS)

    def _observe_fsync(self, seconds: float) -> None:
        if self.hooks.on_fsync is not None:
            self.hooks.on_fsync(seconds)

    def _cut(self) -> None:
        """Close the tail at its end and continue in a new, self-describing segment.

        The new file (from the pipeline) gets crc, metadata and hard state records and is
        synced under its temp name; only then is it renamed into place and the directory
        synced, so a crash leaves either no new segment or a complete header.
        """
        pw, enc, pipeline = self._pw, self._encoder, self._pipeline
        assert pw is not None and enc is not None and pipeline is not None
        old = self._locks[-1]
        try:
            pw.flush()
            os.ftruncate(old.fd, pw.end)  # no wasted preallocation after an early cut
        except OSError as err:
            raise self._fail(f"truncating {old.path!r}", err) from err
        self._sync()
        seq = parse_wal_name(os.path.basename(old.path))[0]
        final = os.path.join(self.dir, wal_name(seq + 1, self.enti + 1))
        try:
            new = pipeline.open()
        except OSError as err:
            raise self._fail("creating the next segment", err) from err
        except BaseException as err:
            self._failed = err
            raise
        self._locks.append(new)
        nenc = Encoder(enc.crc)
        header = [nenc.encode(CRC, b""), nenc.encode(METADATA, self.metadata)]
        if not self.state.is_empty():
            header.append(nenc.encode(STATE, pack_state(self.state)))
        self._encoder = nenc
        self._pw = PageWriter(new.fd, 0)
        self._write(b"".join(header))
        self._sync()
        end = self._pw.end
        try:
            if os.name == "nt":  # an open file cannot be renamed there
                new.close()
                os.rename(new.path, final)
                reopened = LockedFile(final, os.O_RDWR)
                os.lseek(reopened.fd, end, os.SEEK_SET)
                self._locks[-1] = reopened
                self._pw.fd = reopened.fd
            else:
                os.rename(new.path, final)
                new.renamed(final)
            t0 = time.perf_counter()
            fsync_dir(self.dir)
            self._observe_fsync(time.perf_counter() - t0)
        except OSError as err:
            raise self._fail(f"renaming the new segment to {final!r}", err) from err
        log.info("created a new WAL segment %s", final)


__all__ = ["SEGMENT_SIZE_BYTES", "WAL"]
