"""Deleting old segments that no writer holds (etcd ``fileutil.PurgeFile``)."""

from __future__ import annotations

import os

from wal.errors import WALLockedError
from wal.fileutil import LockedFile, fsync_dir, held_in_process
from wal.segment import is_wal_name


def purge(dirpath: str | os.PathLike[str], max_files: int) -> list[str]:
    """Delete the oldest segments while more than ``max_files`` remain; 0 means unlimited.

    Stops at the first segment that is locked, by another process or by a WAL in this one:
    a segment is only deletable once ``release_lock_to`` let go of it, that is once a
    snapshot covers it. Returns the deleted paths.
    """
    d = os.fspath(dirpath)
    if max_files <= 0:
        return []
    names = sorted(n for n in os.listdir(d) if is_wal_name(n))
    removed: list[str] = []
    while len(names) > max_files:
        path = os.path.join(d, names[0])
        if held_in_process(path):
            break
        try:
            lf = LockedFile(path, os.O_RDWR)
        except WALLockedError:
            break
        except FileNotFoundError:
            names.pop(0)
            continue
        try:
            os.remove(path)
        finally:
            lf.close()
        removed.append(path)
        names.pop(0)
    if removed:
        fsync_dir(d)
    return removed
