"""The storage interface the raft node persists through, and the rules every backend shares.

A node's life with a Storage::

    s = open_backend(name, data_dir, unsafe_no_fsync=...)
    if not s.exists():
        s.bootstrap(metadata)          # durable, empty member state
    state = s.load()                   # once: metadata, hard state, snapshot, entries after it
    s.save(hard_state, entries)        # per Ready; durable on return
    s.save_snapshot(snapshot)          # snapshot first, as etcd does...
    s.save(hard_state, entries)        # ...then the Ready's hard state and entries...
    s.compact(snapshot.index)          # ...then release the log the snapshot covers
    s.close()

The pure checks below (``check_append``, ``check_compact``) are the single definition of
what a legal call is; each backend calls them before touching its medium, so a bad call is a
typed error that loses nothing, identically everywhere.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Protocol, runtime_checkable

from wal.errors import (
    SliceOutOfRangeError,
    StorageClosedError,
    StorageFailedError,
    StorageStateError,
)
from wal.hooks import WAL_AFTER_FSYNC, WAL_BEFORE_FSYNC, WAL_WRITE
from wal.pagewriter import Chunk
from wal.records import Entry, HardState, SnapshotRecord
from wal.snap import Snapshot

# A failpoint hook, the same shape as ``wal.hooks.Hooks.failpoint``: called with a failpoint
# name (``walWrite``, ``walBeforeFsync``, ``walAfterFsync``) around each durable write. It may
# sleep (inject latency) or raise OSError (inject EIO/ENOSPC), which every backend treats
# exactly like a real I/O failure: FsyncError, and the backend is failed for good.
FaultHook = Callable[[str], None]
#: Writes a snapshot's data file, given its position and its data as parts.
SnapshotDataWriter = Callable[[SnapshotRecord, Sequence[Chunk]], None]

__all__ = [
    "WAL_AFTER_FSYNC",
    "WAL_BEFORE_FSYNC",
    "WAL_WRITE",
    "FaultHook",
    "Lifecycle",
    "LoadedState",
    "LogBounds",
    "Phase",
    "Storage",
    "after_append",
    "after_snapshot",
    "check_append",
    "check_compact",
    "check_snapshot",
    "snapshot_replaces_log",
]


@dataclass(frozen=True, slots=True)
class LoadedState:
    """Everything a member needs to restart: what ``Storage.load`` returns.

    ``entries`` are those after ``snapshot`` (or from index 1 without one), contiguous. They
    may include uncommitted entries: never apply anything above ``hard_state.commit``.
    """

    metadata: bytes
    hard_state: HardState
    snapshot: Snapshot | None
    entries: list[Entry] = field(default_factory=list)

    @property
    def snapshot_record(self) -> SnapshotRecord:
        return self.snapshot.record if self.snapshot is not None else SnapshotRecord()

    @property
    def first_index(self) -> int:
        """Index of the first entry the log may hold (snapshot index + 1)."""
        return self.snapshot_record.index + 1

    @property
    def last_index(self) -> int:
        """Index of the last entry, or the snapshot index when the log is empty."""
        return self.entries[-1].index if self.entries else self.snapshot_record.index


@runtime_checkable
class Storage(Protocol):
    """Durable raft state of one member. Not thread-safe: one caller (the persistence worker)."""

    def exists(self) -> bool:
        """Whether durable state for a member exists here (bootstrap done)."""
        ...

    def bootstrap(self, metadata: bytes) -> None:
        """Create empty durable state for a new member. WALExistsError if some exists."""
        ...

    def load(self) -> LoadedState:
        """Read everything back and open for writing. Once per object, before any save.

        WALNotFoundError without bootstrap; WALLockedError if another writer holds it.
        """
        ...

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Persist a hard state and/or a contiguous batch of entries, durably on return
        (unless unsafe_no_fsync). ``entries[0].index`` at or below the last index replaces
        that entry and every later one (raft's conflict truncation)."""
        ...

    def save_snapshot(self, snapshot: Snapshot, *, data_written: bool = False) -> None:
        """Persist a snapshot durably. One that matches the log's entry at its index keeps
        the entries after it; any other (a leader's, past the end of the log or over a
        conflicting entry) replaces the log, as raft's restore does. ``load`` returns it
        only once a saved hard state commits its index (etcd's ValidSnapshotEntries).

        ``data_written``: the data was already written durably by
        :meth:`snapshot_data_writer`'s function; only the record remains to be saved."""
        ...

    def snapshot_data_writer(self) -> SnapshotDataWriter | None:
        """A function that durably writes a snapshot's data, and touches nothing else of
        this object, so it may run on another thread or in a forked child while the
        persistence worker goes on: the big write then stays off the log's critical path.
        ``None`` where the data lives inside the log store (memory, sqlite). It takes the
        snapshot's position and its data as parts (see :func:`wal.snap.encode_snapshot_parts`)."""
        ...

    def compact(self, index: int) -> None:
        """Release the log up to ``index``: at most the newest snapshot at or below the
        durable commit, where the next ``load`` will start."""
        ...

    def close(self) -> None:
        """Release files and locks. Idempotent. Every other call afterwards raises."""
        ...


class Phase(Enum):
    NEW = "new"  # constructed; exists/bootstrap/load allowed
    OPEN = "open"  # loaded; writes allowed
    CLOSED = "closed"
    FAILED = "failed"


@dataclass(slots=True)
class LogBounds:
    """What a backend must know to validate calls, kept in memory beside the medium.

    ``snapshots`` holds the indexes of snapshots known to be loadable: the one ``load``
    returned and every one saved since. The log's terms are kept as runs (``run_starts[k]``
    is the first index with term ``run_terms[k]``; a run ends where the next begins or at
    ``last_index``): raft terms only grow along the log and change rarely, so this answers
    "which term is at index i" without keeping entries, at a cost per batch, not per entry.
    """

    snapshot_index: int = 0  # entries at or below are frozen by a snapshot
    last_index: int = 0
    commit: int = 0  # durable commit index
    snapshots: list[int] = field(default_factory=list)
    run_starts: list[int] = field(default_factory=list)
    run_terms: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, state: LoadedState) -> LogBounds:
        rec = state.snapshot_record
        b = cls(
            snapshot_index=rec.index,
            last_index=rec.index,
            commit=state.hard_state.commit,
            snapshots=[rec.index] if rec.index else [],
        )
        if rec.index:
            b.run_starts.append(rec.index)
            b.run_terms.append(rec.term)
        if state.entries:
            b._extend(state.entries)
        return b

    def compactable(self) -> int:
        """The highest index ``compact`` may release: the newest committed snapshot's.

        Releasing past it would break the next ``load``, which starts from that snapshot.
        """
        return max((i for i in self.snapshots if i <= self.commit), default=0)

    def term_at(self, index: int) -> int | None:
        """Term of the entry (or snapshot) at ``index``, None where the log has nothing."""
        if index > self.last_index or not self.run_starts or index < self.run_starts[0]:
            return None
        return self.run_terms[bisect_right(self.run_starts, index) - 1]

    def _extend(self, entries: Sequence[Entry]) -> None:
        """Replace the log from ``entries[0].index`` on with ``entries`` (terms only)."""
        first = entries[0].index
        k = bisect_left(self.run_starts, first)
        del self.run_starts[k:]
        del self.run_terms[k:]
        starts, terms = self.run_starts, self.run_terms
        if entries[0].term == entries[-1].term:  # terms never decrease: one run
            if not terms or terms[-1] != entries[0].term:
                starts.append(first)
                terms.append(entries[0].term)
        else:
            for e in entries:
                if not terms or terms[-1] != e.term:
                    starts.append(e.index)
                    terms.append(e.term)
        self.last_index = entries[-1].index


def check_append(bounds: LogBounds, entries: Sequence[Entry]) -> None:
    """Reject a batch that would leave a gap, reorder entries or rewrite the snapshot."""
    if not entries:
        return
    first = entries[0].index
    if first <= bounds.snapshot_index:
        raise SliceOutOfRangeError(
            f"storage: entry index {first} is covered by the snapshot at {bounds.snapshot_index}"
        )
    if first > bounds.last_index + 1:
        raise SliceOutOfRangeError(
            f"storage: entry index {first} leaves a gap after last index {bounds.last_index}"
        )
    # One C-speed comparison instead of a Python loop: this runs on every save.
    if entries[-1].index - first + 1 != len(entries) or [e.index for e in entries] != list(
        range(first, first + len(entries))
    ):
        raise SliceOutOfRangeError(
            f"storage: entries not contiguous: indexes {first}..{entries[-1].index} "
            f"in a batch of {len(entries)}"
        )


def after_append(bounds: LogBounds, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
    if entries:
        bounds._extend(entries)
    if hard_state is not None and not hard_state.is_empty():
        bounds.commit = hard_state.commit


def check_compact(bounds: LogBounds, index: int) -> None:
    """Only a prefix covered by a saved, committed snapshot may be released."""
    limit = bounds.compactable()
    if index < 0 or index > limit:
        raise SliceOutOfRangeError(
            f"storage: cannot compact to {index}: the newest snapshot at or below the durable "
            f"commit {bounds.commit} is at {limit}"
        )


def check_snapshot(bounds: LogBounds, snapshot: Snapshot) -> None:
    if snapshot.index <= 0 or snapshot.term <= 0:
        raise SliceOutOfRangeError(
            f"storage: snapshot needs index and term > 0, got index {snapshot.index} "
            f"term {snapshot.term}"
        )
    if snapshot.index < bounds.snapshot_index:
        raise SliceOutOfRangeError(
            f"storage: snapshot at {snapshot.index} is older than the one at "
            f"{bounds.snapshot_index}"
        )


def snapshot_replaces_log(bounds: LogBounds, snapshot: Snapshot) -> bool:
    """Whether saving ``snapshot`` replaces the whole log, as raft's restore does.

    A snapshot that matches the log's entry at its index (same term) is a compaction point:
    the entries after it stay. Any other snapshot (one received from a leader, past the end
    of the log or over a conflicting entry) replaces the log: every entry after it is
    stale and must not come back on reload (cf. etcd-io/etcd#22442).
    """
    return bounds.term_at(snapshot.index) != snapshot.term


def after_snapshot(bounds: LogBounds, snapshot: Snapshot, replaced: bool) -> None:
    """Entries up to the snapshot are frozen; a replacing snapshot leaves the log empty
    after it, so the next entry is ``snapshot.index + 1``."""
    bounds.snapshot_index = max(bounds.snapshot_index, snapshot.index)
    bounds.snapshots.append(snapshot.index)
    floor = bounds.compactable()  # older snapshots can never matter again: keep it short
    bounds.snapshots[:] = [i for i in bounds.snapshots if i >= floor]
    if replaced:
        bounds.run_starts[:] = [snapshot.index]
        bounds.run_terms[:] = [snapshot.term]
        bounds.last_index = snapshot.index
    else:  # forget terms wholly below the snapshot: the list stays short
        k = bisect_right(bounds.run_starts, snapshot.index) - 1
        del bounds.run_starts[:k]
        del bounds.run_terms[:k]


class Lifecycle:
    """The state machine every backend embeds: NEW -> OPEN -> CLOSED, any -> FAILED."""

    __slots__ = ("cause", "phase", "where")

    def __init__(self, where: str) -> None:
        self.phase = Phase.NEW
        self.where = where
        self.cause: BaseException | None = None

    def require(self, *allowed: Phase) -> None:
        if self.phase in allowed:
            return
        if self.phase is Phase.FAILED:
            raise StorageFailedError(
                f"storage {self.where} failed earlier ({self.cause!r}); it refuses every call"
            ) from self.cause
        if self.phase is Phase.CLOSED:
            raise StorageClosedError(f"storage {self.where} is closed")
        want = "/".join(p.value for p in allowed)
        raise StorageStateError(f"storage {self.where} is {self.phase.value}, call needs {want}")

    def fail(self, cause: BaseException) -> None:
        self.phase = Phase.FAILED
        self.cause = cause
