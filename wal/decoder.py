"""Frame decoder across a chain of segment files, with etcd's torn-write rules.

Rules (etcd ``decoder.go``): a zero length word or the end of a file moves on to the next
file. In the LAST file only, a record that fails to check and has an all-zero 512-byte
sector chunk, a length word cut short, or a length that does not fit in the rest of the
file is a torn tail (:class:`UnexpectedEOFError`, repairable). Anything else that fails,
and any damage in an earlier file, is corruption (:class:`CRCMismatchError`) naming the
file and offset. The decoder never trusts a length before checking it against the file
size, so a corrupt length cannot make it allocate gigabytes, and every step advances at
least one frame, so it cannot loop.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import crc32c

from wal.errors import CRCMismatchError, UnexpectedEOFError, WALError
from wal.framing import (
    CRC,
    FRAME_SIZE_BYTES,
    LENGTH_MASK,
    RECORD_HEADER,
    RECORD_HEADER_SIZE,
    SECTOR_SIZE_BYTES,
    SNAPSHOT,
)

_CHUNK_BYTES = 1 << 20
_FS = FRAME_SIZE_BYTES


def is_torn(fd: int, size: int, start: int, end: int) -> bool:
    """True if the frame payload ``[start, end)`` has a sector chunk that was never written.

    etcd's rule (a 512-byte-sector chunk of the payload that is all zero means a torn
    write), made stricter: each chunk is extended to the end of its sector (within the
    file), because an unwritten sector is zero throughout. Padding, or a zero byte of a
    small record that merely crosses a sector boundary, then no longer passes for a torn
    write: those are corruption.
    """
    stop = min(size, -(-end // SECTOR_SIZE_BYTES) * SECTOR_SIZE_BYTES)
    if stop <= start:
        return False
    region = os.pread(fd, stop - start, start)
    pos = 0
    off = start
    n = len(region)
    while pos < n:
        step = min(SECTOR_SIZE_BYTES - off % SECTOR_SIZE_BYTES, n - pos)
        if off < end and region.count(0, pos, pos + step) == step:
            return True
        pos += step
        off += step
    return False


class Decoder:
    """Yields ``(type, data, frame_offset)`` for each valid record of ``paths`` in order.

    ``crc`` is the running CRC (0 at the start: the first CRC record is then accepted,
    which lets a reader start mid-chain). ``path`` and ``last_offset`` tell where the last
    good record of the current file ends: the truncation point for repair and the start
    of the zeroing for open-for-write.
    """

    __slots__ = ("_fd", "_size", "crc", "last_offset", "path", "paths")

    def __init__(self, paths: Sequence[str]) -> None:
        self.paths = list(paths)
        self.crc = 0
        self.path = ""
        self.last_offset = 0
        self._fd = -1
        self._size = 0

    def records(self) -> Iterator[tuple[int, bytes, int]]:
        last = len(self.paths) - 1
        for i, path in enumerate(self.paths):
            self.path = path
            self.last_offset = 0
            with open(path, "rb") as f:
                self._fd = f.fileno()
                self._size = os.fstat(self._fd).st_size
                yield from self._file(self._fd, self._size, i == last)

    def _fail(self, what: str, off: int, end: int | None, is_last: bool) -> WALError:
        """Classify a bad frame ``[off, end)``: torn tail (last file only) or corruption.

        ``end`` None means the frame cannot even be delimited (cut short, or a length
        past the end of the file): in the last file that is a torn tail.
        """
        where = f"in file {self.path!r} at offset {off}"
        if is_last and (end is None or is_torn(self._fd, self._size, off + _FS, end)):
            return UnexpectedEOFError(f"wal: torn tail ({what}) {where}")
        return CRCMismatchError(f"wal: {what} {where}")

    def _check_zero_rest(self, fd: int, pos: int, size: int) -> None:
        """A closed segment ends at its last record: data past a zero word is corruption
        (say, a length word whose bits flipped to zero), never a place to stop silently."""
        off = pos
        while off < size:
            chunk = os.pread(fd, min(_CHUNK_BYTES, size - off), off)
            if not chunk:
                return
            if chunk.count(0) != len(chunk):
                raise CRCMismatchError(
                    f"wal: zero length word followed by data in file {self.path!r} at offset {pos}"
                )
            off += len(chunk)

    def _file(self, fd: int, size: int, is_last: bool) -> Iterator[tuple[int, bytes, int]]:
        buf = b""
        base = 0  # file offset of buf[0]
        pos = 0  # file offset of the next frame
        unpack_hdr = RECORD_HEADER.unpack_from
        c32 = crc32c.crc32c
        while True:
            if pos + _FS > size:
                if pos < size:  # a length word cut short: the file was truncated mid-frame
                    raise self._fail("length word cut short", pos, None, is_last)
                return
            rel = pos - base
            if rel + _FS > len(buf):
                buf = buf[rel:] + os.pread(fd, _CHUNK_BYTES, pos + len(buf) - rel)
                base, rel = pos, 0
                if len(buf) < _FS:  # file shrank under us (a concurrent truncate)
                    return
            word = int.from_bytes(buf[rel : rel + _FS], "little")
            if word == 0:  # end of data, or preallocated space
                if not is_last:
                    self._check_zero_rest(fd, pos, size)
                return
            n = word & LENGTH_MASK
            top = word >> 56
            pad = top & 0x7 if top & 0x80 else 0
            total = n + pad
            if total > size - pos - _FS:
                raise self._fail(f"record length {n} exceeds file end", pos, None, is_last)
            if top and not 0x81 <= top <= 0x87:  # only 0 or 0x80|pad are ever written
                raise self._fail(f"bad frame flags {top:#04x}", pos, pos + _FS + total, is_last)
            end = rel + _FS + total
            if end > len(buf):
                need = end - len(buf)
                more = os.pread(fd, max(need, _CHUNK_BYTES), base + len(buf))
                buf = buf[rel:] + more
                base, rel = pos, 0
                end = _FS + total
                if end > len(buf):
                    raise self._fail("file shrank while reading", pos, None, is_last)
            fend = pos + _FS + total
            if n < RECORD_HEADER_SIZE:
                raise self._fail(f"record length {n} too short", pos, fend, is_last)
            if pad and buf.count(0, end - pad, end) != pad:
                raise self._fail("non-zero padding", pos, fend, is_last)
            crc, rtype = unpack_hdr(buf, rel + _FS)
            data = buf[rel + _FS + RECORD_HEADER_SIZE : rel + _FS + n]
            if rtype == CRC:
                if data or (self.crc != 0 and crc != self.crc):
                    raise self._fail(
                        f"crc record mismatch (chain {self.crc:#010x}, record {crc:#010x})",
                        pos,
                        fend,
                        is_last,
                    )
            else:
                if c32(data, self.crc ^ rtype) != crc or not 0 < rtype <= SNAPSHOT:
                    raise self._fail(f"crc mismatch (type {rtype})", pos, fend, is_last)
            self.crc = crc
            yield rtype, data, pos
            pos += _FS + total
            self.last_offset = pos
