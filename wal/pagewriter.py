"""Page-aligned buffered writer: torn writes can then only happen at sector boundaries.

Data accumulates in a buffer; once it passes the watermark, only whole pages (aligned to
the file, not to the buffer) go to the OS, and the ragged rest waits for more data or for
``flush``. Large batches are handed to the OS with ``writev`` straight from the caller's
frames, never copied into the buffer first: on a 4 MB save each copy costs milliseconds.
A write that a flush follows at once (``flush=True``: a save that syncs) sends the buffer
and all its frames in one ``writev``: no copy, no page split, one syscall fewer.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

from wal.framing import PAGE_SIZE_BYTES

DEFAULT_BUFFER_BYTES = 128 * 1024
_IOV_MAX = 1024
if hasattr(os, "sysconf"):
    try:
        _IOV_MAX = max(16, min(os.sysconf("SC_IOV_MAX"), 1024))
    except (ValueError, OSError):
        pass

Chunk = bytes | bytearray | memoryview


_HAVE_WRITEV = hasattr(os, "writev")


def writev_all(fd: int, bufs: list[Chunk]) -> None:
    """Write every buffer, in order, coping with short writes and IOV_MAX."""
    if not _HAVE_WRITEV:  # Windows
        for b in bufs:
            view = memoryview(b)
            while view:
                n = os.write(fd, view)
                if n <= 0:
                    raise OSError(errno.EIO, "short write")
                view = view[n:]
        return
    i = 0
    while i < len(bufs):
        chunk = bufs[i : i + _IOV_MAX]
        want = sum(map(len, chunk))
        if want == 0:
            i += len(chunk)
            continue
        n = os.writev(fd, chunk)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        if n == want:  # the common case: no per-buffer bookkeeping
            i += len(chunk)
            continue
        while n > 0:
            size = len(bufs[i])
            if n >= size:
                n -= size
                i += 1
            else:
                bufs[i] = memoryview(bufs[i])[n:]
                n = 0


class PageWriter:
    __slots__ = ("buf", "fd", "offset", "page_bytes", "watermark")

    def __init__(
        self,
        fd: int,
        offset: int,
        page_bytes: int = PAGE_SIZE_BYTES,
        buffer_bytes: int = DEFAULT_BUFFER_BYTES,
    ) -> None:
        assert page_bytes > 0 and buffer_bytes >= page_bytes
        self.fd = fd
        self.offset = offset  # file offset of buf[0]: everything before it is with the OS
        self.page_bytes = page_bytes
        self.watermark = buffer_bytes
        self.buf = bytearray()

    @property
    def end(self) -> int:
        """File offset just past everything written so far (flushed or not)."""
        return self.offset + len(self.buf)

    def write(self, data: Chunk) -> None:
        self.write_parts((data,), len(data))

    def write_parts(self, parts: Sequence[Chunk], total: int, *, flush: bool = False) -> None:
        """Append ``parts`` (``total`` bytes); past the watermark, hand whole pages to the OS.

        ``flush=True`` writes everything at once, as ``write_parts`` then ``flush`` would.
        """
        buf = self.buf
        if flush:
            writev_all(self.fd, [buf, *parts] if buf else list(parts))
            self.offset += len(buf) + total
            self.buf = bytearray()
            return
        if len(buf) + total < self.watermark:
            for p in parts:
                buf += p
            return
        end = self.offset + len(buf) + total
        cut = end - end % self.page_bytes - self.offset  # bytes to write now, page-aligned
        rem = len(buf) + total - cut  # bytes that stay buffered: less than a page
        iov: list[Chunk]
        rest: list[Chunk]
        if rem <= total:
            # the split falls inside ``parts``: find it from the end (a few parts at most)
            j = len(parts)
            acc = 0
            while acc < rem:
                j -= 1
                acc += len(parts[j])
            head = acc - rem  # bytes of parts[j] that go out now (0 when rem == 0)
            iov = [buf, *parts[:j]] if buf else list(parts[:j])
            if j < len(parts):
                view = memoryview(parts[j])
                if head:
                    iov.append(view[:head])
                rest = [view[head:], *parts[j + 1 :]]
            else:
                rest = []
        else:  # the split falls inside the old buffer
            view = memoryview(buf)
            iov = [view[:cut]]
            rest = [view[cut:], *parts]
        writev_all(self.fd, iov)
        self.offset += cut
        nb = bytearray()
        for r in rest:
            nb += r
        self.buf = nb

    def flush(self) -> None:
        if not self.buf:
            return
        writev_all(self.fd, [self.buf])
        self.offset += len(self.buf)
        self.buf = bytearray()
