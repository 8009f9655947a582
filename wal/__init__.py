"""An etcd-grade segmented write-ahead log and the pluggable storage the raft node persists through."""

from wal.errors import (
    CRCMismatchError,
    FsyncError,
    MetadataConflictError,
    SequenceGapError,
    SliceOutOfRangeError,
    SnapshotMismatchError,
    SnapshotNotFoundError,
    UnexpectedEOFError,
    WALError,
    WALExistsError,
    WALLockedError,
    WALNotFoundError,
)
from wal.records import Entry, HardState, SnapshotRecord

__all__ = [
    "CRCMismatchError",
    "Entry",
    "FsyncError",
    "HardState",
    "MetadataConflictError",
    "SequenceGapError",
    "SliceOutOfRangeError",
    "SnapshotMismatchError",
    "SnapshotNotFoundError",
    "SnapshotRecord",
    "UnexpectedEOFError",
    "WALError",
    "WALExistsError",
    "WALLockedError",
    "WALNotFoundError",
]
