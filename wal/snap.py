"""Snapshot files, after etcd's ``snap`` package.

One file per snapshot, named ``%016x-%016x.snap`` by (term, index) so that a reverse lexical
sort is newest first. The file is msgpack ``[FORMAT_VERSION, crc, body]`` where ``body`` is
the msgpack of ``[term, index, data]`` and ``crc`` is CRC-32C of ``body`` (one per file, not
chained). Unlike etcd, which writes straight to the final name, a save goes to a temp file
that is fsynced, renamed into place and followed by a directory fsync: a crash leaves either
the old set of files or the new one, never a half-written ``.snap``.

A file that cannot be read is renamed ``<name>.broken`` (kept for the operator) and the next
older one is tried, exactly like etcd's ``loadMatching``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import crc32c
import msgpack

from wal.errors import (
    EmptySnapshotError,
    FsyncError,
    NoSnapshotError,
    SliceOutOfRangeError,
    SnapshotCorruptError,
    SnapshotCRCError,
)
from wal.fileutil import fsync_dir
from wal.pagewriter import Chunk, writev_all
from wal.records import SnapshotRecord

SNAP_SUFFIX = ".snap"
BROKEN_SUFFIX = ".broken"
TMP_SUFFIX = ".tmp"
FORMAT_VERSION = 1
DEFAULT_MAX_SNAPSHOTS = 5  # etcd's --max-snapshots default; 0 keeps every file
_NAME_RE = re.compile(r"^([0-9a-f]{16})-([0-9a-f]{16})\.snap$")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A state-machine snapshot as stored: the log position it covers and opaque data."""

    index: int
    term: int
    data: bytes

    @property
    def record(self) -> SnapshotRecord:
        return SnapshotRecord(self.index, self.term)


#: A snapshot file is written and fdatasynced this many bytes at a time. One fsync of a
#: whole file (100+ MB for a big store) makes ext4 (data=ordered) flush all of it within
#: the journal commit that the WAL's next fdatasync waits for: measured here, a WAL
#: fdatasync beside a 150 MB snapshot write took up to 50-73 ms in one piece, 20-26 ms in
#: 1-2 MB pieces, with the snapshot itself no slower.
SYNC_PIECE_BYTES = 2 << 20


def _write_in_synced_pieces(fd: int, parts: Sequence[Chunk]) -> None:
    piece: list[Chunk] = []
    size = 0
    for part in parts:
        view = memoryview(part)
        while view:
            take = view[:SYNC_PIECE_BYTES - size]
            piece.append(take)
            size += len(take)
            view = view[len(take):]
            if size == SYNC_PIECE_BYTES:
                writev_all(fd, piece)
                os.fdatasync(fd)
                piece, size = [], 0
    if piece:
        writev_all(fd, piece)


def snap_name(term: int, index: int) -> str:
    """etcd's file name: 16 hex digits of term, then of index."""
    return f"{term:016x}-{index:016x}{SNAP_SUFFIX}"


def parse_snap_name(name: str) -> SnapshotRecord | None:
    """(index, term) encoded in a ``.snap`` file name, or None for any other name."""
    m = _NAME_RE.match(name)
    if m is None:
        return None
    return SnapshotRecord(index=int(m.group(2), 16), term=int(m.group(1), 16))


def encode_snapshot(snap: Snapshot) -> bytes:
    """The bytes of one snapshot file."""
    return b"".join(encode_snapshot_parts(snap.term, snap.index, (snap.data,)))


def bin_header(n: int) -> bytes:
    """The msgpack header of an ``n``-byte bin object, as ``msgpack.packb`` writes it: lets
    a layer frame data it holds as parts without joining them into one bytes object."""
    if n < 0x100:
        return b"\xc4" + n.to_bytes(1, "big")
    if n < 0x10000:
        return b"\xc5" + n.to_bytes(2, "big")
    if n < 0x100000000:
        return b"\xc6" + n.to_bytes(4, "big")
    raise ValueError(f"{n} bytes do not fit a msgpack bin object")


def encode_snapshot_parts(term: int, index: int, data: Sequence[Chunk]) -> list[Chunk]:
    """A snapshot file, msgpack ``[FORMAT_VERSION, crc, [term, index, data]]``, with ``data``
    given as parts and returned as parts: the data is never copied (a snapshot of a big
    store is tens of MB; each copy costs page faults)."""
    n = sum(map(len, data))
    head = b"\x93" + msgpack.packb(term) + msgpack.packb(index) + bin_header(n)
    crc = crc32c.crc32c(head)
    for part in data:
        crc = crc32c.crc32c(part, crc)
    outer = (b"\x93" + msgpack.packb(FORMAT_VERSION) + msgpack.packb(crc)
             + bin_header(len(head) + n))
    return [outer, head, *data]


def decode_snapshot(raw: bytes, where: str = "<bytes>") -> Snapshot:
    """Parse one snapshot file; every failure is a SnapshotCorruptError subclass naming ``where``.

    The checks follow etcd's ``Read`` order: empty file, outer decode, empty data or zero CRC,
    CRC mismatch, inner decode.
    """
    if not raw:
        raise EmptySnapshotError(f"snap: empty snapshot file {where}")
    try:
        outer = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # untrusted bytes: msgpack raises several unrelated types
        raise SnapshotCorruptError(f"snap: cannot decode {where}: {exc}") from exc
    if not (isinstance(outer, list) and len(outer) == 3):
        raise SnapshotCorruptError(f"snap: {where} is not a snapshot file")
    version, crc, body = outer
    if version != FORMAT_VERSION:
        raise SnapshotCorruptError(f"snap: {where} has unknown format version {version!r}")
    if not isinstance(crc, int) or not isinstance(body, bytes):
        raise SnapshotCorruptError(f"snap: {where} has a malformed header")
    if crc == 0 or not body:
        raise EmptySnapshotError(f"snap: empty snapshot in {where}")
    actual = crc32c.crc32c(body)
    if actual != crc:
        raise SnapshotCRCError(
            f"snap: crc mismatch in {where}: stored {crc:#010x}, computed {actual:#010x}"
        )
    try:
        inner = msgpack.unpackb(body, raw=False, strict_map_key=True)
    except Exception as exc:
        raise SnapshotCorruptError(f"snap: cannot decode the body of {where}: {exc}") from exc
    if not (
        isinstance(inner, list)
        and len(inner) == 3
        and isinstance(inner[0], int)
        and isinstance(inner[1], int)
        and isinstance(inner[2], bytes)
    ):
        raise SnapshotCorruptError(f"snap: {where} has a malformed body")
    term, index, data = inner
    return Snapshot(index=index, term=term, data=data)


class Snapshotter:
    """Saves and loads ``.snap`` files in one directory (etcd's ``snap.Snapshotter``)."""

    __slots__ = ("dir", "max_snapshots", "unsafe_no_fsync")

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        *,
        unsafe_no_fsync: bool = False,
        max_snapshots: int = DEFAULT_MAX_SNAPSHOTS,
    ) -> None:
        if max_snapshots < 0:
            raise ValueError(f"max_snapshots must be >= 0 (0 = unlimited), got {max_snapshots}")
        self.dir = Path(dirpath)
        self.unsafe_no_fsync = unsafe_no_fsync
        self.max_snapshots = max_snapshots

    # --- writing ---

    def save(self, snap: Snapshot, *, purge: bool = True) -> Path:
        """Write ``snap`` durably (unless unsafe_no_fsync), then (unless ``purge`` is False)
        delete the oldest files beyond max_snapshots.

        Raises FsyncError on any I/O failure; the temp file is removed and no ``.snap`` of
        this (term, index) is left half-written.
        """
        return self.save_parts(snap.record, (snap.data,), purge=purge)

    def save_parts(self, record: SnapshotRecord, data: Sequence[Chunk], *,
                   purge: bool = True) -> Path:
        """:meth:`save` for data given as parts (written with ``writev``, never joined)."""
        if record.index <= 0:
            raise SliceOutOfRangeError(
                f"snap: refusing to save an empty snapshot (index {record.index})")
        final = self.dir / snap_name(record.term, record.index)
        tmp = final.with_name(final.name + TMP_SUFFIX)
        parts = encode_snapshot_parts(record.term, record.index, data)
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                if self.unsafe_no_fsync:
                    writev_all(fd, parts)
                else:
                    _write_in_synced_pieces(fd, parts)
                    os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, final)
            if not self.unsafe_no_fsync:
                fsync_dir(str(self.dir))
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise FsyncError(f"snap: saving {final} failed: {exc}") from exc
        if purge:
            self.purge()
        return final

    def purge(self, *, protect: int | None = None) -> list[Path]:
        """Delete the oldest ``.snap`` files so that at most max_snapshots remain, but never
        one at index ``protect`` or above (the snapshot the next load would start from)."""
        if self.max_snapshots == 0:
            return []
        victims = []
        for name in self.names()[self.max_snapshots :]:
            rec = parse_snap_name(name)
            assert rec is not None, name
            if protect is None or rec.index < protect:
                victims.append(self.dir / name)
        try:
            for path in victims:
                path.unlink(missing_ok=True)
            if victims and not self.unsafe_no_fsync:
                fsync_dir(str(self.dir))
        except OSError as exc:
            raise FsyncError(f"snap: purging {self.dir} failed: {exc}") from exc
        return victims

    # --- reading ---

    def names(self) -> list[str]:
        """``.snap`` file names, newest (highest term, then index) first."""
        try:
            listing = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        return sorted((n for n in listing if _NAME_RE.match(n)), reverse=True)

    def cleanup(self) -> list[Path]:
        """Remove temp files of an interrupted save (etcd removes ``db.tmp*`` likewise).

        Only the directory's single writer may call this (loading does): it would pull a
        concurrent save's temp file from under it.
        """
        try:
            listing = os.listdir(self.dir)
        except FileNotFoundError:
            return []
        removed = []
        for name in listing:
            if name.endswith(SNAP_SUFFIX + TMP_SUFFIX):
                path = self.dir / name
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    def read(self, name: str) -> Snapshot:
        """Read one file by name, checking that its contents match its name."""
        path = self.dir / name
        expected = parse_snap_name(name)
        if expected is None:
            raise SnapshotCorruptError(f"snap: {path} is not named like a snapshot file")
        snap = decode_snapshot(path.read_bytes(), str(path))
        if snap.record != expected:
            raise SnapshotCorruptError(
                f"snap: {path} holds term {snap.term} index {snap.index}, not what its name says"
            )
        return snap

    def load(self) -> Snapshot:
        """The newest readable snapshot; broken files on the way are renamed ``.broken``.

        Like ``load_newest_available``, this writes (renames, temp-file cleanup): call it
        only as the directory's single writer.
        """
        return self._load_matching(None)

    def load_newest_available(self, wal_snaps: Iterable[SnapshotRecord]) -> Snapshot:
        """The newest readable snapshot whose (term, index) the WAL lists as valid.

        Pass ``wal.valid_snapshot_entries(waldir)``: a snapshot file without a committed WAL
        snapshot record is an orphan of a crash between the two writes and must be ignored.
        """
        return self._load_matching({(r.term, r.index) for r in wal_snaps})

    def _load_matching(self, wanted: set[tuple[int, int]] | None) -> Snapshot:
        self.cleanup()
        for name in self.names():
            rec = parse_snap_name(name)
            assert rec is not None, name
            # Deviation from etcd: match on the name before reading, so an orphan (possibly
            # large) snapshot is not read at all.
            if wanted is not None and (rec.term, rec.index) not in wanted:
                continue
            try:
                return self.read(name)
            except (SnapshotCorruptError, OSError):
                self._mark_broken(name)
        raise NoSnapshotError(f"snap: no available snapshot in {self.dir}")

    def _mark_broken(self, name: str) -> None:
        path = self.dir / name
        try:
            os.replace(path, path.with_name(name + BROKEN_SUFFIX))
            if not self.unsafe_no_fsync:
                fsync_dir(str(self.dir))
        except FileNotFoundError:
            pass  # raced with a purge: nothing left to mark
