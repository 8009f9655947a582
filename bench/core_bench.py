"""Ceiling of the pure Raft core: committed entries/s in a 3-member in-memory cluster.

No I/O at all: "persisting" a Ready is a list append, the network is a Python list. Every
round the leader takes ``batch`` proposals (one ``propose()`` call each, as the node does),
then Readys are pumped until the cluster is quiet, so each round pays one full replication
round trip. The figure is the upper bound the real node can reach on this interpreter.

    python -m bench.core_bench          # BENCH_QUICK=1 for a short run (< 30 s)
"""

from __future__ import annotations

import random
import time

from bench.common import md_table, median, quick
from raftnode.raft.config import Config
from raftnode.raft.rawnode import RawNode
from raftnode.raft.types import ConfState, Entry, Message, Role


class _Cluster:
    def __init__(self, n: int, async_writes: bool) -> None:
        conf = ConfState(tuple(range(1, n + 1)))
        self.nodes = {
            i: RawNode(Config(i, async_storage_writes=async_writes, max_inflight_msgs=512),
                       random.Random(i), conf_state=conf)
            for i in conf.voters
        }
        self.async_writes = async_writes
        self.disk: dict[int, list[Entry]] = {i: [] for i in self.nodes}
        self.queue: list[Message] = []
        self.applied = 0
        self.pump()
        self.nodes[1].campaign()
        self.pump()
        assert self.nodes[1].raft.role == Role.LEADER

    def pump(self) -> None:
        nodes, disk = self.nodes, self.disk
        while True:
            busy = False
            for nid, node in nodes.items():
                while node.has_ready():
                    busy = True
                    rd = node.ready()
                    disk[nid].extend(rd.entries)
                    self.queue.extend(rd.messages)
                    if not self.async_writes:
                        self.queue.extend(rd.persist_messages)
                    if nid == 1:
                        self.applied += len(rd.committed_entries)
                    node.advance(rd)
                    if self.async_writes and rd.must_persist:
                        node.on_persisted(rd.persist_index, rd.persist_term)
                        self.queue.extend(rd.persist_messages)
            if self.queue:
                busy = True
                msgs, self.queue = self.queue, []
                for m in msgs:
                    nodes[m.to].step(m)
            if not busy:
                return


def run(batch: int, total: int, async_writes: bool) -> tuple[float, float]:
    """Committed entries per wall second and per CPU second (the latter is robust to a busy
    machine)."""
    c = _Cluster(3, async_writes)
    leader = c.nodes[1]
    payload = b"x" * 64
    start_applied = c.applied
    rounds = max(1, total // batch)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for _ in range(rounds):
        for _ in range(batch):
            leader.propose(payload)
        c.pump()
    dt = time.perf_counter() - t0
    cpu = time.process_time() - c0
    done = c.applied - start_applied
    assert done >= rounds * batch, (done, rounds * batch)
    return done / dt, done / max(cpu, 1e-9)


def main() -> None:
    reps = 3 if quick() else 7
    total = 20_000 if quick() else 100_000
    rows = []
    for mode in (False, True):
        for batch in (1, 10, 100):
            n = total // 10 if batch == 1 else total
            res = [run(batch, n, mode) for _ in range(reps)]
            rates = [w for w, _ in res]
            rows.append(["async" if mode else "default", batch, f"{median(rates):,.0f}",
                         f"{min(rates):,.0f}", f"{max(rates):,.0f}",
                         f"{median(cpu for _, cpu in res):,.0f}"])
    print("## Raft core ceiling (3 members, in memory, no I/O)\n")
    print(md_table(["persistence", "batch", "entries/s (median)", "min", "max",
                    "entries per CPU-s (median)"], rows))


if __name__ == "__main__":
    main()
