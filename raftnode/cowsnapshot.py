"""Serialize the state machine in a forked child: a copy-on-write image, not a loop stall.

Packing the whole MVCC store (history included) takes hundreds of milliseconds once it
holds ~100k revisions, and on the event loop that stops heartbeats and commits for as long
(docs/bench.md). ``fork()`` freezes the state at one instant for the price of copying page
tables (~15 ms for a 170 MB member); the child packs it and streams the bytes back through
a pipe while the parent's loop goes on applying. Redis's BGSAVE works the same way. Only
full snapshots fork; incremental ones are packed by the member itself
(``raftnode/deltasnapshot.py``).

The child runs nothing but the packing function: it drops every inherited descriptor but
the pipe (so it never holds a WAL lock or a socket of the parent's), disables the cyclic
collector (fewer pages touched, so fewer copied), lowers its CPU priority (nice 10: the
members' own loops come first), and leaves with ``os._exit``. Where
``fork`` does not exist the packing runs inline.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from raftnode.snapparts import SnapParts
from wal.pagewriter import writev_all

# the child's header: data length, the byte range of the store's packed versions in it
# (SnapParts.region_offsets), and how many chunks they are
_HEAD = struct.Struct("<QQQQ")
CAN_FORK = hasattr(os, "fork")


class SnapshotChildError(RuntimeError):
    """The forked serializer failed (it exited non-zero or its output was cut short)."""


@dataclass(slots=True)
class ForkedSerialization:
    """A child packing a snapshot; :meth:`result` collects its bytes.

    The pidfd is used and closed on the event loop's thread only (``result`` and
    ``cancel``), so a kill can never reach a process that reused the child's pid.
    """

    pid: int
    fd: int
    inline: SnapParts | None = None
    pidfd: int = -1

    async def result(self) -> SnapParts:
        """The child's bytes as parts whose region is the store's packed versions."""
        if self.inline is not None:
            return self.inline
        try:
            return await asyncio.get_running_loop().run_in_executor(None, self._collect)
        finally:
            self._close_pidfd()

    def cancel(self) -> None:
        """Stop the child (shutdown); the reader thread then sees EOF and reaps it."""
        if self.pidfd >= 0:
            with contextlib.suppress(OSError):
                signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
            self._close_pidfd()

    def _close_pidfd(self) -> None:
        if self.pidfd >= 0:
            fd, self.pidfd = self.pidfd, -1
            os.close(fd)

    def _collect(self) -> SnapParts:
        """Read the pipe to EOF, reap the child, check the length it announced."""
        head = b""
        chunks: list[bytes] = []
        try:
            while len(head) < _HEAD.size:  # the header, apart: the data is never re-sliced
                b = os.read(self.fd, _HEAD.size - len(head))
                if not b:
                    break
                head += b
            while b:
                b = os.read(self.fd, 1 << 20)
                chunks.append(b)
        finally:
            os.close(self.fd)
            _, status = os.waitpid(self.pid, 0)
        data = b"".join(chunks)
        code = os.waitstatus_to_exitcode(status)
        total = lo = hi = n = 0
        if len(head) == _HEAD.size:
            total, lo, hi, n = _HEAD.unpack(head)
        if code != 0 or len(head) < _HEAD.size or total != len(data) or not lo <= hi <= total:
            raise SnapshotChildError(f"snapshot child {self.pid} exited with {code} after "
                                     f"{len(head) + len(data)} bytes")
        view = memoryview(data)
        return SnapParts([view[:lo], view[lo:hi], view[hi:]], (1, 2), n)


def fork_serialize(pack: Callable[[], SnapParts | bytes]) -> ForkedSerialization:
    """Start ``pack()`` in a fork of this process, at this instant's state."""
    if not CAN_FORK:
        return ForkedSerialization(0, -1, _parts(pack()))
    r, w = os.pipe()
    with warnings.catch_warnings():  # 3.12+ warns about forking with threads: see below
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: only the forking thread exists here; touch nothing shared
        code = 1
        try:
            with contextlib.suppress(ValueError):  # (only the main thread may do this)
                signal.set_wakeup_fd(-1)
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, signal.SIG_DFL)
            os.closerange(3, w)
            os.closerange(w + 1, 1 << 16)
            gc.disable()
            # packing is background work: on a busy machine the members' loops (this one's
            # parent included) should get the CPU first, or heartbeats and commits queue
            with contextlib.suppress(OSError):
                os.nice(10)
            sp = _parts(pack())
            writev_all(w, [_HEAD.pack(sp.size(), *sp.region_offsets(), sp.chunks), *sp.parts])
            code = 0
        except BaseException as e:  # say why on the member's stderr (its log), then exit 1
            with contextlib.suppress(BaseException):
                os.write(2, f"snapshot child {os.getpid()}: {type(e).__name__}: {e}\n".encode())
        finally:
            os._exit(code)
    os.close(w)
    try:
        pidfd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (old kernel, not Linux): cancel can't kill
        pidfd = -1
    return ForkedSerialization(pid, r, None, pidfd)


def _parts(out: SnapParts | bytes) -> SnapParts:
    return out if isinstance(out, SnapParts) else SnapParts([out])
