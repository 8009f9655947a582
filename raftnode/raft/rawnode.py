"""RawNode: the driver-facing API of the core (inputs in, Ready batches out).

Processing contract (details in docs/raft-core.md):

default mode (``Config.async_storage_writes=False``)::

    rd = node.ready()
    persist rd.snapshot, rd.entries, rd.hard_state (fsync)
    send rd.messages and rd.persist_messages
    apply rd.snapshot / rd.committed_entries (apply_conf_change for CONF_CHANGE entries)
    node.advance(rd)                     # also tells the core rd is durable

async mode (``async_storage_writes=True``)::

    rd = node.ready(); send rd.messages at once
    hand rd to the persistence worker (FIFO); apply rd.committed_entries; node.advance(rd)
    ... worker done with rd: node.on_persisted(rd.persist_index, rd.persist_term),
        then send rd.persist_messages
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from raftnode.raft.config import Config
from raftnode.raft.core import Raft, Rng
from raftnode.raft.errors import InvalidArgumentError, InvariantViolation
from raftnode.raft.progress import ProgressState
from raftnode.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SoftState,
)

EMPTY_HARD_STATE = HardState()


@dataclass(slots=True, frozen=True)
class ProgressStatus:
    match: int
    next: int
    state: ProgressState
    is_learner: bool
    recent_active: bool
    inflight: int


@dataclass(slots=True, frozen=True)
class Status:
    id: int
    term: int
    vote: int
    commit: int
    applied: int
    lead: int
    role: Role
    progress: dict[int, ProgressStatus]
    conf_state: ConfState
    last_index: int
    persisted_index: int
    lead_transferee: int


@dataclass(slots=True, frozen=True)
class _InFlight:
    """A Ready handed out whose durability has not been reported yet."""

    index: int
    term: int
    hard_state: HardState | None


def _bootstrap_log(cs: ConfState) -> tuple[list[Entry], HardState]:
    """A brand-new cluster's first entries: one committed conf change per initial member.

    Every initial member builds the same entries (term 1, voters then learners, sorted), so a
    member that joins later learns the full configuration by replaying the log from index 1.
    """
    ccs = [ConfChange(ConfChangeType.ADD_NODE, v) for v in sorted(cs.voters)]
    ccs += [ConfChange(ConfChangeType.ADD_LEARNER, lr) for lr in sorted(cs.learners)]
    ents = [Entry(i + 1, 1, EntryType.CONF_CHANGE, cc.encode()) for i, cc in enumerate(ccs)]
    return ents, HardState(1, NONE, len(ents))


def _take_servable(pending: list[ReadState], applied: int) -> list[ReadState]:
    """Confirmed reads whose index is applied (in request order); the rest stay pending."""
    if not pending or pending[0].index > applied:
        return []
    n = 0
    while n < len(pending) and pending[n].index <= applied:
        n += 1
    out = pending[:n]
    del pending[:n]
    return out


class RawNode:
    __slots__ = ("_async", "_in_flight", "_outstanding", "_prev_hard", "_prev_soft", "raft")

    def __init__(self, config: Config, rng: Rng, *, hard_state: HardState = EMPTY_HARD_STATE,
                 snapshot: Snapshot | None = None, entries: Sequence[Entry] = (),
                 conf_state: ConfState | None = None, applied: int = 0) -> None:
        """Start, or restart from persisted state.

        ``conf_state``: the membership as of ``applied`` (a brand-new cluster passes the initial
        voters; a joining member passes nothing and waits for the leader); defaults to the
        snapshot's. ``applied``: what the driver's state machine already holds (>= the
        snapshot's index); committed entries after it are handed out again.
        """
        r = self.raft = Raft(config, rng)
        log = r.log
        boot = (conf_state is not None and snapshot is None and not entries
                and hard_state == HardState())
        if boot:
            assert conf_state is not None
            entries, hard_state = _bootstrap_log(conf_state)
            log.restore_persisted(None, [], 0)
            log.entries.extend(entries)  # unstable: the first Ready persists them
            log.commit = len(entries)
        else:
            log.restore_persisted(snapshot, list(entries), hard_state.commit)
        if applied:
            if applied > log.commit:
                raise InvalidArgumentError(f"applied {applied} beyond commit {log.commit}")
            log.applied = max(applied, log.base_index)
        if hard_state.vote < 0 or hard_state.term < 0:
            raise InvalidArgumentError(f"bad hard state {hard_state}")
        r.term = hard_state.term
        r.vote = hard_state.vote
        if conf_state is not None:
            r.set_conf(conf_state)
        elif snapshot is not None:
            r.set_conf(snapshot.meta.conf_state)
        r.become_follower(r.term, NONE)
        self._async = config.async_storage_writes
        # after a bootstrap the first Ready carries the new hard state
        self._prev_hard = HardState() if boot else HardState(r.term, r.vote, log.commit)
        self._prev_soft = SoftState(NONE, Role.FOLLOWER)
        self._in_flight: deque[_InFlight] = deque()
        self._outstanding: Ready | None = None

    # -- inputs ------------------------------------------------------------------------------

    def tick(self) -> None:
        self.raft.tick()

    def step(self, msg: Message) -> None:
        """Feed a message from a peer. A malformed one raises InvalidArgumentError and
        changes nothing."""
        if msg.to != self.raft.id:
            raise InvalidArgumentError(f"message for {msg.to} stepped into {self.raft.id}")
        if msg.frm <= 0 or msg.term < 0 or msg.index < 0 or msg.commit < 0:
            raise InvalidArgumentError(f"malformed message {msg.type!r} from {msg.frm}")
        if msg.type == MessageType.SNAP and msg.snapshot is None:
            raise InvalidArgumentError(f"SNAP from {msg.frm} without a snapshot")
        if msg.type == MessageType.PROP:
            raise InvalidArgumentError("proposals are not forwarded between members")
        self.raft.step(msg)

    def campaign(self) -> None:
        self.raft.hup(transfer=False)

    def propose(self, data: bytes) -> int:
        """Append a proposal (leader only); returns its index. Raises ProposalDroppedError."""
        return self.raft.propose(data)

    def propose_many(self, datas: list[bytes]) -> int:
        """Append a batch of proposals; returns the index of the last one."""
        return self.raft.propose_many(datas)

    def propose_conf_change(self, cc: ConfChange) -> int:
        return self.raft.propose_conf_change(cc)

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        return self.raft.apply_conf_change(cc)

    def read_index(self, ctx: bytes) -> None:
        self.raft.read_index(ctx)

    def transfer_leadership(self, to: int) -> None:
        self.raft.transfer_leadership(to)

    def report_snapshot(self, to: int, ok: bool) -> None:
        self.raft.report_snapshot(to, ok)

    def report_unreachable(self, to: int) -> None:
        self.raft.report_unreachable(to)

    def compact(self, index: int, snapshot: Snapshot) -> None:
        self.raft.log.compact(index, snapshot)

    # -- outputs -----------------------------------------------------------------------------

    def has_ready(self) -> bool:
        if self._outstanding is not None:
            return False
        r = self.raft
        if r.bcast_pending:
            r.flush_appends()
        log = r.log
        return bool(
            r.msgs or r.msgs_after_persist or log.handed < log.last_index()
            or (r.read_states and r.read_states[0].index <= log.applied)
            or log.pending_snapshot is not None or log.has_next_committed()
            or r.term != self._prev_hard.term or r.vote != self._prev_hard.vote
            or log.commit != self._prev_hard.commit
            or r.lead != self._prev_soft.leader or r.role != self._prev_soft.role)

    def ready(self) -> Ready:
        if self._outstanding is not None:
            raise InvariantViolation("ready() called again before advance()")
        r = self.raft
        if r.bcast_pending:
            r.flush_appends()
        log = r.log
        soft: SoftState | None = None
        if r.lead != self._prev_soft.leader or r.role != self._prev_soft.role:
            soft = self._prev_soft = SoftState(r.lead, r.role)
        snap = log.pending_snapshot
        log.pending_snapshot = None
        if snap is not None and log.handed < snap.meta.index:
            log.handed = snap.meta.index
        entries = log.take_unstable()
        committed = log.next_committed()
        if committed and r.role == Role.LEADER:
            r.reduce_uncommitted(committed)
        prev = self._prev_hard
        hard: HardState | None = None
        if r.term != prev.term or r.vote != prev.vote or log.commit != prev.commit:
            hard = HardState(r.term, r.vote, log.commit)
            if hard.term < prev.term or hard.commit < prev.commit:
                raise InvariantViolation(f"hard state went back: {prev} -> {hard}")
            if hard.term == prev.term and prev.vote not in (NONE, hard.vote):
                raise InvariantViolation(f"vote changed within term {hard.term}: {prev}->{hard}")
            self._prev_hard = hard
        pmsgs = r.msgs_after_persist
        if pmsgs and hard is None and not entries and snap is None:
            hard = prev  # acks vouch for earlier, maybe in-flight state: order them behind it
        msgs = r.msgs
        r.msgs = []
        r.msgs_after_persist = []
        reads = _take_servable(r.read_states, log.applied)
        handed = log.handed
        pterm = log.term(handed)
        rd = Ready(soft, hard, entries, snap, msgs, pmsgs, committed, reads, handed,
                   pterm if pterm is not None else 0)
        if hard is not None or entries or snap is not None:
            self._in_flight.append(_InFlight(rd.persist_index, rd.persist_term, hard))
        self._outstanding = rd
        return rd

    def advance(self, ready: Ready) -> None:
        """The driver handled ``ready``; in default mode this also means it is durable."""
        if ready is not self._outstanding:
            raise InvariantViolation("advance() with a Ready that is not the outstanding one")
        self._outstanding = None
        log = self.raft.log
        if ready.snapshot is not None and ready.snapshot.meta.index > log.applied:
            log.applied = ready.snapshot.meta.index
        if ready.committed_entries:
            log.applied = ready.committed_entries[-1].index
        if not self._async and ready.must_persist:
            self.on_persisted(ready.persist_index, ready.persist_term)

    def on_persisted(self, index: int, term: int) -> None:
        """Storage made a Ready durable: the oldest in-flight Ready with this (index, term) and
        all older ones. Call once per persisted Ready, in order (a FIFO worker does)."""
        q = self._in_flight
        pos = next((i for i, it in enumerate(q) if it.index == index and it.term == term), -1)
        if pos < 0:
            return  # nothing in flight matches: a stale report
        r = self.raft
        log = r.log
        hs: HardState | None = None
        for _ in range(pos + 1):
            item = q.popleft()
            if item.hard_state is not None:
                hs = item.hard_state
        if index > log.persisted and index <= log.handed and log.term(index) == term:
            log.persisted = index
            r.on_entries_persisted()
        if hs is not None:
            r.on_hard_state_persisted(hs.term, hs.vote)

    # -- introspection -----------------------------------------------------------------------

    def term_at(self, index: int) -> int | None:
        """Term of the entry at ``index`` (None if compacted or absent): for snapshot metadata."""
        return self.raft.log.term(index)

    def status(self) -> Status:
        r = self.raft
        log = r.log
        prog = {nid: ProgressStatus(pr.match, pr.next, pr.state, pr.is_learner,
                                    pr.recent_active, len(pr.inflights))
                for nid, pr in r.prs.items()} if r.role == Role.LEADER else {}
        return Status(r.id, r.term, r.vote, log.commit, log.applied, r.lead, r.role, prog,
                      r.conf_state(), log.last_index(), log.persisted, r.lead_transferee)
