"""A small, fully controlled cluster of RawNodes for scenario tests (no randomness in delivery).

Messages queue in a list and are delivered in order by ``deliver()``/``stabilize()``; tests
drop them with ``isolate``/``cut`` or by filtering. Default-mode nodes persist each Ready before
sending; async-mode nodes keep Readys in ``disk[id]`` until ``persist(id)``.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Callable, Iterable

from raftnode.raft.config import Config
from raftnode.raft.rawnode import RawNode
from raftnode.raft.types import (
    ConfChange,
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
)


class Disk:
    def __init__(self) -> None:
        self.hard_state = HardState()
        self.snapshot: Snapshot | None = None
        self.entries: list[Entry] = []

    def write(self, rd: Ready) -> None:
        if rd.snapshot is not None:
            self.snapshot = rd.snapshot
            self.entries = []
        if rd.entries:
            first = rd.entries[0].index
            base = self.snapshot.meta.index if self.snapshot else 0
            del self.entries[first - base - 1 :]
            self.entries.extend(rd.entries)
        if rd.hard_state is not None:
            self.hard_state = rd.hard_state


class Cluster:
    def __init__(self, n: int = 3, learners: Iterable[int] = (), *, seed: int = 1,
                 async_ids: Iterable[int] = (), boot: bool = True, **cfg: object) -> None:
        self.voters = tuple(range(1, n + 1))
        self.learner_ids = tuple(learners)
        self.cfg = cfg
        self.seed = seed
        self.async_ids = set(async_ids)
        self.nodes: dict[int, RawNode] = {}
        self.disks: dict[int, Disk] = {}
        self.disk_queue: dict[int, deque[Ready]] = {}
        self.applied: dict[int, list[Entry]] = {}
        self.read_states: dict[int, list[ReadState]] = {}
        self.snapshots_applied: dict[int, list[Snapshot]] = {}
        self.queue: list[Message] = []
        self.blocked: set[tuple[int, int]] = set()
        self.sent: list[Message] = []
        conf = ConfState(self.voters, self.learner_ids)
        for nid in self.voters + self.learner_ids:
            self.add_node(nid, conf if boot else None)
        if boot:
            self.stabilize()  # persist and apply the bootstrap conf entries

    def config(self, nid: int) -> Config:
        kw: dict[str, object] = {"election_tick": 10, "heartbeat_tick": 1}
        kw.update(self.cfg)
        return Config(nid, async_storage_writes=nid in self.async_ids, **kw)  # type: ignore[arg-type]

    def add_node(self, nid: int, conf: ConfState | None, **restart: object) -> RawNode:
        node = RawNode(self.config(nid), random.Random(self.seed * 100 + nid),
                       conf_state=conf, **restart)  # type: ignore[arg-type]
        self.nodes[nid] = node
        self.disks.setdefault(nid, Disk())
        self.disk_queue[nid] = deque()
        self.applied.setdefault(nid, [])
        self.read_states.setdefault(nid, [])
        self.snapshots_applied.setdefault(nid, [])
        return node

    def restart(self, nid: int) -> RawNode:
        """Crash and restart ``nid`` from what its disk holds (unpersisted state is lost)."""
        d = self.disks[nid]
        self.queue = [m for m in self.queue if m.to != nid]
        self.applied[nid] = []
        conf = d.snapshot.meta.conf_state if d.snapshot else ConfState(self.voters,
                                                                         self.learner_ids)
        return self.add_node(nid, conf, hard_state=d.hard_state, snapshot=d.snapshot,
                             entries=list(d.entries))

    # -- driving ---------------------------------------------------------------------------

    def handle_ready(self, nid: int) -> bool:
        node = self.nodes[nid]
        if not node.has_ready():
            return False
        rd = node.ready()
        if nid in self.async_ids:
            self._send(rd.messages)
            if rd.must_persist:
                self.disk_queue[nid].append(rd)
        else:
            self.disks[nid].write(rd)
            self._send(rd.messages)
            self._send(rd.persist_messages)
        if rd.snapshot is not None:
            self.snapshots_applied[nid].append(rd.snapshot)
        for e in rd.committed_entries:
            self.applied[nid].append(e)
            if e.type == EntryType.CONF_CHANGE:
                node.apply_conf_change(ConfChange.decode(e.data))
        self.read_states[nid].extend(rd.read_states)
        node.advance(rd)
        return True

    def persist(self, nid: int, count: int | None = None) -> None:
        """Async mode: the disk finishes ``count`` (default all) queued Readys, in order."""
        q = self.disk_queue[nid]
        for _ in range(len(q) if count is None else count):
            rd = q.popleft()
            self.disks[nid].write(rd)
            self.nodes[nid].on_persisted(rd.persist_index, rd.persist_term)
            self._send(rd.persist_messages)

    def _send(self, msgs: list[Message]) -> None:
        self.sent.extend(msgs)
        self.queue.extend(msgs)

    def deliver(self, drop: Callable[[Message], bool] | None = None) -> int:
        msgs, self.queue = self.queue, []
        n = 0
        for m in msgs:
            if (m.frm, m.to) in self.blocked or m.to not in self.nodes:
                if m.type == MessageType.SNAP and m.frm in self.nodes:
                    self.nodes[m.frm].report_snapshot(m.to, False)
                continue
            if drop is not None and drop(m):
                continue
            self.nodes[m.to].step(m)
            if m.type == MessageType.SNAP:
                self.nodes[m.frm].report_snapshot(m.to, True)
            n += 1
        return n

    def stabilize(self, rounds: int = 200, persist_async: bool = True,
                  drop: Callable[[Message], bool] | None = None) -> None:
        for _ in range(rounds):
            busy = False
            for nid in list(self.nodes):
                while self.handle_ready(nid):
                    busy = True
            if persist_async:
                for nid in self.async_ids:
                    if self.disk_queue.get(nid):
                        self.persist(nid)
                        busy = True
            if self.queue:
                self.deliver(drop)
                busy = True
            if not busy:
                return
        raise AssertionError("cluster did not stabilize")

    def tick(self, nid: int, n: int = 1) -> None:
        for _ in range(n):
            self.nodes[nid].tick()

    def tick_all(self, n: int = 1, stabilize: bool = True) -> None:
        for _ in range(n):
            for node in self.nodes.values():
                node.tick()
            if stabilize:
                self.stabilize()

    def elect(self, nid: int) -> RawNode:
        self.nodes[nid].campaign()
        self.stabilize()
        assert self.role(nid) == Role.LEADER, f"{nid} did not win: {self.nodes[nid].status()}"
        return self.nodes[nid]

    # -- faults ------------------------------------------------------------------------------

    def isolate(self, nid: int) -> None:
        for other in self.nodes:
            if other != nid:
                self.blocked.add((nid, other))
                self.blocked.add((other, nid))

    def cut(self, a: int, b: int) -> None:
        self.blocked.add((a, b))
        self.blocked.add((b, a))

    def heal(self) -> None:
        self.blocked.clear()

    # -- queries -----------------------------------------------------------------------------

    def role(self, nid: int) -> Role:
        return self.nodes[nid].raft.role

    def term(self, nid: int) -> int:
        return self.nodes[nid].raft.term

    def leaders(self) -> list[int]:
        return [nid for nid, n in self.nodes.items() if n.raft.role == Role.LEADER]

    def data_applied(self, nid: int) -> list[bytes]:
        return [e.data for e in self.applied[nid] if e.type == EntryType.NORMAL and e.data]

    def log_terms(self, nid: int) -> list[tuple[int, int]]:
        return [(e.index, e.term) for e in self.nodes[nid].raft.log.entries]
