"""Segment file names (``%016x-%016x.wal``: sequence, first index) and choosing segments."""

from __future__ import annotations

import os
import re

from wal.errors import SequenceGapError, WALNotFoundError

SUFFIX = ".wal"
_NAME = re.compile(r"\A([0-9a-f]{16})-([0-9a-f]{16})\.wal\Z")


def wal_name(seq: int, index: int) -> str:
    return f"{seq:016x}-{index:016x}.wal"


def parse_wal_name(name: str) -> tuple[int, int]:
    """(sequence, index) of a segment name; ValueError for anything else."""
    m = _NAME.match(name)
    if m is None:
        raise ValueError(f"bad wal name {name!r}")
    return int(m.group(1), 16), int(m.group(2), 16)


def is_wal_name(name: str) -> bool:
    return _NAME.match(name) is not None


def read_wal_names(dirpath: str) -> list[str]:
    """Valid segment names in ``dirpath``, in sequence order (lexical = numeric)."""
    try:
        names = os.listdir(dirpath)
    except FileNotFoundError:
        raise WALNotFoundError(f"wal: directory {dirpath!r} not found") from None
    return sorted(n for n in names if _NAME.match(n))


def exist(dirpath: str) -> bool:
    """True if ``dirpath`` holds any ``*.wal`` file (etcd's Exist)."""
    try:
        return any(n.endswith(SUFFIX) for n in os.listdir(dirpath))
    except (FileNotFoundError, NotADirectoryError):
        return False


def search_index(names: list[str], index: int) -> int:
    """Position of the last segment whose first index is <= ``index``, or -1."""
    for i in range(len(names) - 1, -1, -1):
        if parse_wal_name(names[i])[1] <= index:
            return i
    return -1


def check_sequence(dirpath: str, names: list[str]) -> None:
    """Sequence numbers must be consecutive; a gap (a lost segment) is an error.

    Unlike etcd, a gap right after sequence 0 is an error too (etcd skips that check).
    """
    prev = -1
    for name in names:
        seq = parse_wal_name(name)[0]
        if prev >= 0 and seq != prev + 1:
            raise SequenceGapError(
                f"wal: segment sequence numbers in {dirpath!r} do not increase continuously: "
                f"{name} follows sequence {prev}"
            )
        prev = seq


def select_wal_files(dirpath: str, index: int) -> list[str]:
    """Names to read for a WAL opened at snapshot ``index``: the holder of it and all later."""
    names = read_wal_names(dirpath)
    if not names:
        raise WALNotFoundError(f"wal: no segment files in {dirpath!r}")
    i = search_index(names, index)
    if i < 0:
        raise WALNotFoundError(
            f"wal: no segment in {dirpath!r} holds snapshot index {index} (first is {names[0]})"
        )
    check_sequence(dirpath, names[i:])
    return names[i:]
