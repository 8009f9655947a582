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
from wal.hooks import FSYNC_DURATION_BUCKETS, HOOKS, Hooks
from wal.purge import purge
from wal.records import Entry, HardState, SnapshotRecord
from wal.repair import repair
from wal.verify import valid_snapshot_entries, verify
from wal.wal import WAL

__all__ = [
    "FSYNC_DURATION_BUCKETS",
    "HOOKS",
    "WAL",
    "CRCMismatchError",
    "Entry",
    "FsyncError",
    "HardState",
    "Hooks",
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
    "purge",
    "repair",
    "valid_snapshot_entries",
    "verify",
]

# Snapshot files and the pluggable storage interface (wal/snap.py, wal/storage.py, backends).
from wal.backends import available_backends, open_backend
from wal.errors import (
    EmptySnapshotError,
    NoSnapshotError,
    SnapshotCorruptError,
    SnapshotCRCError,
    StorageClosedError,
    StorageFailedError,
    StorageStateError,
    UnknownBackendError,
)
from wal.snap import Snapshot, Snapshotter
from wal.storage import LoadedState, Storage

__all__ += [
    "EmptySnapshotError",
    "LoadedState",
    "NoSnapshotError",
    "Snapshot",
    "SnapshotCRCError",
    "SnapshotCorruptError",
    "Snapshotter",
    "Storage",
    "StorageClosedError",
    "StorageFailedError",
    "StorageStateError",
    "UnknownBackendError",
    "available_backends",
    "open_backend",
]
