"""In-memory storage: for tests, simulations and throwaway dev nodes. Nothing is durable.

State lives in a process-wide table keyed by the resolved data directory, so closing and
reopening a MemoryStorage on the same path in the same process sees the same state (an
in-process "restart"), and a second open for writing fails like a locked WAL. Everything is
lost when the process exits; ``MemoryStorage.discard(path)`` forgets one directory at once.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from wal.errors import (
    FsyncError,
    SliceOutOfRangeError,
    WALExistsError,
    WALLockedError,
    WALNotFoundError,
)
from wal.hooks import HOOKS
from wal.records import Entry, HardState
from wal.snap import DEFAULT_MAX_SNAPSHOTS, Snapshot
from wal.storage import (
    WAL_AFTER_FSYNC,
    WAL_BEFORE_FSYNC,
    WAL_WRITE,
    FaultHook,
    Lifecycle,
    LoadedState,
    LogBounds,
    Phase,
    after_append,
    after_snapshot,
    check_append,
    check_compact,
    check_snapshot,
    snapshot_replaces_log,
)


@dataclass(slots=True)
class _Member:
    metadata: bytes
    hard_state: HardState = field(default_factory=HardState)
    # index -> entry. A dict, not a list: a follower restoring a snapshot past its log's end
    # leaves a hole below the snapshot that an older snapshot's reload must still see.
    entries: dict[int, Entry] = field(default_factory=dict)
    last: int = 0  # highest index in ``entries`` since the last truncating save
    snapshots: list[Snapshot] = field(default_factory=list)  # ascending by index
    locked: bool = False


_MEMBERS: dict[str, _Member] = {}
_TABLE_LOCK = threading.Lock()


class MemoryStorage:
    """The ``memory`` backend. ``unsafe_no_fsync`` is accepted and meaningless here."""

    __slots__ = ("_bounds", "_hook", "_key", "_life", "_member", "max_snapshots")

    def __init__(
        self,
        dirpath: str | os.PathLike[str],
        *,
        unsafe_no_fsync: bool = False,
        max_snapshots: int = DEFAULT_MAX_SNAPSHOTS,
        hook: FaultHook | None = None,
    ) -> None:
        self._key = str(Path(dirpath).resolve())
        self._life = Lifecycle(f"memory:{self._key}")
        self._member: _Member | None = None
        self._bounds = LogBounds()
        self._hook = hook
        self.max_snapshots = max_snapshots

    @staticmethod
    def discard(dirpath: str | os.PathLike[str]) -> None:
        """Forget the state kept for ``dirpath`` (it must not be open)."""
        with _TABLE_LOCK:
            member = _MEMBERS.get(str(Path(dirpath).resolve()))
            if member is not None and member.locked:
                raise WALLockedError(f"memory storage {dirpath} is open; close it first")
            _MEMBERS.pop(str(Path(dirpath).resolve()), None)

    def exists(self) -> bool:
        self._life.require(Phase.NEW, Phase.OPEN)
        return self._key in _MEMBERS

    def bootstrap(self, metadata: bytes) -> None:
        self._life.require(Phase.NEW)
        with _TABLE_LOCK:
            if self._key in _MEMBERS:
                raise WALExistsError(f"memory storage {self._key} already exists")
            _MEMBERS[self._key] = _Member(metadata=bytes(metadata))

    def load(self) -> LoadedState:
        self._life.require(Phase.NEW)
        with _TABLE_LOCK:
            member = _MEMBERS.get(self._key)
            if member is None:
                raise WALNotFoundError(f"memory storage {self._key} does not exist")
            if member.locked:
                raise WALLockedError(f"memory storage {self._key} is open by another writer")
            member.locked = True
        self._member = member
        valid = [s for s in member.snapshots if s.index <= member.hard_state.commit]
        snap = valid[-1] if valid else None
        after = snap.index if snap is not None else 0
        indexes = sorted(i for i in member.entries if i > after)
        if indexes and (indexes[0] != after + 1 or indexes[-1] - after != len(indexes)):
            with _TABLE_LOCK:
                member.locked = False
            raise SliceOutOfRangeError(
                f"memory storage {self._key}: log after snapshot {after} is not contiguous"
            )
        state = LoadedState(
            metadata=member.metadata,
            hard_state=member.hard_state,
            snapshot=snap,
            entries=[member.entries[i] for i in indexes],
        )
        self._bounds = LogBounds.of(state)
        self._life.phase = Phase.OPEN
        return state

    def _fault(self, point: str) -> None:
        hook = self._hook if self._hook is not None else HOOKS.failpoint
        if hook is None:
            return
        try:
            hook(point)
        except BaseException as exc:
            self._life.fail(exc)
            if isinstance(exc, OSError):
                raise FsyncError(f"memory storage {self._key}: {point} failed: {exc}") from exc
            raise

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        self._life.require(Phase.OPEN)
        member = self._member
        assert member is not None
        check_append(self._bounds, entries)
        if hard_state is not None and hard_state.is_empty():
            hard_state = None  # raft's IsEmptyHardState: nothing to persist (as the WAL does)
        if hard_state is None and not entries:
            return
        self._fault(WAL_WRITE)
        self._fault(WAL_BEFORE_FSYNC)
        if entries:
            log = member.entries
            for i in range(entries[0].index, member.last + 1):
                log.pop(i, None)
            for e in entries:
                log[e.index] = e
            member.last = entries[-1].index
        if hard_state is not None:
            member.hard_state = hard_state
        after_append(self._bounds, hard_state, entries)
        self._fault(WAL_AFTER_FSYNC)

    def snapshot_data_writer(self) -> None:
        return None  # the data is part of the store's own write

    def save_snapshot(self, snapshot: Snapshot, *, data_written: bool = False) -> None:
        self._life.require(Phase.OPEN)
        if data_written:
            raise ValueError("this backend writes snapshot data itself: data_written=False")
        member = self._member
        assert member is not None
        check_snapshot(self._bounds, snapshot)
        replaced = snapshot_replaces_log(self._bounds, snapshot)
        self._fault(WAL_WRITE)
        self._fault(WAL_BEFORE_FSYNC)
        if replaced:  # raft's restore: the entries after the snapshot are stale
            for i in range(snapshot.index + 1, member.last + 1):
                member.entries.pop(i, None)
            member.last = snapshot.index
        snaps = [s for s in member.snapshots if s.index != snapshot.index]
        snaps.append(snapshot)
        snaps.sort(key=lambda s: (s.term, s.index))
        after_snapshot(self._bounds, snapshot, replaced)
        if self.max_snapshots:  # never drop the snapshot a reload would start from
            protect = self._bounds.compactable()
            keep = snaps[-self.max_snapshots :]
            snaps = [s for s in snaps if s in keep or s.index >= protect]
        member.snapshots = snaps
        self._fault(WAL_AFTER_FSYNC)

    def compact(self, index: int) -> None:
        self._life.require(Phase.OPEN)
        member = self._member
        assert member is not None
        check_compact(self._bounds, index)
        log = member.entries
        for i in [i for i in log if i <= index]:
            del log[i]

    def close(self) -> None:
        if self._life.phase is Phase.CLOSED:
            return
        member = self._member
        if member is not None:
            with _TABLE_LOCK:
                member.locked = False
            self._member = None
        if self._life.phase is not Phase.FAILED:
            self._life.phase = Phase.CLOSED

