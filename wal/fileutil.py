"""File-system primitives the WAL relies on: locking, preallocation, syncing.

Locks are portalocker (``flock`` on POSIX) exclusive, non-blocking locks on the open file.
An in-process registry of held paths backs them up: whatever lock flavour the platform
gives, a purge running in the same process never deletes a file this process holds.
"""

from __future__ import annotations

import errno
import os
import sys
import threading

import portalocker

from wal.errors import WALLockedError

PRIVATE_FILE_MODE = 0o600
PRIVATE_DIR_MODE = 0o700

_held_lock = threading.Lock()
_held: set[str] = set()


def _key(path: str) -> str:
    return os.path.realpath(path)


def held_in_process(path: str) -> bool:
    """True if this process holds the WAL lock on ``path``."""
    with _held_lock:
        return _key(path) in _held


class LockedFile:
    """An open file descriptor with an exclusive lock, and the path it is known by."""

    __slots__ = ("_key", "fd", "path")

    def __init__(self, path: str, flags: int, mode: int = PRIVATE_FILE_MODE) -> None:
        key = _key(path)
        with _held_lock:
            if key in _held:
                raise WALLockedError(f"wal: file {path!r} already locked by this process")
            _held.add(key)
        try:
            fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), mode)
        except BaseException:
            with _held_lock:
                _held.discard(key)
            raise
        try:
            portalocker.lock(fd, portalocker.LockFlags.EXCLUSIVE | portalocker.LockFlags.NON_BLOCKING)
        except portalocker.exceptions.LockException:
            os.close(fd)
            with _held_lock:
                _held.discard(key)
            raise WALLockedError(f"wal: file {path!r} already locked by another writer") from None
        except BaseException:
            os.close(fd)
            with _held_lock:
                _held.discard(key)
            raise
        self.fd = fd
        self.path = path
        self._key = key

    def renamed(self, path: str) -> None:
        """Record that the file now lives at ``path`` (the descriptor and lock move with it)."""
        with _held_lock:
            _held.discard(self._key)
            self._key = _key(path)
            _held.add(self._key)
        self.path = path

    def close(self) -> None:
        """Unlock and close; idempotent."""
        if self.fd < 0:
            return
        fd, self.fd = self.fd, -1
        try:
            portalocker.unlock(fd)
        except (OSError, portalocker.exceptions.LockException):
            pass  # closing the descriptor drops the lock anyway
        finally:
            os.close(fd)
            with _held_lock:
                _held.discard(self._key)


# fdatasync: make the file's data durable (F_FULLFSYNC on macOS, where fsync is not
# enough). Picked once here, not on every call: it runs once per save.
if sys.platform == "darwin":
    import fcntl

    def fdatasync(fd: int) -> None:
        """Make the file's data durable: F_FULLFSYNC (fsync is not enough on macOS)."""
        fcntl.fcntl(fd, fcntl.F_FULLFSYNC)

elif hasattr(os, "fdatasync"):

    def fdatasync(fd: int) -> None:
        """Make the file's data durable."""
        os.fdatasync(fd)

else:

    def fdatasync(fd: int) -> None:
        """Make the file's data durable (no fdatasync here: fsync)."""
        os.fsync(fd)


def fsync_dir(path: str) -> None:
    """Persist directory entries (creations, renames); a no-op where dirs cannot be opened."""
    if os.name == "nt":
        return
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def preallocate(fd: int, size: int) -> None:
    """Reserve ``size`` bytes and extend the file to it (fallocate, else ftruncate)."""
    if size <= 0:
        return
    if hasattr(os, "posix_fallocate"):
        try:
            os.posix_fallocate(fd, 0, size)
            return
        except OSError as err:
            if err.errno not in (errno.EOPNOTSUPP, errno.ENOTSUP, errno.EINTR, errno.EINVAL):
                raise
    if os.fstat(fd).st_size < size:
        os.ftruncate(fd, size)


def zero_to_end(fd: int, offset: int) -> None:
    """Zero the file from ``offset`` to its end, keeping its blocks allocated (etcd ZeroToEnd)."""
    size = os.fstat(fd).st_size
    os.ftruncate(fd, offset)
    if size > offset:
        preallocate(fd, size)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """os.write until everything is written (short writes happen on signals and full disks)."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "short write")
        view = view[n:]
