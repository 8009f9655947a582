"""The in-memory Raft log of one member: entries after the compaction point, plus watermarks.

Watermarks, always ``base_index <= applied <= commit <= last_index`` (applied may trail a
restored snapshot until the driver applies it) and ``persisted <= handed <= last_index``:

* ``handed``: entries up to here were given to the driver in a Ready (being made durable);
* ``persisted``: entries up to here are durable (told by advance/on_persisted);
* ``commit``: known committed; only entries up to ``min(commit, persisted)`` are applied.
"""

from __future__ import annotations

from raftnode.raft.errors import InvalidArgumentError, InvariantViolation
from raftnode.raft.types import Entry, Snapshot


class RaftLog:
    __slots__ = (
        "applied",
        "base_index",
        "base_term",
        "commit",
        "entries",
        "handed",
        "pending_snapshot",
        "persisted",
        "snapshot",
    )

    def __init__(self) -> None:
        self.entries: list[Entry] = []
        self.base_index = 0
        self.base_term = 0
        self.commit = 0
        self.applied = 0
        self.handed = 0
        self.persisted = 0
        self.snapshot: Snapshot | None = None
        """Newest snapshot we can send to a follower that needs compacted entries."""
        self.pending_snapshot: Snapshot | None = None
        """A snapshot received from the leader, not yet handed out in a Ready."""

    # -- restart -----------------------------------------------------------------------------

    def restore_persisted(self, snapshot: Snapshot | None, entries: list[Entry],
                          commit: int) -> None:
        """Load what storage holds after a restart; everything loaded is durable."""
        if snapshot is not None:
            self.base_index = snapshot.meta.index
            self.base_term = snapshot.meta.term
            self.snapshot = snapshot
        ents = [e for e in entries if e.index > self.base_index]
        expect = self.base_index + 1
        for e in ents:
            if e.index != expect:
                raise InvalidArgumentError(
                    f"persisted entries not contiguous after index {self.base_index}: "
                    f"expected {expect}, got {e.index}")
            expect += 1
        self.entries = ents
        last = self.last_index()
        if commit > last:
            raise InvalidArgumentError(f"hard state commit {commit} beyond last index {last}")
        self.commit = max(commit, self.base_index)
        self.applied = self.base_index
        self.handed = self.persisted = last

    # -- queries -----------------------------------------------------------------------------

    def last_index(self) -> int:
        return self.base_index + len(self.entries)

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.base_term

    def first_index(self) -> int:
        return self.base_index + 1

    def term(self, index: int) -> int | None:
        """Term of the entry at ``index``; None if compacted away or not (yet) in the log."""
        off = index - self.base_index
        if off == 0:
            return self.base_term
        if off < 0 or off > len(self.entries):
            return None
        return self.entries[off - 1].term

    def match_term(self, index: int, term: int) -> bool:
        t = self.term(index)
        return t is not None and t == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """§5.4.1: a candidate's log is at least as up to date as ours."""
        my_term = self.last_term()
        return last_term > my_term or (last_term == my_term and last_index >= self.last_index())

    def slice(self, lo: int, hi: int, max_size: int) -> list[Entry]:
        """Entries [lo, hi) limited to ``max_size`` payload bytes (always at least one)."""
        base = self.base_index
        if lo <= base:
            raise InvariantViolation(f"slice from compacted index {lo} (base {base})")
        ents = self.entries[lo - base - 1 : hi - base - 1]
        if max_size and len(ents) > 1:
            size = 0
            for i, e in enumerate(ents):
                size += len(e.data)
                if size > max_size and i > 0:
                    return ents[:i]
        elif not max_size and len(ents) > 1:
            return ents[:1]
        return ents

    def find_conflict(self, ents: list[Entry] | tuple[Entry, ...]) -> int:
        """Index of the first entry of ``ents`` that we lack or hold with another term; 0 if none.

        Entries at or below our compaction point are committed, hence identical (Log Matching).
        """
        base = self.base_index
        entries = self.entries
        n = len(entries)
        for e in ents:
            off = e.index - base
            if off <= 0:
                continue
            if off > n or entries[off - 1].term != e.term:
                return e.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> tuple[int, int]:
        """Largest j <= index whose term <= ``term`` (the fast-backtracking hint) and its term."""
        index = min(index, self.last_index())
        while index > 0:
            t = self.term(index)
            if t is None:
                return index, 0
            if t <= term:
                return index, t
            index -= 1
        return 0, 0

    # -- mutation ----------------------------------------------------------------------------

    def append(self, ents: list[Entry]) -> None:
        """Append entries, truncating a conflicting uncommitted suffix first (follower path)."""
        if not ents:
            return
        first = ents[0].index
        if first <= self.commit:
            raise InvariantViolation(f"truncating committed entry {first} (commit {self.commit})")
        last = self.last_index()
        if first > last + 1:
            raise InvariantViolation(f"gap in log: appending {first} after {last}")
        if first <= last:
            del self.entries[first - self.base_index - 1 :]
            if self.handed >= first:
                self.handed = first - 1
            if self.persisted >= first:
                self.persisted = first - 1
        self.entries.extend(ents)

    def maybe_append(self, index: int, log_term: int, commit: int,
                     ents: list[Entry] | tuple[Entry, ...]) -> int | None:
        """The follower's AppendEntries receiver (§5.3); returns the last new index or None."""
        if not self.match_term(index, log_term):
            return None
        last_new = index + len(ents)
        ci = self.find_conflict(ents)
        if ci:
            if ci <= self.commit:
                raise InvariantViolation(
                    f"entry {ci} conflicts with committed entry (commit {self.commit})")
            self.append(list(ents[ci - index - 1 :]))
        self.commit_to(min(commit, last_new))
        return last_new

    def commit_to(self, index: int) -> None:
        if index > self.commit:
            if index > self.last_index():
                raise InvariantViolation(
                    f"commit {index} beyond last index {self.last_index()}: log lost or corrupt")
            self.commit = index

    def restore(self, snap: Snapshot) -> None:
        """Replace the whole log by a snapshot received from the leader."""
        self.entries = []
        self.base_index = snap.meta.index
        self.base_term = snap.meta.term
        self.commit = snap.meta.index
        self.applied = snap.meta.index  # the driver applies the snapshot with its Ready
        self.handed = min(self.handed, snap.meta.index)
        self.persisted = min(self.persisted, snap.meta.index)
        self.snapshot = snap
        self.pending_snapshot = snap

    def compact(self, index: int, snap: Snapshot) -> None:
        """Drop entries <= index; ``snap`` (at or after index, applied) serves slow followers."""
        if index <= self.base_index:
            if snap.meta.index > (self.snapshot.meta.index if self.snapshot else 0):
                self.snapshot = snap
            return
        if index > self.applied or snap.meta.index > self.applied:
            raise InvalidArgumentError(
                f"compact to {index} / snapshot {snap.meta.index} beyond applied {self.applied}")
        if snap.meta.index < index:
            raise InvalidArgumentError(f"snapshot {snap.meta.index} older than compaction {index}")
        if index > self.persisted:
            raise InvalidArgumentError(f"compact to {index} beyond persisted {self.persisted}")
        term = self.term(index)
        assert term is not None
        if self.term(snap.meta.index) != snap.meta.term:
            raise InvalidArgumentError(
                f"snapshot term {snap.meta.term} at {snap.meta.index} does not match the log")
        del self.entries[: index - self.base_index]
        self.base_index = index
        self.base_term = term
        self.snapshot = snap

    def take_unstable(self) -> list[Entry]:
        """Entries not yet handed to the driver; marks them handed."""
        handed = self.handed
        last = self.last_index()
        if handed >= last:
            return []
        ents = self.entries[handed - self.base_index :]
        self.handed = last
        return ents

    def has_next_committed(self) -> bool:
        return min(self.commit, self.persisted) > self.applied

    def next_committed(self) -> list[Entry]:
        """Committed, locally durable entries not yet applied (never past ``persisted``)."""
        hi = min(self.commit, self.persisted)
        lo = self.applied
        if hi <= lo:
            return []
        base = self.base_index
        return self.entries[lo - base : hi - base]
