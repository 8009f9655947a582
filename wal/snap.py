"""Snapshot files, after etcd's ``snap`` package.

One file per snapshot, named ``%016x-%016x.snap`` by (term, index) so that a reverse lexical
sort is newest first. Unlike etcd, which writes straight to the final name, a save goes to a
temp file that is fsynced (in pieces), renamed into place and followed by a directory fsync:
a crash leaves either the old set of files or the new one, never a half-written ``.snap``.
A file that cannot be read is renamed ``<name>.broken`` (kept for the operator) and the next
older one is tried, exactly like etcd's ``loadMatching``.

Format 2 (written), "chained" files, so that a save writes only the bytes no earlier file
holds (a member snapshots its whole store, mostly unchanged, every few seconds)::

    prefix   12 bytes: magic b"\\xc1SN\\x02", header length (u32 BE), header CRC-32C
             (u32 BE, over the magic, the length and the header)
    header   msgpack [term, index, size, files, segments]
    payload  the literal segments' bytes, back to back

The data (``size`` bytes) is the segments' bytes in order. A segment is ``[length, crc]``,
literal: the next ``length`` bytes of this file's payload; or ``[file, offset, length,
crc]``, a reference: ``length`` bytes at file offset ``offset`` of ``files[file]``, another
``.snap`` in the same directory, always inside a literal segment of that file (a
reference is copied, never chained, so every byte lives at most one hop away). ``crc`` is
the CRC-32C of the segment's bytes. The header is small and first: who a file references
(all purge needs) costs 12 + header bytes, never the payload. 0xc1 is the one byte msgpack
never uses, so a format-2 file cannot pass for format 1.

Format 1 (still read): msgpack ``[1, crc, body]``, ``body`` = msgpack ``[term, index,
data]``, ``crc`` = CRC-32C of ``body``.

What a save may reference is decided by identity, not content: a :class:`Snapshotter`
remembers every part of at least ``MIN_REF_BYTES`` of the newest file it saved (holding the
object, so its ``id`` cannot be reused) and where its bytes lie. A part of the next save
that *is* one of those objects becomes a reference; only ``bytes`` (or views of ``bytes``)
qualify, being immutable. Nothing is remembered of files loaded from disk. A file that
would reference more than ``MAX_CHAIN_FILES`` files keeps its references to the
``MAX_CHAIN_FILES // 2`` files that hold the most of its bytes and writes the rest
literally, size-tiered like an LSM tree's compaction: small deltas fold into one file,
files of folded deltas fold again once there are enough of them, and the big base is
never rewritten. A byte is rewritten about log(saves) times, not once per save.

Purge keeps the ``max_snapshots`` newest files, those at or above ``protect``, every file
that one of those references (read from the headers; references are one hop, so no
closure is needed), and every file that a save in progress references (pinned under
``_lock`` from its plan until after its rename; purge lists again if a file landed while it
read headers). Files are never modified once renamed into place (only a re-save of the
same (term, index) replaces one, as in etcd; it never references itself). A file whose
reference is missing, outside literal data or fails its CRC is broken like any other.
"""

from __future__ import annotations

import io
import logging
import os
import re
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import crc32c
import msgpack

from wal.errors import (
    EmptySnapshotError,
    FsyncError,
    NoSnapshotError,
    SliceOutOfRangeError,
    SnapshotBaseGoneError,
    SnapshotCorruptError,
    SnapshotCRCError,
    SnapshotReferenceError,
)
from wal.fileutil import fsync_dir
from wal.pagewriter import Chunk, writev_all
from wal.records import SnapshotRecord

SNAP_SUFFIX = ".snap"
BROKEN_SUFFIX = ".broken"
TMP_SUFFIX = ".tmp"
FORMAT_VERSION = 2
DEFAULT_MAX_SNAPSHOTS = 5  # etcd's --max-snapshots default; 0 keeps every file
MIN_REF_BYTES = 64 << 10  # smaller parts (msgpack headers, small deltas) are always literal
MAX_CHAIN_FILES = 16  # a file references at most this many others
_MAGIC = b"\xc1SN" + bytes([FORMAT_VERSION])
_PREFIX = struct.Struct(">4sII")  # magic, header length, header CRC-32C
_MAX_HEADER_BYTES = 64 << 20  # a bigger length is a flipped bit, not a header to allocate
log = logging.getLogger("wal")
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


@dataclass(frozen=True, slots=True)
class Segment:
    """``length`` bytes at file offset ``offset``, CRC-32C ``crc``: of the ``.snap`` file
    ``name``, or (``name`` empty) literal in the file whose header lists the segment."""

    name: str
    offset: int
    length: int
    crc: int


@dataclass(frozen=True, slots=True)
class SnapHeader:
    """A format-2 file's header: the snapshot's position, and where its data lies."""

    term: int
    index: int
    size: int
    segments: tuple[Segment, ...]
    end: int  # the file's size: its last literal byte ends here

    def references(self) -> set[str]:
        return {s.name for s in self.segments if s.name}

    def holds(self, ref: Segment) -> bool:
        """Whether ``ref`` lies inside one of this file's literal segments."""
        return any(not s.name and s.offset <= ref.offset
                   and ref.offset + ref.length <= s.offset + s.length for s in self.segments)


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


_Plan = list[tuple[Chunk, Segment | None]]  # each part, and the older bytes it reuses if any


def _encode(name: str, term: int, index: int,
            plan: _Plan) -> tuple[list[Chunk], list[tuple[Chunk, Segment]]]:
    """The format-2 file ``name`` as parts (the data is never copied), and where each large
    part's bytes lie once it is written. Adjacent literal parts make one segment."""
    segs: list[Segment] = []
    literal: list[tuple[Chunk, int, int]] = []  # large literal part, payload offset, CRC
    payload: list[Chunk] = []
    pos = 0
    for part, ref in plan:
        n = len(part)
        if ref is not None:
            segs.append(ref)
            continue
        crc = crc32c.crc32c(part)  # what a later reference to this part will carry
        if segs and not segs[-1].name:
            last = segs[-1]
            segs[-1] = Segment("", last.offset, last.length + n, crc32c.crc32c(part, last.crc))
        else:
            segs.append(Segment("", pos, n, crc))
        if n >= MIN_REF_BYTES:
            literal.append((part, pos, crc))
        payload.append(part)
        pos += n
    files = sorted({s.name for s in segs if s.name})
    number = {f: i for i, f in enumerate(files)}
    header = msgpack.packb([term, index, sum(s.length for s in segs), files, [
        [number[s.name], s.offset, s.length, s.crc] if s.name else [s.length, s.crc]
        for s in segs]])
    lead = _MAGIC + len(header).to_bytes(4, "big")
    base = _PREFIX.size + len(header)
    known = [(p, s) for p, s in plan if s is not None]
    known += [(p, Segment(name, base + off, len(p), crc)) for p, off, crc in literal]
    return [lead + crc32c.crc32c(header, crc32c.crc32c(lead)).to_bytes(4, "big"), header,
            *payload], known


def encode_snapshot_parts(term: int, index: int, data: Sequence[Chunk]) -> list[Chunk]:
    """A self-contained snapshot file (every segment literal), with ``data`` given as parts
    and returned as parts: the data is never copied (a big store is tens of MB)."""
    return _encode("", term, index, [(p, None) for p in data])[0]


def encode_snapshot(snap: Snapshot) -> bytes:
    """The bytes of one self-contained snapshot file."""
    return b"".join(encode_snapshot_parts(snap.term, snap.index, (snap.data,)))


def _uints(*xs: object) -> bool:
    return all(type(x) is int and x >= 0 for x in xs)


def read_header(f: IO[bytes], where: str) -> SnapHeader:
    """Parse a format-2 header from the start of ``f``, reading nothing past it."""
    lead = f.read(_PREFIX.size)
    if len(lead) < _PREFIX.size:
        raise SnapshotCorruptError(f"snap: {where} ends at offset {len(lead)}, in its header")
    magic, hlen, hcrc = _PREFIX.unpack(lead)
    if magic != _MAGIC or hlen > _MAX_HEADER_BYTES:
        raise SnapshotCorruptError(f"snap: {where} is not a format-{FORMAT_VERSION} snapshot")
    raw = f.read(hlen)
    if len(raw) < hlen:
        raise SnapshotCorruptError(
            f"snap: {where} ends at offset {_PREFIX.size + len(raw)}, in its header")
    actual = crc32c.crc32c(raw, crc32c.crc32c(lead[:8]))
    if actual != hcrc:
        raise SnapshotCRCError(f"snap: header crc mismatch in {where} at offset 0: "
                               f"stored {hcrc:#010x}, computed {actual:#010x}")
    try:
        fields = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # untrusted bytes: msgpack raises several unrelated types
        raise SnapshotCorruptError(f"snap: cannot decode the header of {where}: {exc}") from exc
    bad = SnapshotCorruptError(f"snap: {where} has a malformed header")
    if not (isinstance(fields, list) and len(fields) == 5):
        raise bad
    term, index, size, files, items = fields
    if not (_uints(term, index, size) and isinstance(files, list) and isinstance(items, list)
            and all(isinstance(n, str) and _NAME_RE.match(n) for n in files)):
        raise bad
    segs: list[Segment] = []
    pos = _PREFIX.size + hlen
    for item in items:
        if not (isinstance(item, list) and len(item) in (2, 4) and _uints(*item)):
            raise bad
        if len(item) == 2:
            segs.append(Segment("", pos, item[0], item[1]))
            pos += item[0]
        elif item[0] < len(files):
            segs.append(Segment(files[item[0]], item[1], item[2], item[3]))
        else:
            raise bad
    if sum(s.length for s in segs) != size:
        raise SnapshotCorruptError(f"snap: {where}'s segments do not add up to {size} bytes")
    return SnapHeader(term=term, index=index, size=size, segments=tuple(segs), end=pos)


def _verified(buf: bytes, seg: Segment, where: str) -> bytes:
    if len(buf) != seg.length:
        raise SnapshotCorruptError(
            f"snap: {where} ends inside the {seg.length} bytes at offset {seg.offset}")
    actual = crc32c.crc32c(buf)
    if actual != seg.crc:
        raise SnapshotCRCError(f"snap: crc mismatch in {where} at offset {seg.offset} "
                               f"({seg.length} bytes): stored {seg.crc:#010x}, "
                               f"computed {actual:#010x}")
    return buf


def _check_end(size: int, header: SnapHeader, where: str) -> None:
    if size != header.end:
        raise SnapshotCorruptError(
            f"snap: {where} has {size} bytes, its header says {header.end} (torn write?)")


def _pread(f: IO[bytes], offset: int, length: int) -> bytes:
    f.seek(offset)
    return f.read(length)


def _assemble(header: SnapHeader, where: str, own: Callable[[Segment], bytes],
              ref: Callable[[Segment], bytes]) -> Snapshot:
    data = b"".join(ref(s) if s.name else _verified(own(s), s, where) for s in header.segments)
    assert len(data) == header.size, where  # read_header checked the sum, _verified each part
    return Snapshot(index=header.index, term=header.term, data=data)


def decode_snapshot(raw: bytes, where: str = "<bytes>") -> Snapshot:
    """Parse one snapshot file; every failure is a SnapshotCorruptError subclass naming ``where``.

    A format-2 file that references others needs its directory: read it with a Snapshotter.
    Format 1 checks follow etcd's ``Read`` order: empty file, outer decode, empty data or
    zero CRC, CRC mismatch, inner decode.
    """
    if raw[:1] == _MAGIC[:1]:
        header = read_header(io.BytesIO(raw), where)
        _check_end(len(raw), header, where)

        def elsewhere(s: Segment) -> bytes:
            raise SnapshotReferenceError(f"snap: {where} references {s.name}, not at hand")
        return _assemble(header, where, lambda s: raw[s.offset:s.offset + s.length], elsewhere)
    if not raw:
        raise EmptySnapshotError(f"snap: empty snapshot file {where}")
    try:
        outer = msgpack.unpackb(raw, raw=False, strict_map_key=True)
    except Exception as exc:  # untrusted bytes: msgpack raises several unrelated types
        raise SnapshotCorruptError(f"snap: cannot decode {where}: {exc}") from exc
    if not (isinstance(outer, list) and len(outer) == 3):
        raise SnapshotCorruptError(f"snap: {where} is not a snapshot file")
    version, crc, body = outer
    if version != 1:
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


def _immutable(part: Chunk) -> bool:
    """Only bytes (or a view of bytes) may be remembered by identity: a bytearray can change."""
    return isinstance(part, bytes) or (isinstance(part, memoryview) and isinstance(part.obj, bytes))


class Snapshotter:
    """Saves and loads ``.snap`` files in one directory (etcd's ``snap.Snapshotter``).

    Saves and purges may run in different threads at once (the file backend saves in a
    worker thread and purges on its disk thread): they share only ``_lock``, never held
    for I/O. The identity memory follows the newest file saved here, which purge keeps."""

    __slots__ = ("_before_rename", "_known", "_lock", "_newest", "_pins", "_saves", "dir",
                 "max_snapshots", "unsafe_no_fsync")

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
        self._lock = threading.Lock()
        # id(part) -> (part, where its bytes lie) for the large parts of the newest file saved
        # here, (term, index) ``_newest``; the part is held so that its id stays its own
        self._known: dict[int, tuple[Chunk, Segment]] = {}
        self._newest = (0, 0)
        self._pins: Counter[str] = Counter()  # files that saves in progress reference
        self._saves = 0  # files renamed into place: purge re-lists if it changed meanwhile
        self._before_rename: Callable[[], None] | None = None  # test seam

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
        """:meth:`save` for data given as parts (written with ``writev``, never joined);
        a part that is an object of the last file saved here is referenced, not written."""
        if record.index <= 0:
            raise SliceOutOfRangeError(
                f"snap: refusing to save an empty snapshot (index {record.index})")
        final = self.dir / snap_name(record.term, record.index)
        with self._lock:  # plan and pin in one step, so a purge sees the pins or no plan
            plan = self._plan(final.name, data)
            pins = Counter({s.name for _, s in plan if s is not None})
            self._pins += pins
        known: list[tuple[Chunk, Segment]] | None = None
        try:
            parts, new = _encode(final.name, record.term, record.index, plan)
            self._write(final, parts)
            known = new
        finally:
            with self._lock:
                self._pins -= pins
                if known is not None:
                    self._saves += 1
                    if (record.term, record.index) >= self._newest:
                        self._newest = (record.term, record.index)
                        self._known = {id(p): (p, s) for p, s in known if _immutable(p)}
        if purge:
            self.purge()
        return final

    def _plan(self, name: str, data: Sequence[Chunk]) -> _Plan:
        """Each part, with where its bytes already lie if it is a remembered object; cut
        back to the one file holding most bytes if it would reference too many files."""
        plan: _Plan = []
        for part in data:
            hit = self._known.get(id(part)) if len(part) >= MIN_REF_BYTES else None
            assert hit is None or hit[0] is part  # held, so the id cannot be another's
            # never a reference to the name being written (a re-save of the same snapshot)
            plan.append((part, hit[1] if hit is not None and hit[1].name != name else None))
        held: Counter[str] = Counter()
        for _, seg in plan:
            if seg is not None:
                held[seg.name] += seg.length
        if len(held) > MAX_CHAIN_FILES:  # size-tiered: fold the smaller half in here
            keep = set(sorted(held, key=lambda n: (-held[n], n))[:MAX_CHAIN_FILES // 2])
            plan = [(p, s if s is not None and s.name in keep else None) for p, s in plan]
        return plan

    def _write(self, final: Path, parts: list[Chunk]) -> None:
        tmp = final.with_name(final.name + TMP_SUFFIX)
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
            if self._before_rename is not None:
                self._before_rename()
            os.replace(tmp, final)
            if not self.unsafe_no_fsync:
                fsync_dir(str(self.dir))
        except OSError as exc:
            try:
                tmp.unlink()
            except OSError:
                pass
            raise FsyncError(f"snap: saving {final} failed: {exc}") from exc

    def purge(self, *, protect: int | None = None) -> list[Path]:
        """Delete the oldest ``.snap`` files so that at most max_snapshots remain, but never
        one at index ``protect`` or above (the snapshot the next load would start from), nor
        one that a kept file or a save in progress references."""
        if self.max_snapshots == 0:
            return []
        while True:
            with self._lock:
                saves = self._saves
            names = self.names()
            keep = set(names[: self.max_snapshots])
            if protect is not None:
                keep.update(n for n in names if _index(n) >= protect)
            needed = keep.union(*map(self._references, keep))
            with self._lock:
                if self._saves != saves:  # a new file (references unread) came in between
                    continue
                doomed = {n for n in names if n not in needed and n not in self._pins}
                self._forget(doomed)
                break
        victims = [self.dir / n for n in names if n in doomed]
        try:
            for path in victims:
                path.unlink(missing_ok=True)
            if victims and not self.unsafe_no_fsync:
                fsync_dir(str(self.dir))
        except OSError as exc:
            raise FsyncError(f"snap: purging {self.dir} failed: {exc}") from exc
        return victims

    def _forget(self, names: set[str]) -> None:
        """Drop remembered parts that lie in ``names`` (about to go); hold ``_lock``."""
        self._known = {k: v for k, v in self._known.items() if v[1].name not in names}

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

    def read_header(self, name: str) -> SnapHeader | None:
        """The header of file ``name`` (None for format 1), reading none of its data."""
        with open(self.dir / name, "rb") as f:
            if f.read(1) != _MAGIC[:1]:
                return None
            f.seek(0)
            return read_header(f, str(self.dir / name))

    def _references(self, name: str) -> set[str]:
        try:
            header = self.read_header(name)
        except (OSError, SnapshotCorruptError):
            return set()  # unreadable: broken itself, and so keeps nothing alive
        return set() if header is None else header.references()

    def read(self, name: str) -> Snapshot:
        """Read one file by name, checking that its contents match its name."""
        path = self.dir / name
        expected = parse_snap_name(name)
        if expected is None:
            raise SnapshotCorruptError(f"snap: {path} is not named like a snapshot file")
        with open(path, "rb") as f:
            first = f.read(1)
            f.seek(0)
            snap = decode_snapshot(f.read(), str(path)) if first != _MAGIC[:1] else \
                self._read_chained(name, f)
        if snap.record != expected:
            raise SnapshotCorruptError(
                f"snap: {path} holds term {snap.term} index {snap.index}, not what its name says"
            )
        return snap

    def _read_chained(self, name: str, f: IO[bytes]) -> Snapshot:
        where = str(self.dir / name)
        header = read_header(f, where)
        _check_end(os.fstat(f.fileno()).st_size, header, where)
        with ExitStack() as stack:
            opened: dict[str, tuple[IO[bytes], SnapHeader]] = {}

            def elsewhere(s: Segment) -> bytes:
                target = self.dir / s.name
                if s.name not in opened:
                    if s.name == name:
                        raise SnapshotReferenceError(f"snap: {where} references itself")
                    try:
                        other = stack.enter_context(open(target, "rb"))
                        opened[s.name] = (other, read_header(other, str(target)))
                    except FileNotFoundError as exc:
                        raise SnapshotBaseGoneError(
                            f"snap: {where} references {target}, which is gone") from exc
                    except (OSError, SnapshotCorruptError) as exc:
                        raise SnapshotReferenceError(
                            f"snap: {where} references {target}, which cannot be read: "
                            f"{exc}") from exc
                tf, th = opened[s.name]
                if not th.holds(s):
                    raise SnapshotReferenceError(
                        f"snap: {where} references bytes {s.offset}..{s.offset + s.length} "
                        f"of {target}, which are not literal data there")
                return _verified(_pread(tf, s.offset, s.length), s,
                                 f"{target} (referenced by {where})")
            return _assemble(header, where, lambda s: _pread(f, s.offset, s.length), elsewhere)

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
            except SnapshotBaseGoneError as exc:
                # purge keeps a file that newer ones reference, but not the files *it*
                # references: not a snapshot any more, only a base; nothing is damaged
                log.info("%s; trying an older snapshot", exc)
            except (SnapshotCorruptError, OSError) as exc:
                log.warning("%s; renaming it %s and trying an older snapshot", exc,
                            name + BROKEN_SUFFIX)
                self._mark_broken(name)
        raise NoSnapshotError(f"snap: no available snapshot in {self.dir}")

    def _mark_broken(self, name: str) -> None:
        with self._lock:
            self._forget({name})
        path = self.dir / name
        try:
            os.replace(path, path.with_name(name + BROKEN_SUFFIX))
            if not self.unsafe_no_fsync:
                fsync_dir(str(self.dir))
        except FileNotFoundError:
            pass  # raced with a purge: nothing left to mark


def _index(name: str) -> int:
    rec = parse_snap_name(name)
    assert rec is not None, name
    return rec.index
