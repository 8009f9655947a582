"""Value types that cross the storage boundary.

Kept separate from the codec so backends, the raft node and tests share one definition.
They are immutable: a saved record never changes under a reader's feet.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Entry:
    """One raft log entry as stored: ``type`` 0 is a normal entry, 1 a conf change."""

    index: int
    term: int
    data: bytes = b""
    type: int = 0


@dataclass(frozen=True, slots=True)
class HardState:
    """Raft state that must be durable before a member speaks: term, vote, commit."""

    term: int = 0
    vote: int = 0
    commit: int = 0

    def is_empty(self) -> bool:
        return self.term == 0 and self.vote == 0 and self.commit == 0


@dataclass(frozen=True, slots=True)
class SnapshotRecord:
    """Marker of a snapshot in the WAL: the log position the snapshot covers."""

    index: int = 0
    term: int = 0
