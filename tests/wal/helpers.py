"""Shared helpers for the WAL tests: building logs and locating their files."""

from __future__ import annotations

import os
from pathlib import Path

from wal import WAL, Entry, HardState
from wal.segment import read_wal_names


def ents(first: int, last: int, term: int = 1, size: int = 8) -> list[Entry]:
    """Entries ``first..last`` with data unique to each index."""
    return [Entry(i, term, (b"%d:" % i).ljust(size, b"x")) for i in range(first, last + 1)]


def segments(d: Path) -> list[Path]:
    return [d / n for n in read_wal_names(str(d))]


def read(d: Path, **kw: object) -> tuple[bytes, HardState, list[Entry]]:
    """Open for read (tolerates a torn tail) and read everything."""
    with WAL.open_for_read(str(d), **kw) as w:  # type: ignore[arg-type]
        return w.read_all()


def reopen(d: Path) -> tuple[WAL, tuple[bytes, HardState, list[Entry]]]:
    w = WAL.open(str(d))
    try:
        return w, w.read_all()
    except BaseException:
        w.close()
        raise


def data_end(path: Path) -> int:
    """Offset just past the last non-zero byte (the written part of a preallocated file)."""
    raw = path.read_bytes().rstrip(b"\0")
    return (len(raw) + 7) // 8 * 8


def write_at(path: Path, offset: int, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, offset)
    finally:
        os.close(fd)
