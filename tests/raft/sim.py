"""Deterministic simulation of a Raft cluster built from RawNodes.

Everything (network faults, crashes, disk stalls, proposals, membership changes, transfers)
comes from one ``random.Random(seed)``, so a seed replays exactly:

    RAFT_SIM_SEED=<seed> .venv/bin/python -m tests.raft.sim

Safety is checked after every tick; liveness after the faults heal. A violation raises
``SimFailure`` carrying the seed, the replay command and the tail of the event trace.
"""

from __future__ import annotations

import random
import sys
import zlib
from collections import deque
from dataclasses import dataclass, field

from raftnode.raft.config import Config
from raftnode.raft.errors import InvalidConfChangeError, ProposalDroppedError, RaftError
from raftnode.raft.rawnode import RawNode
from raftnode.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)

ELECTION_TICK = 10
CHAOS_TICKS = 300


class SimFailure(AssertionError):
    pass


@dataclass(slots=True)
class Variant:
    """The shape of one run, drawn from the seed."""

    voters: int
    learners: int
    async_writes: bool
    chaos_ticks: int
    drop: float
    dup: float
    max_delay: int
    membership: bool
    transfers: bool
    snapshot_every: int
    max_inflight: int
    max_size: int

    @staticmethod
    def draw(rng: random.Random, chaos_ticks: int) -> Variant:
        return Variant(
            voters=rng.choice((3, 3, 5)),
            learners=rng.choice((0, 0, 1)),
            async_writes=rng.random() < 0.5,
            chaos_ticks=chaos_ticks,
            drop=rng.choice((0.0, 0.02, 0.1, 0.2)),
            dup=rng.choice((0.0, 0.02, 0.1)),
            max_delay=rng.choice((0, 1, 3)),
            membership=rng.random() < 0.4,
            transfers=rng.random() < 0.3,
            snapshot_every=rng.choice((0, 5, 20)),
            max_inflight=rng.choice((1, 4, 256)),
            max_size=rng.choice((0, 16, 1 << 20)),
        )


@dataclass(slots=True)
class Storage:
    """What survives a crash: only what the node reported (or made) durable."""

    hard_state: HardState = field(default_factory=HardState)
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)

    def persist(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.snapshot = rd.snapshot
            self.entries = []
        if rd.entries:
            first = rd.entries[0].index
            base = self.snapshot.meta.index if self.snapshot else 0
            keep = first - base - 1
            if keep < 0 or keep > len(self.entries):
                raise SimFailure(f"storage gap: appending {first}, base {base}, "
                                 f"have {len(self.entries)}")
            del self.entries[keep:]
            self.entries.extend(rd.entries)
        if rd.hard_state is not None:
            old = self.hard_state
            hs = rd.hard_state
            if (hs.term < old.term or hs.commit < old.commit
                    or (hs.term == old.term and old.vote not in (0, hs.vote))):
                raise SimFailure(f"persisted hard state went back: {old} -> {hs}")
            self.hard_state = hs

    def save_snapshot(self, snap: Snapshot) -> None:
        base = self.snapshot.meta.index if self.snapshot else 0
        if snap.meta.index <= base:
            return
        drop = snap.meta.index - base
        self.entries = self.entries[drop:] if drop <= len(self.entries) else []
        self.snapshot = snap


@dataclass(slots=True)
class StateMachine:
    applied: int = 0
    digest: int = 0
    conf: ConfState = field(default_factory=ConfState)


class SimNode:
    def __init__(self, nid: int, sim: Simulation, conf: ConfState | None) -> None:
        self.id = nid
        self.sim = sim
        self.storage = Storage()
        self.boot_conf = conf
        self.raw: RawNode | None = None
        self.sm = StateMachine()
        self.inflight: deque[Ready] = deque()  # async mode: Readys awaiting the disk
        self.stalled_until = 0
        self.down_until = 0
        self.last_term = 0
        self.last_commit = 0
        self.start()

    def start(self) -> None:
        st = self.storage
        snap = st.snapshot
        if snap is not None:
            conf: ConfState | None = snap.meta.conf_state
            self.sm = StateMachine(snap.meta.index, _snap_digest(snap), snap.meta.conf_state)
        else:
            conf = self.boot_conf
            self.sm = StateMachine(0, 0, conf or ConfState())
        v = self.sim.variant
        cfg = Config(self.id, election_tick=ELECTION_TICK, heartbeat_tick=1,
                     async_storage_writes=v.async_writes, max_inflight_msgs=v.max_inflight,
                     max_size_per_msg=v.max_size)
        self.raw = RawNode(cfg, self.sim.rng, hard_state=st.hard_state, snapshot=snap,
                           entries=list(st.entries), conf_state=conf,
                           applied=snap.meta.index if snap else 0)
        self.inflight.clear()
        self.last_term = st.hard_state.term
        self.last_commit = st.hard_state.commit

    def crash(self) -> None:
        self.raw = None
        self.inflight.clear()

    @property
    def up(self) -> bool:
        return self.raw is not None


def _snap_digest(snap: Snapshot) -> int:
    return int(snap.data.decode().split(":")[1])


class Simulation:
    def __init__(self, seed: int, chaos_ticks: int = CHAOS_TICKS, variant: Variant | None = None,
                 trace_len: int = 60) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self.variant = variant or Variant.draw(self.rng, chaos_ticks)
        v = self.variant
        self.now = 0
        self.trace: deque[str] = deque(maxlen=trace_len)
        voters = tuple(range(1, v.voters + 1))
        learners = tuple(range(v.voters + 1, v.voters + v.learners + 1))
        boot = ConfState(voters, learners)
        self.nodes: dict[int, SimNode] = {}
        for nid in voters + learners:
            self.nodes[nid] = SimNode(nid, self, boot)
        self.next_id = v.voters + v.learners + 1
        self.net: list[tuple[int, int, Message]] = []
        self.seq = 0
        self.blocked: set[tuple[int, int]] = set()
        self.drop = v.drop
        self.dup = v.dup
        self.max_delay = v.max_delay
        self.faults = True
        self.fault_rate = self.rng.choice((0.5, 1.0, 2.0))
        # "flapping" runs isolate whoever leads for a few ticks, again and again: many short
        # terms with divergent uncommitted tails (the Figure 8 situations)
        self.flap = self.rng.random() < 0.3
        self.heal_at = 0
        # global facts for the checkers
        self.leaders: dict[int, int] = {}
        self.history: dict[int, tuple[int, int, bytes]] = {}
        self.digests: dict[int, int] = {0: 0}
        self.log_entries: dict[tuple[int, int], tuple[int, bytes, int | None]] = {}
        self.committed = (0, 0)
        self.leader_last: dict[tuple[int, int], int] = {}
        self.proposals = 0

    # -- plumbing ----------------------------------------------------------------------------

    def fail(self, why: str) -> None:
        ticks = self.variant.chaos_ticks
        env = "" if ticks == CHAOS_TICKS else f"RAFT_SIM_TICKS={ticks} "
        cmd = f"RAFT_SIM_SEED={self.seed} {env}.venv/bin/python -m tests.raft.sim"
        tail = "\n".join(self.trace)
        raise SimFailure(f"seed {self.seed} tick {self.now}: {why}\n"
                         f"variant: {self.variant}\nreplay: {cmd}\nlast events:\n{tail}")

    def note(self, what: str) -> None:
        self.trace.append(f"[{self.now}] {what}")

    def send(self, msgs: list[Message]) -> None:
        rng = self.rng
        for m in msgs:
            if (m.frm, m.to) in self.blocked or m.to not in self.nodes:
                self._lost(m)
                continue
            if self.faults and self.drop and rng.random() < self.drop:
                self._lost(m)
                continue
            copies = 2 if self.faults and self.dup and rng.random() < self.dup else 1
            for _ in range(copies):
                delay = rng.randint(0, self.max_delay) if self.max_delay else 0
                self.seq += 1
                self.net.append((self.now + delay, self.seq, m))

    def _lost(self, m: Message) -> None:
        if m.type == MessageType.SNAP:
            n = self.nodes.get(m.frm)
            if n is not None and n.raw is not None:
                n.raw.report_snapshot(m.to, False)

    # -- driving the nodes -------------------------------------------------------------------

    def process_ready(self, n: SimNode) -> None:
        raw = n.raw
        assert raw is not None
        for _ in range(8):
            if not raw.has_ready():
                return
            if not n.sim.variant.async_writes and n.stalled_until > self.now:
                return  # default mode: the loop is stuck behind the slow fsync
            rd = raw.ready()
            self.check_ready(n, rd)
            if self.variant.async_writes:
                self.send(rd.messages)
                if rd.must_persist:
                    n.inflight.append(rd)
                self.apply(n, rd)
                raw.advance(rd)
            else:
                n.storage.persist(rd)
                self.send(rd.messages)
                self.send(rd.persist_messages)
                self.apply(n, rd)
                raw.advance(rd)
            self.maybe_snapshot(n)

    def maybe_snapshot(self, n: SimNode) -> None:
        """Like etcd's --snapshot-count: snapshot the applied state, compact the log."""
        raw = n.raw
        assert raw is not None
        sm = n.sm
        every = self.variant.snapshot_every
        if not every or sm.applied - self._snap_index(n) < every or n.inflight:
            return  # (a real driver orders snapshot files behind in-flight WAL writes too)
        term = raw.term_at(sm.applied)
        assert term is not None
        snap = Snapshot(SnapshotMeta(sm.applied, term, sm.conf),
                        f"{sm.applied}:{sm.digest}".encode())
        keep = self.rng.randint(0, 3)
        raw.compact(max(sm.applied - keep, 0), snap)
        n.storage.save_snapshot(snap)

    def flush_disk(self, n: SimNode) -> None:
        """Async mode: the persistence worker completes some Readys, in order."""
        if not n.inflight or n.stalled_until > self.now or n.raw is None:
            return
        k = len(n.inflight) if self.rng.random() < 0.7 else 1
        for _ in range(k):
            rd = n.inflight.popleft()
            n.storage.persist(rd)
            n.raw.on_persisted(rd.persist_index, rd.persist_term)
            self.send(rd.persist_messages)

    def apply(self, n: SimNode, rd: Ready) -> None:
        raw = n.raw
        assert raw is not None
        sm = n.sm
        if rd.snapshot is not None:
            snap = rd.snapshot
            if snap.meta.index > sm.applied:
                d = _snap_digest(snap)
                if self.digests.get(snap.meta.index, d) != d:
                    self.fail(f"node {n.id} restored a snapshot at {snap.meta.index} that "
                              f"differs from the applied history")
                sm.applied, sm.digest, sm.conf = snap.meta.index, d, snap.meta.conf_state
        for e in rd.committed_entries:
            if e.index != sm.applied + 1:
                self.fail(f"node {n.id} applies {e.index} after {sm.applied}")
            prev = self.history.get(e.index)
            if prev is None:
                self.history[e.index] = (e.term, e.type, e.data)
            elif prev != (e.term, e.type, e.data):
                self.fail(f"State Machine Safety: node {n.id} applies {e} at {e.index}, "
                          f"others applied {prev}")
            sm.digest = zlib.crc32(e.data, zlib.crc32(e.term.to_bytes(8, "little"), sm.digest))
            sm.applied = e.index
            d = self.digests.setdefault(e.index, sm.digest)
            if d != sm.digest:
                self.fail(f"node {n.id}: applied history diverges at {e.index}")
            if e.type == EntryType.CONF_CHANGE:
                cc = ConfChange.decode(e.data)
                sm.conf = raw.apply_conf_change(cc)
                self.note(f"{n.id} applied {cc.type.name} {cc.node_id} -> {sm.conf}")
    @staticmethod
    def _snap_index(n: SimNode) -> int:
        return n.storage.snapshot.meta.index if n.storage.snapshot else 0

    def deliver(self) -> bool:
        due = [x for x in self.net if x[0] <= self.now]
        if not due:
            return False
        self.net = [x for x in self.net if x[0] > self.now]
        due.sort(key=lambda x: (x[0], x[1]))
        for _when, seq, m in due:
            n = self.nodes.get(m.to)
            if n is None or n.raw is None or (m.frm, m.to) in self.blocked:
                self._lost(m)
                continue
            if not self.variant.async_writes and n.stalled_until > self.now:
                self.net.append((n.stalled_until, seq, m))  # waits in the socket buffer
                continue
            try:
                n.raw.step(m)
            except RaftError as exc:
                self.fail(f"node {n.id} raised {exc!r} stepping {m}")
            if m.type == MessageType.SNAP:
                src = self.nodes.get(m.frm)
                if src is not None and src.raw is not None:
                    src.raw.report_snapshot(m.to, True)
        return True

    def tick(self) -> None:
        self.now += 1
        if self.faults:
            self.inject_faults()
        self.client_ops()
        for n in self.nodes.values():
            if n.raw is not None and (self.variant.async_writes or n.stalled_until <= self.now):
                n.raw.tick()
        for _ in range(4):
            for n in self.nodes.values():
                if n.raw is not None:
                    self.process_ready(n)
                    self.flush_disk(n)
            if not self.deliver():
                break
        for n in self.nodes.values():
            if n.raw is not None:
                self.process_ready(n)
        self.check_state()

    # -- faults and workload -----------------------------------------------------------------

    def inject_faults(self) -> None:
        rng = self.rng
        ids = sorted(self.nodes)
        lead = self.leader()
        if self.flap:
            if self.heal_at and self.now >= self.heal_at:
                self.blocked.clear()
                self.heal_at = 0
                self.note("flap heal")
            elif not self.heal_at and lead is not None and rng.random() < 0.15:
                for b in ids:
                    if b != lead.id:
                        self.blocked.add((lead.id, b))
                        self.blocked.add((b, lead.id))
                self.heal_at = self.now + rng.randint(1, 3 * ELECTION_TICK)
                self.note(f"flap isolate leader {lead.id}")
        r = rng.random() / self.fault_rate
        if r < 0.02 or (r < 0.04 and lead is not None):
            nid = lead.id if lead is not None and r >= 0.02 else rng.choice(ids)
            n = self.nodes[nid]
            if n.raw is not None:
                n.crash()
                n.down_until = self.now + rng.randint(1, 20)
                self.note(f"crash {nid}")
        elif r < 0.055:
            a, b = rng.sample(ids, 2)
            self.blocked.add((a, b))
            if rng.random() < 0.6:
                self.blocked.add((b, a))
            self.note(f"cut {a}->{b}")
        elif r < 0.08:
            # isolate a minority (often the leader) from everybody else
            if lead is not None and rng.random() < 0.5:
                side = {lead.id}
            else:
                k = rng.randint(1, max(1, (len(ids) - 1) // 2))
                side = set(rng.sample(ids, k))
            for a in side:
                for b in ids:
                    if b not in side:
                        self.blocked.add((a, b))
                        self.blocked.add((b, a))
            self.note(f"partition {sorted(side)}")
        elif r < 0.11:
            if self.blocked:
                self.blocked.clear()
                self.note("heal partitions")
        elif r < 0.13:
            nid = lead.id if lead is not None and rng.random() < 0.5 else rng.choice(ids)
            self.nodes[nid].stalled_until = self.now + rng.randint(1, 25)
            self.note(f"disk stall {nid}")
        for n in self.nodes.values():
            if n.raw is None and n.down_until <= self.now:
                n.start()
                self.note(f"restart {n.id}")

    def leader(self) -> SimNode | None:
        best: SimNode | None = None
        for n in self.nodes.values():
            if n.raw is not None and n.raw.raft.role == Role.LEADER and (
                    best is None or n.raw.raft.term > best.raw.raft.term):  # type: ignore[union-attr]
                best = n
        return best

    def propose(self, n: SimNode) -> int | None:
        assert n.raw is not None
        self.proposals += 1
        try:
            return n.raw.propose(f"{self.seed}/{self.proposals}".encode())
        except ProposalDroppedError:
            return None

    def client_ops(self) -> None:
        rng = self.rng
        v = self.variant
        lead = self.leader()
        if rng.random() < 0.5:
            up = [n for n in self.nodes.values() if n.raw is not None]
            leaders = [n for n in up if n.raw is not None and n.raw.raft.role == Role.LEADER]
            target = rng.choice(leaders) if leaders and rng.random() < 0.7 else None
            if target is None and up:
                target = rng.choice(up)
            if target is not None:
                self.propose(target)
        if not self.faults:
            return
        if lead is None or lead.raw is None:
            return
        if v.transfers and rng.random() < 0.01:
            voters = sorted(lead.raw.raft.voters)
            to = rng.choice(voters)
            self.note(f"transfer {lead.id} -> {to}")
            lead.raw.transfer_leadership(to)
        if v.membership and rng.random() < 0.03:
            self.membership_op(lead)

    def membership_op(self, lead: SimNode) -> None:
        rng = self.rng
        raw = lead.raw
        assert raw is not None
        voters, learners = raw.raft.voters, raw.raft.learners
        choices: list[ConfChange] = []
        for nid in learners:
            choices.append(ConfChange(ConfChangeType.PROMOTE_LEARNER, nid))
            choices.append(ConfChange(ConfChangeType.REMOVE_NODE, nid))
        if len(voters) > 3:
            for nid in voters:
                choices.append(ConfChange(ConfChangeType.REMOVE_NODE, nid))
        if self.next_id <= 9 and len(voters) + len(learners) < 6:
            choices.append(ConfChange(ConfChangeType.ADD_LEARNER, self.next_id))
        if not choices:
            return
        cc = rng.choice(choices)
        if cc.type == ConfChangeType.PROMOTE_LEARNER and len(voters) >= 5:
            return
        try:
            idx = raw.propose_conf_change(cc)
        except (ProposalDroppedError, InvalidConfChangeError):
            return
        self.note(f"propose {cc.type.name} {cc.node_id} at {idx} via {lead.id}")
        if cc.type == ConfChangeType.ADD_LEARNER:
            self.nodes[cc.node_id] = SimNode(cc.node_id, self, None)
            self.next_id += 1

    # -- checkers ----------------------------------------------------------------------------

    def check_ready(self, n: SimNode, rd: Ready) -> None:
        raw = n.raw
        assert raw is not None
        # Log Matching, incrementally: every entry that enters any log goes through a Ready.
        for e in rd.entries:
            prev_term = raw.term_at(e.index - 1)
            key = (e.index, e.term)
            val = (int(e.type), e.data, prev_term)
            seen = self.log_entries.get(key)
            if seen is None:
                self.log_entries[key] = val
            elif seen[:2] != val[:2] or (None not in (seen[2], prev_term) and seen[2] != val[2]):
                self.fail(f"Log Matching: node {n.id} holds {e} (prev term {prev_term}) but "
                          f"another log has {seen} at the same index and term")
        for m in rd.messages + rd.persist_messages:
            if m.frm != n.id:
                if m.type in (MessageType.READ_INDEX, MessageType.TRANSFER_LEADER):
                    continue  # forwarded on behalf of another member
                self.fail(f"node {n.id} sends a message from {m.frm}: {m}")

    def check_state(self) -> None:
        commit_idx, commit_term = self.committed
        for n in self.nodes.values():
            raw = n.raw
            if raw is None:
                continue
            r = raw.raft
            if r.term < n.last_term:
                self.fail(f"node {n.id} term went back {n.last_term} -> {r.term}")
            if r.log.commit < n.last_commit:
                self.fail(f"node {n.id} commit went back {n.last_commit} -> {r.log.commit}")
            n.last_term, n.last_commit = r.term, r.log.commit
            if r.log.commit > commit_idx:
                t = r.log.term(r.log.commit)
                assert t is not None
                commit_idx, commit_term = r.log.commit, t
            if r.role == Role.LEADER:
                other = self.leaders.setdefault(r.term, n.id)
                if other != n.id:
                    self.fail(f"Election Safety: {other} and {n.id} both lead term {r.term}")
                key = (n.id, r.term)
                last = r.log.last_index()
                if last < self.leader_last.get(key, 0):
                    self.fail(f"Leader Append-Only: leader {n.id} log shrank")
                self.leader_last[key] = last
        self.committed = (commit_idx, commit_term)
        if not self.variant.membership and commit_idx:
            self.check_commit_is_durable(commit_idx, commit_term)
        # Leader Completeness: leaders of later terms hold the newest committed entry.
        for n in self.nodes.values():
            raw = n.raw
            if raw is None or raw.raft.role != Role.LEADER or raw.raft.term <= commit_term:
                continue
            log = raw.raft.log
            if commit_idx > log.base_index and log.term(commit_idx) != commit_term:
                self.fail(f"Leader Completeness: leader {n.id} (term {raw.raft.term}) lacks "
                          f"committed entry {commit_idx}/{commit_term}")

    def check_commit_is_durable(self, k: int, t: int) -> None:
        """A committed entry can never be lost: no voter lacking it could win an election.

        A voter's vote is judged against its *durable* log (a crash may roll it back to that),
        a candidate's chance against its in-memory log. Catches the Figure 8 bug at the moment
        an old-term entry is counted committed, before any leader overwrites it. (Fixed
        membership only: with changes the electorate depends on who applied what.)
        """
        voters = range(1, self.variant.voters + 1)
        durable = {v: self._durable_last(self.nodes[v]) for v in voters}
        for v in voters:
            n = self.nodes[v]
            if n.raw is not None:
                log = n.raw.raft.log
                if k <= log.base_index or log.term(k) == t:
                    continue
                mine = (log.last_term(), log.last_index())
            else:
                st = n.storage
                if self._durable_has(st, k, t):
                    continue
                mine = durable[v]
            electors = [q for q in voters if mine >= durable[q]]
            if len(electors) > len(voters) // 2:
                self.fail(f"committed entry {k}/{t} could be lost: voter {v} (last {mine}) "
                          f"lacks it and can win with votes from {electors}")

    @staticmethod
    def _durable_last(n: SimNode) -> tuple[int, int]:
        st = n.storage
        if st.entries:
            return (st.entries[-1].term, st.entries[-1].index)
        if st.snapshot is not None:
            return (st.snapshot.meta.term, st.snapshot.meta.index)
        return (0, 0)

    @staticmethod
    def _durable_has(st: Storage, k: int, t: int) -> bool:
        base = st.snapshot.meta.index if st.snapshot else 0
        if k <= base:
            return True
        off = k - base - 1
        return off < len(st.entries) and st.entries[off].term == t

    # -- the run -----------------------------------------------------------------------------

    def heal(self) -> None:
        self.faults = False
        self.blocked.clear()
        self.drop = self.dup = 0.0
        self.max_delay = min(self.max_delay, 1)
        for n in self.nodes.values():
            n.stalled_until = 0
            if n.raw is None:
                n.start()
        self.note("heal all")

    def check_liveness(self, budget: int) -> None:
        """After healing: a leader emerges and a fresh proposal commits on all its voters."""
        deadline = self.now + budget
        marker: tuple[SimNode, int, int] | None = None
        while self.now < deadline:
            self.tick()
            lead = self.leader()
            if lead is None or lead.raw is None:
                continue
            if marker is None or marker[0] is not lead or lead.raw.raft.term != marker[2]:
                idx = self.propose(lead)
                if idx is None:
                    continue
                marker = (lead, idx, lead.raw.raft.term)
            _, idx, _ = marker
            voters = lead.raw.raft.voters
            if all(self.nodes[v].raw is not None and self.nodes[v].sm.applied >= idx
                   for v in voters if v in self.nodes):
                return
        self.fail(f"liveness: no proposal committed within {budget} ticks after healing; "
                  f"status: {[(n.id, n.raw.status() if n.raw else None) for n in self.nodes.values()]}")

    def run(self, liveness_budget: int = 40 * ELECTION_TICK) -> None:
        for _ in range(self.variant.chaos_ticks):
            self.tick()
        self.heal()
        self.check_liveness(liveness_budget)


def run_seed(seed: int, chaos_ticks: int = CHAOS_TICKS) -> Simulation:
    sim = Simulation(seed, chaos_ticks)
    try:
        sim.run()
    except SimFailure:
        raise
    except Exception as exc:  # a crash inside the core is a failure of this seed too
        try:
            sim.fail(f"unexpected {exc!r}")
        except SimFailure as failure:
            raise failure from exc
    return sim


def main() -> int:
    import os

    seed = int(os.environ.get("RAFT_SIM_SEED", sys.argv[1] if len(sys.argv) > 1 else "0"))
    ticks = int(os.environ.get("RAFT_SIM_TICKS", str(CHAOS_TICKS)))
    sim = run_seed(seed, ticks)
    print(f"seed {seed} ok: {sim.now} ticks, {len(sim.history)} entries applied, "
          f"{len(sim.leaders)} terms with leaders")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
