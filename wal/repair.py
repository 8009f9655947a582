"""Repair of a torn tail, the one damage a WAL may fix by itself (etcd ``Repair``)."""

from __future__ import annotations

import os
import time

from wal.decoder import Decoder
from wal.errors import UnexpectedEOFError, WALError
from wal.fileutil import PRIVATE_FILE_MODE, LockedFile, fdatasync, fsync_dir, write_all
from wal.hooks import HOOKS
from wal.segment import read_wal_names

_COPY_CHUNK = 1 << 20


def repair(dirpath: str | os.PathLike[str]) -> bool:
    """Truncate a torn tail of the LAST segment after keeping a ``.broken`` copy.

    Returns True when the log ends cleanly afterwards (also when there was nothing to do),
    False for anything else: corruption, a missing directory, or a segment locked by a
    live writer. Never touches earlier segments.
    """
    d = os.fspath(dirpath)
    try:
        names = read_wal_names(d)
    except WALError:
        return False
    if not names:
        return False
    path = os.path.join(d, names[-1])
    try:
        lf = LockedFile(path, os.O_RDWR)
    except (WALError, OSError):
        return False
    try:
        dec = Decoder([path])
        try:
            for _ in dec.records():
                pass
            return True
        except UnexpectedEOFError:
            pass
        except WALError:
            return False
        _copy(lf.fd, path + ".broken")
        os.ftruncate(lf.fd, dec.last_offset)
        t0 = time.perf_counter()
        fdatasync(lf.fd)
        fsync_dir(d)
        if HOOKS.on_fsync is not None:
            HOOKS.on_fsync(time.perf_counter() - t0)
        return True
    except OSError:
        return False
    finally:
        lf.close()


def _copy(src_fd: int, dst: str) -> None:
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
    try:
        os.fchmod(fd, PRIVATE_FILE_MODE) if hasattr(os, "fchmod") else None
        off = 0
        while chunk := os.pread(src_fd, _COPY_CHUNK, off):
            write_all(fd, chunk)
            off += len(chunk)
        fdatasync(fd)
    finally:
        os.close(fd)
