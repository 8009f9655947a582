"""Typed WAL failures. Every message names the file and offset, or the index, involved."""

from __future__ import annotations


class WALError(Exception):
    """Base of every error the wal package raises on purpose."""


class CRCMismatchError(WALError):
    """A record's CRC does not match: corruption (not a torn tail)."""


class UnexpectedEOFError(WALError):
    """The log ends inside a record: a torn tail, repairable with ``repair()``."""


class SnapshotNotFoundError(WALError):
    """The snapshot the WAL was opened at has no snapshot record in the log."""


class SnapshotMismatchError(WALError):
    """A snapshot record at the opened index has a different term."""


class MetadataConflictError(WALError):
    """Two metadata records in one WAL differ."""


class WALLockedError(WALError):
    """Another writer holds a lock on a segment of this WAL."""


class WALExistsError(WALError):
    """``create`` was asked to make a WAL where one already exists."""


class WALNotFoundError(WALError):
    """No WAL segment exists where one was expected."""


class SequenceGapError(WALError):
    """Segment sequence numbers are not consecutive."""


class SliceOutOfRangeError(WALError):
    """A requested index is outside what the WAL holds."""


class FsyncError(WALError):
    """An fsync or write failed; the WAL object is unusable from now on."""


# --- snapshot files and storage backends (wal/snap.py, wal/storage.py, wal/backends/) ---


class NoSnapshotError(WALError):
    """No readable snapshot file matches what was asked for (etcd's ErrNoSnapshot)."""


class SnapshotCorruptError(WALError):
    """A snapshot file cannot be decoded, or its contents disagree with its name."""


class EmptySnapshotError(SnapshotCorruptError):
    """A snapshot file is empty or carries no data/CRC (etcd's ErrEmptySnapshot)."""


class SnapshotCRCError(SnapshotCorruptError):
    """A snapshot file's CRC-32C does not match its payload (etcd's ErrCRCMismatch)."""


class SnapshotReferenceError(SnapshotCorruptError):
    """A chained snapshot file references a file that is missing or unreadable, or a range
    that is not literal data there; the message names both files."""


class SnapshotBaseGoneError(SnapshotReferenceError):
    """A chained snapshot file references a file that no longer exists: after a purge, an
    older file kept as the base of newer ones (its own references purged). Loading skips
    it without renaming it: the newer files still need its bytes."""


class UnknownBackendError(WALError):
    """No storage backend is registered under the requested name."""


class StorageStateError(WALError):
    """A storage call came in the wrong lifecycle state (e.g. save before load)."""


class StorageClosedError(StorageStateError):
    """The storage object was closed; it cannot be used again."""


class StorageFailedError(FsyncError):
    """An earlier write or fsync failed; the storage object refuses all further calls."""
