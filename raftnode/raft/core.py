"""The Raft protocol of one member as a deterministic state machine (no I/O, no clock).

Follows the Raft paper / thesis and etcd-io/raft's semantics; RawNode (rawnode.py) wraps it
with the Ready/persistence bookkeeping. Persistence rules that matter for safety:

* a candidate counts its own vote only once the hard state holding it is durable;
* a leader counts itself towards commit only up to its durable index (``log.persisted``);
* vote grants and append acks are queued in ``msgs_after_persist`` (sent after the Ready
  that carries the state they vouch for is durable); everything else is free to go at once.
"""

from __future__ import annotations

from typing import Protocol

from raftnode.raft.config import Config
from raftnode.raft.errors import (
    ConfChangePendingError,
    InvalidArgumentError,
    InvalidConfChangeError,
    InvariantViolation,
    NoLeaderError,
    NotLeaderError,
    ReadIndexNotReadyError,
    TransferInProgressError,
    UncommittedSizeExceededError,
)
from raftnode.raft.log import RaftLog
from raftnode.raft.progress import Progress, ProgressState
from raftnode.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    ReadState,
    Role,
)

CAMPAIGN_TRANSFER = b"CampaignTransfer"
"""Vote context of a campaign started by MsgTimeoutNow: voters skip the leader-lease check."""

MT = MessageType
_VOTE_RESP = {MT.VOTE: MT.VOTE_RESP, MT.PRE_VOTE: MT.PRE_VOTE_RESP}


class Rng(Protocol):
    """The only source of randomness: a seeded generator (``random.Random`` fits)."""

    def randrange(self, start: int, stop: int, /) -> int: ...


class _ReadRequest:
    __slots__ = ("acks", "ctx", "frm", "index")

    def __init__(self, index: int, frm: int, ctx: bytes, me: int) -> None:
        self.index = index
        self.frm = frm
        self.ctx = ctx
        self.acks = {me}


class Raft:
    def __init__(self, cfg: Config, rng: Rng) -> None:
        cfg.validate()
        self.cfg = cfg
        self.id = cfg.id
        self.rng = rng
        self.max_inflight = cfg.max_inflight_msgs
        self.max_size = cfg.max_size_per_msg
        self.term = 0
        self.vote = NONE
        self.lead = NONE
        self.role = Role.FOLLOWER
        self.log = RaftLog()
        self.voters: set[int] = set()
        self.learners: set[int] = set()
        self.prs: dict[int, Progress] = {}
        self.votes: dict[int, bool] = {}
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.randomized_timeout = cfg.election_tick
        self.lead_transferee = NONE
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.reads: dict[bytes, _ReadRequest] = {}
        self.read_queue: list[bytes] = []
        # followers' read requests that reached a new leader before it committed in its
        # term (etcd-io/raft's pendingReadIndexMessages): served once it has
        self.reads_waiting_commit: list[tuple[bytes, int]] = []
        self.read_states: list[ReadState] = []
        self.msgs: list[Message] = []
        self.msgs_after_persist: list[Message] = []
        self.bcast_pending = False

    # -- membership helpers ------------------------------------------------------------------

    def set_conf(self, cs: ConfState) -> None:
        if set(cs.voters) & set(cs.learners):
            raise InvalidArgumentError(f"node both voter and learner in {cs}")
        self.voters = set(cs.voters)
        self.learners = set(cs.learners)
        self._sync_progress()

    def conf_state(self) -> ConfState:
        return ConfState(tuple(sorted(self.voters)), tuple(sorted(self.learners)))

    def _sync_progress(self) -> None:
        members = self.voters | self.learners
        for nid in list(self.prs):
            if nid not in members:
                del self.prs[nid]
        nxt = self.log.last_index() + 1
        for nid in members:
            pr = self.prs.get(nid)
            if pr is None:
                pr = self.prs[nid] = Progress(next=nxt, recent_active=True)
                if nid == self.id:
                    pr.match = self.log.persisted
            pr.is_learner = nid in self.learners

    def promotable(self) -> bool:
        return self.id in self.voters

    def quorum(self) -> int:
        return len(self.voters) // 2 + 1

    # -- state transitions -------------------------------------------------------------------

    def _reset(self, term: int) -> None:
        if term < self.term:
            raise InvariantViolation(f"term would go back from {self.term} to {term}")
        if term != self.term:
            self.term = term
            self.vote = NONE
        self.lead = NONE
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_timeout()
        self.lead_transferee = NONE
        self.votes = {}
        self.pending_conf_index = 0
        self.uncommitted_size = 0
        self.reads = {}
        self.read_queue = []
        self.reads_waiting_commit = []
        self.bcast_pending = False
        last = self.log.last_index()
        for nid, pr in self.prs.items():
            pr.reset_state(ProgressState.PROBE)
            pr.match = self.log.persisted if nid == self.id else 0
            pr.next = last + 1
            pr.recent_active = False

    def _reset_randomized_timeout(self) -> None:
        et = self.cfg.election_tick
        self.randomized_timeout = self.rng.randrange(et, 2 * et)

    def become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def _become_pre_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise InvariantViolation("leader cannot become pre-candidate")
        self.role = Role.PRE_CANDIDATE
        self.votes = {}
        self.lead = NONE
        self._reset_randomized_timeout()

    def _become_candidate(self) -> None:
        if self.role == Role.LEADER:
            raise InvariantViolation("leader cannot become candidate")
        self._reset(self.term + 1)
        self.vote = self.id  # counted only once persisted: see on_hard_state_persisted
        self.role = Role.CANDIDATE

    def _become_leader(self) -> None:
        if self.role == Role.FOLLOWER:
            raise InvariantViolation("follower cannot become leader without an election")
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        me = self.prs[self.id]
        me.become_replicate()
        me.match = self.log.persisted
        me.recent_active = True
        # Any conf change in the uncommitted tail may still be pending (etcd does the same).
        self.pending_conf_index = self.log.last_index()
        # §5.4.2 / §8: an entry of our own term, so earlier entries can commit.
        self._append_leader(b"", EntryType.NORMAL)

    def on_hard_state_persisted(self, term: int, vote: int) -> None:
        """A hard state is durable: a candidate may now count the vote it gave itself."""
        if (self.role == Role.CANDIDATE and term == self.term and vote == self.id
                and self.id not in self.votes):
            self.votes[self.id] = True
            self._poll()

    def on_entries_persisted(self) -> None:
        """``log.persisted`` moved: the leader's own durable index counts towards commit."""
        if self.role == Role.LEADER:
            me = self.prs.get(self.id)
            if me is not None and me.match < self.log.persisted:
                me.match = self.log.persisted
                me.next = max(me.next, me.match + 1)
                if self._maybe_commit():
                    self._bcast_append()

    # -- sending -----------------------------------------------------------------------------

    def _maybe_send_append(self, to: int, send_if_empty: bool) -> bool:
        pr = self.prs[to]
        if pr.is_paused(self.max_inflight):
            return False
        log = self.log
        prev = pr.next - 1
        prev_term = log.term(prev)
        if prev_term is None:
            if prev > log.last_index():
                raise InvariantViolation(f"progress of {to}: next {pr.next} beyond last + 1")
            return self._send_snapshot(to, pr)
        last = log.last_index()
        ents = log.slice(pr.next, last + 1, self.max_size) if pr.next <= last else []
        if not ents and not send_if_empty:
            return False
        self.msgs.append(Message(MT.APP, to, self.id, self.term, prev_term, prev, ents,
                                 log.commit))
        if pr.state == ProgressState.REPLICATE:
            if ents:
                end = ents[-1].index
                pr.next = end + 1
                pr.inflights.append(end)
        else:
            pr.probe_sent = True
        return True

    def _send_snapshot(self, to: int, pr: Progress) -> bool:
        if not pr.recent_active:
            return False
        snap = self.log.snapshot
        if snap is None:
            raise InvariantViolation("log compacted but no snapshot to send")
        self.msgs.append(Message(MT.SNAP, to, self.id, self.term, snapshot=snap))
        pr.become_snapshot(snap.meta.index)
        return True

    def _bcast_append(self) -> None:
        for nid in self.prs:
            if nid != self.id:
                self._maybe_send_append(nid, True)

    def flush_appends(self) -> None:
        """Send new proposals: one append per follower per Ready (batching)."""
        self.bcast_pending = False
        if self.role != Role.LEADER:
            return
        for nid in self.prs:
            if nid != self.id:
                while self._maybe_send_append(nid, False):
                    pass

    def _bcast_heartbeat(self, ctx: bytes = b"") -> None:
        commit = self.log.commit
        for nid, pr in self.prs.items():
            if nid != self.id:
                self.msgs.append(Message(MT.HEARTBEAT, nid, self.id, self.term,
                                         commit=min(pr.match, commit), context=ctx))

    # -- ticks -------------------------------------------------------------------------------

    def tick(self) -> None:
        if self.role == Role.LEADER:
            self._tick_heartbeat()
        else:
            self.election_elapsed += 1
            if self.election_elapsed >= self.randomized_timeout and self.promotable():
                self.election_elapsed = 0
                self.hup(transfer=False)

    def _tick_heartbeat(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_tick:
            self.election_elapsed = 0
            if self.cfg.check_quorum and not self._quorum_active():
                self.become_follower(self.term, NONE)
                return
            self.lead_transferee = NONE  # a transfer that did not finish in time aborts
        if self.heartbeat_elapsed >= self.cfg.heartbeat_tick:
            self.heartbeat_elapsed = 0
            self._bcast_heartbeat(self.read_queue[-1] if self.read_queue else b"")

    def _quorum_active(self) -> bool:
        active = 0
        for nid, pr in self.prs.items():
            if nid == self.id:
                active += nid in self.voters
                continue
            if pr.recent_active and nid in self.voters:
                active += 1
            pr.recent_active = False
        return active >= self.quorum()

    # -- elections ---------------------------------------------------------------------------

    def _pending_conf_unapplied(self) -> bool:
        log = self.log
        lo, hi = log.applied, log.commit
        if hi <= lo:
            return False
        base = log.base_index
        return any(e.type == EntryType.CONF_CHANGE for e in log.entries[lo - base : hi - base])

    def hup(self, transfer: bool) -> None:
        if self.role == Role.LEADER or not self.promotable():
            return
        if self._pending_conf_unapplied():
            return  # the configuration may change under us: wait until it is applied
        if self.cfg.pre_vote and not transfer:
            self._campaign(pre=True, transfer=False)
        else:
            self._campaign(pre=False, transfer=transfer)

    def _campaign(self, pre: bool, transfer: bool) -> None:
        if pre:
            self._become_pre_candidate()
            mtype, term = MT.PRE_VOTE, self.term + 1
            self.votes[self.id] = True  # a pre-vote promises nothing: no need to persist
            if self._poll():
                return
        else:
            self._become_candidate()
            mtype, term = MT.VOTE, self.term
        ctx = CAMPAIGN_TRANSFER if transfer else b""
        li, lt = self.log.last_index(), self.log.last_term()
        # a vote request goes only once the new term and self-vote are durable (Figure 2:
        # persist before any RPC). Sent earlier, a candidate that crashes and comes back
        # with its old term can campaign for the same term again, win it again with the
        # votes already cast for it, and lead one term twice with different logs.
        out = self.msgs if pre else self.msgs_after_persist
        for nid in sorted(self.voters):
            if nid != self.id:
                out.append(Message(mtype, nid, self.id, term, lt, li, context=ctx))

    def _poll(self) -> bool:
        """Count votes; returns True if the election was decided (won or lost)."""
        granted = rejected = 0
        for nid, ok in self.votes.items():
            if nid in self.voters:
                if ok:
                    granted += 1
                else:
                    rejected += 1
        q = self.quorum()
        if granted >= q:
            if self.role == Role.PRE_CANDIDATE:
                self._campaign(pre=False, transfer=False)
            else:
                self._become_leader()
                self._bcast_append()
            return True
        if rejected > len(self.voters) - q:
            self.become_follower(self.term, NONE)
            return True
        return False

    # -- step --------------------------------------------------------------------------------

    def step(self, m: Message) -> None:
        if m.term == 0:
            pass  # locally originated or forwarded request (READ_INDEX, TRANSFER_LEADER)
        elif m.term > self.term:
            if m.type == MT.VOTE or m.type == MT.PRE_VOTE:
                force = m.context == CAMPAIGN_TRANSFER
                in_lease = (self.cfg.check_quorum and self.lead != NONE
                            and self.election_elapsed < self.cfg.election_tick)
                if in_lease and not force:
                    return  # leader stickiness: we heard from a leader recently
            if m.type == MT.PRE_VOTE or (m.type == MT.PRE_VOTE_RESP and not m.reject):
                pass  # pre-votes never change our term
            elif m.type in (MT.APP, MT.HEARTBEAT, MT.SNAP):
                self.become_follower(m.term, m.frm)
            else:
                self.become_follower(m.term, NONE)
        elif m.term < self.term:
            if (self.cfg.check_quorum or self.cfg.pre_vote) and m.type in (MT.APP, MT.HEARTBEAT):
                # tell a stale leader about the newer term so it steps down
                self.msgs.append(Message(MT.APP_RESP, m.frm, self.id, self.term))
            elif m.type == MT.PRE_VOTE:
                self.msgs.append(Message(MT.PRE_VOTE_RESP, m.frm, self.id, self.term,
                                         reject=True))
            return

        t = m.type
        if t == MT.VOTE or t == MT.PRE_VOTE:
            self._handle_vote_request(m)
            return
        role = self.role
        if role == Role.LEADER:
            self._step_leader(m)
        elif role == Role.FOLLOWER:
            self._step_follower(m)
        else:
            self._step_candidate(m)

    def _handle_vote_request(self, m: Message) -> None:
        can_vote = (self.vote == m.frm or (self.vote == NONE and self.lead == NONE)
                    or (m.type == MT.PRE_VOTE and m.term > self.term))
        resp = _VOTE_RESP[m.type]
        if can_vote and self.log.is_up_to_date(m.index, m.log_term):
            if m.type == MT.VOTE:
                if self.vote not in (NONE, m.frm):
                    raise InvariantViolation(f"second vote in term {self.term}")
                self.election_elapsed = 0
                self.vote = m.frm
                self.msgs_after_persist.append(Message(resp, m.frm, self.id, m.term))
            else:
                self.msgs.append(Message(resp, m.frm, self.id, m.term))
        else:
            self.msgs.append(Message(resp, m.frm, self.id, self.term, reject=True))

    def _step_follower(self, m: Message) -> None:
        t = m.type
        if t == MT.APP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_append(m)
        elif t == MT.HEARTBEAT:
            self.election_elapsed = 0
            self.lead = m.frm
            self.log.commit_to(m.commit)
            self.msgs.append(Message(MT.HEARTBEAT_RESP, m.frm, self.id, self.term,
                                     context=m.context))
        elif t == MT.SNAP:
            self.election_elapsed = 0
            self.lead = m.frm
            self._handle_snapshot(m)
        elif t == MT.TIMEOUT_NOW:
            self.hup(transfer=True)
        elif t == MT.TRANSFER_LEADER or t == MT.READ_INDEX:
            if self.lead != NONE:
                self.msgs.append(Message(t, self.lead, m.frm, 0, index=m.index,
                                         context=m.context))
        elif t == MT.READ_INDEX_RESP:
            self.read_states.append(ReadState(m.index, m.context))

    def _step_candidate(self, m: Message) -> None:
        t = m.type
        if t in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            self.become_follower(m.term, m.frm)
            self._step_follower(m)
        elif (t == MT.PRE_VOTE_RESP and self.role == Role.PRE_CANDIDATE) or (
                t == MT.VOTE_RESP and self.role == Role.CANDIDATE):
            if m.frm not in self.votes:
                self.votes[m.frm] = not m.reject
            self._poll()

    def _handle_append(self, m: Message) -> None:
        log = self.log
        if m.index < log.commit:
            here = log.term(m.index)
            if here is None:
                # compacted here: nothing to compare; etcd's answer, "I have up to commit"
                self.msgs_after_persist.append(Message(MT.APP_RESP, m.frm, self.id, self.term,
                                                       index=log.commit))
                return
            if m.index > 0 and here != m.log_term:
                # a committed entry here that the leader does not have: this member (or the
                # majority) lost acknowledged state, e.g. a power cut under --unsafe-no-fsync.
                # Going on would serve a history the cluster does not have: stop loudly.
                raise InvariantViolation(
                    f"committed entry {m.index} has term {here} here but term {m.log_term} "
                    f"at leader {m.frm}: logs diverged below the commit index")
            # unlike etcd-io/raft, do not answer "up to commit" on trust: compare the entries
            # (maybe_append raises on one that conflicts with a committed entry), so a
            # member that kept entries the majority lost is found out instead of being
            # counted as holding the leader's log
        last_new = log.maybe_append(m.index, m.log_term, m.commit, m.entries)
        if last_new is not None:
            self.msgs_after_persist.append(Message(MT.APP_RESP, m.frm, self.id, self.term,
                                                   index=last_new))
        else:
            hint_index, hint_term = log.find_conflict_by_term(
                min(m.index, log.last_index()), m.log_term)
            self.msgs.append(Message(MT.APP_RESP, m.frm, self.id, self.term, index=m.index,
                                     reject=True, reject_hint=hint_index, log_term=hint_term))

    def _handle_snapshot(self, m: Message) -> None:
        snap = m.snapshot
        assert snap is not None  # RawNode.step rejects a SNAP without one
        log = self.log
        meta = snap.meta
        if meta.index > log.commit:
            if log.match_term(meta.index, meta.term):
                log.commit_to(meta.index)  # we already hold it: just fast-forward commit
            else:
                log.restore(snap)
                self.set_conf(meta.conf_state)
        # after a restore, commit == last index == the snapshot's index
        self.msgs_after_persist.append(Message(MT.APP_RESP, m.frm, self.id, self.term,
                                               index=log.commit))

    # -- leader ------------------------------------------------------------------------------

    def _step_leader(self, m: Message) -> None:
        t = m.type
        if t == MT.APP_RESP:
            self._handle_append_resp(m)
        elif t == MT.HEARTBEAT_RESP:
            self._handle_heartbeat_resp(m)
        elif t == MT.READ_INDEX:
            if m.frm in self.prs:
                self._read_index(m.context, m.frm, refuse=False)
        elif t == MT.TRANSFER_LEADER:
            if m.index in self.voters:  # a remote request for a non-voter is dropped
                self.transfer_leadership(m.index)
        elif t in (MT.APP, MT.HEARTBEAT, MT.SNAP):
            raise InvariantViolation(f"two leaders in term {self.term}: {self.id} and {m.frm}")

    def _handle_append_resp(self, m: Message) -> None:
        pr = self.prs.get(m.frm)
        if pr is None:
            return
        pr.recent_active = True
        if m.reject:
            next_probe = m.reject_hint
            if m.log_term > 0:
                next_probe, _ = self.log.find_conflict_by_term(m.reject_hint, m.log_term)
            if pr.maybe_decr_to(m.index, next_probe):
                if pr.state == ProgressState.REPLICATE:
                    pr.become_probe()
                self._maybe_send_append(m.frm, True)
            return
        old_paused = pr.is_paused(self.max_inflight)
        if pr.maybe_update(m.index) or (pr.match == m.index and pr.state == ProgressState.PROBE):
            if pr.state == ProgressState.PROBE:
                pr.become_replicate()
            elif pr.state == ProgressState.SNAPSHOT:
                if pr.match + 1 >= self.log.first_index():
                    pr.become_probe()
                    pr.become_replicate()
            else:
                pr.free_le(m.index)
            if self._maybe_commit():
                self._bcast_append()
            elif old_paused:
                self._maybe_send_append(m.frm, True)
            while self._maybe_send_append(m.frm, False):
                pass
            if m.frm == self.lead_transferee and pr.match == self.log.last_index():
                self.msgs.append(Message(MT.TIMEOUT_NOW, m.frm, self.id, self.term))

    def _handle_heartbeat_resp(self, m: Message) -> None:
        pr = self.prs.get(m.frm)
        if pr is None:
            return
        pr.recent_active = True
        pr.probe_sent = False
        if pr.state == ProgressState.REPLICATE and len(pr.inflights) >= self.max_inflight:
            pr.inflights.popleft()  # a heartbeat reply frees one slot of a full window
        if pr.match < self.log.last_index() or pr.state == ProgressState.PROBE:
            self._maybe_send_append(m.frm, True)
        if m.context and m.frm in self.voters:
            self._ack_read(m.context, m.frm)

    def _maybe_commit(self) -> bool:
        """Figure 8: commit the quorum-replicated index only if it is of the current term."""
        prs = self.prs
        matches = sorted((prs[v].match for v in self.voters), reverse=True)
        mci = matches[self.quorum() - 1]
        log = self.log
        if mci > log.commit and log.term(mci) == self.term:
            log.commit_to(mci)
            if self.reads_waiting_commit:
                waiting, self.reads_waiting_commit = self.reads_waiting_commit, []
                for ctx, frm in waiting:
                    self._read_index(ctx, frm, refuse=False)
            return True
        return False

    def _append_leader(self, data: bytes, etype: EntryType) -> int:
        log = self.log
        idx = log.last_index() + 1
        log.entries.append(Entry(idx, self.term, etype, data))
        self.bcast_pending = True
        return idx

    def _check_can_propose(self, size: int) -> None:
        if self.role != Role.LEADER:
            if self.lead == NONE:
                raise NoLeaderError("no leader")
            raise NotLeaderError(self.lead)
        if self.lead_transferee != NONE:
            raise TransferInProgressError(f"leadership transfer to {self.lead_transferee}")
        limit = self.cfg.max_uncommitted_entries_size
        if limit and self.uncommitted_size > 0 and self.uncommitted_size + size > limit:
            raise UncommittedSizeExceededError(
                f"uncommitted tail {self.uncommitted_size} + {size} bytes over {limit}")

    def propose(self, data: bytes) -> int:
        self._check_can_propose(len(data))
        self.uncommitted_size += len(data)
        return self._append_leader(data, EntryType.NORMAL)

    def propose_many(self, datas: list[bytes]) -> int:
        """Append several proposals at once; returns the index of the last one."""
        size = sum(len(d) for d in datas)
        self._check_can_propose(size)
        self.uncommitted_size += size
        log = self.log
        term = self.term
        idx = log.last_index()
        normal = EntryType.NORMAL
        ents = log.entries
        for d in datas:
            idx += 1
            ents.append(Entry(idx, term, normal, d))
        self.bcast_pending = True
        return idx

    def reduce_uncommitted(self, ents: list[Entry]) -> None:
        if self.uncommitted_size:
            self.uncommitted_size = max(0, self.uncommitted_size - sum(len(e.data) for e in ents))

    def propose_conf_change(self, cc: ConfChange) -> int:
        data = cc.encode()
        self._check_can_propose(len(data))
        log = self.log
        if self.pending_conf_index > log.applied:
            raise ConfChangePendingError(
                f"conf change at {self.pending_conf_index} not applied yet (applied {log.applied})")
        if log.term(log.commit) != self.term:
            raise ConfChangePendingError("leader has not committed an entry of its term yet")
        self._validate_conf_change(cc)
        self.uncommitted_size += len(data)
        self.pending_conf_index = self._append_leader(data, EntryType.CONF_CHANGE)
        return self.pending_conf_index

    def _validate_conf_change(self, cc: ConfChange) -> None:
        nid, kind = cc.node_id, cc.type
        if nid <= 0:
            raise InvalidConfChangeError(f"bad node id {nid}")
        if kind == ConfChangeType.ADD_NODE and nid in self.voters:
            raise InvalidConfChangeError(f"{nid} is already a voter")
        if kind == ConfChangeType.ADD_LEARNER and (nid in self.voters or nid in self.learners):
            raise InvalidConfChangeError(f"{nid} is already a member")
        if kind == ConfChangeType.PROMOTE_LEARNER and nid not in self.learners:
            raise InvalidConfChangeError(f"{nid} is not a learner")
        if kind == ConfChangeType.REMOVE_NODE:
            if nid not in self.voters and nid not in self.learners:
                raise InvalidConfChangeError(f"{nid} is not a member")
            if self.voters == {nid}:
                raise InvalidConfChangeError("cannot remove the last voter")

    def apply_conf_change(self, cc: ConfChange) -> ConfState:
        """Apply a committed change (it takes effect when applied, as in etcd)."""
        nid, kind = cc.node_id, cc.type
        voters, learners = set(self.voters), set(self.learners)
        if kind in (ConfChangeType.ADD_NODE, ConfChangeType.PROMOTE_LEARNER):
            learners.discard(nid)
            voters.add(nid)
        elif kind == ConfChangeType.ADD_LEARNER:
            if nid not in voters:
                learners.add(nid)
        else:
            voters.discard(nid)
            learners.discard(nid)
        if not voters:
            raise InvariantViolation(f"conf change {cc} leaves no voters")
        self.voters, self.learners = voters, learners
        self._sync_progress()
        if self.role == Role.LEADER:
            if self.id not in voters:
                self.become_follower(self.term, NONE)  # removed leader steps down
            else:
                if self.lead_transferee not in voters:
                    self.lead_transferee = NONE
                if self._maybe_commit():
                    self._bcast_append()
                else:
                    self.bcast_pending = True
        return self.conf_state()

    # -- reads and transfers -----------------------------------------------------------------

    def read_index(self, ctx: bytes) -> None:
        if self.role == Role.LEADER:
            self._read_index(ctx, self.id, refuse=True)
        elif self.lead == NONE:
            raise NoLeaderError("no leader to serve a read index")
        else:
            self.msgs.append(Message(MT.READ_INDEX, self.lead, self.id, 0, context=ctx))

    def _read_index(self, ctx: bytes, frm: int, refuse: bool) -> None:
        log = self.log
        if log.term(log.commit) != self.term:
            if refuse:
                raise ReadIndexNotReadyError("leader has not committed an entry of its term")
            self.reads_waiting_commit.append((ctx, frm))  # a follower's: serve it later
            return
        if self.voters == {self.id}:
            self._release_read(_ReadRequest(log.commit, frm, ctx, self.id))
            return
        if ctx not in self.reads:
            self.reads[ctx] = _ReadRequest(log.commit, frm, ctx, self.id)
            self.read_queue.append(ctx)
        self._bcast_heartbeat(ctx)

    def _ack_read(self, ctx: bytes, frm: int) -> None:
        req = self.reads.get(ctx)
        if req is None:
            return
        req.acks.add(frm)
        if len(req.acks & self.voters) < self.quorum():
            return
        # everything queued before this request is confirmed by the same heartbeat round
        q = self.read_queue
        n = q.index(ctx) + 1
        for c in q[:n]:
            self._release_read(self.reads.pop(c))
        del q[:n]

    def _release_read(self, req: _ReadRequest) -> None:
        if req.frm == self.id:
            self.read_states.append(ReadState(req.index, req.ctx))
        else:
            self.msgs.append(Message(MT.READ_INDEX_RESP, req.frm, self.id, self.term,
                                     index=req.index, context=req.ctx))

    def transfer_leadership(self, to: int) -> None:
        if self.role != Role.LEADER:
            if self.lead == NONE:
                raise NoLeaderError("no leader to transfer leadership")
            self.msgs.append(Message(MT.TRANSFER_LEADER, self.lead, self.id, 0, index=to))
            return
        if to not in self.voters:
            raise InvalidArgumentError(f"cannot transfer leadership to non-voter {to}")
        if to == self.id or to == self.lead_transferee:
            return
        self.lead_transferee = to
        self.election_elapsed = 0  # the transfer must finish within an election timeout
        if self.prs[to].match == self.log.last_index():
            self.msgs.append(Message(MT.TIMEOUT_NOW, to, self.id, self.term))
        else:
            self._maybe_send_append(to, True)

    def report_snapshot(self, to: int, ok: bool) -> None:
        pr = self.prs.get(to)
        if self.role != Role.LEADER or pr is None or pr.state != ProgressState.SNAPSHOT:
            return
        if not ok:
            pr.pending_snapshot = 0
        pr.become_probe()
        pr.probe_sent = True  # wait for the follower's reply (or a heartbeat) before probing

    def report_unreachable(self, to: int) -> None:
        pr = self.prs.get(to)
        if self.role == Role.LEADER and pr is not None and pr.state == ProgressState.REPLICATE:
            pr.become_probe()
