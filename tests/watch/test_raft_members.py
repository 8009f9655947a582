"""Hubs on real raft members (in-process driver harness): fed from applied state on every
member, and a member that catches up by snapshot still delivers every revision once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from raftnode.mvcc.messages import DeleteRangeRequest, PutRequest
from raftnode.watch.hub import WatchCreate, WatchHub, WatchStream, prefix_end
from tests.node.test_driver_inproc import leader_of, make_cluster

Ev = tuple[int, str, bytes, bytes, bytes | None]


def drain(s: WatchStream, out: list[Ev]) -> None:
    while (m := s.next_message()) is not None:
        if m.events is not None:
            for e in m.events.events:
                prev = e.prev_kv.value if e.prev_kv is not None else None
                out.append((e.kv.mod_revision, e.type.name, e.kv.key, e.kv.value, prev))


async def test_every_member_delivers_the_same_events_even_after_a_snapshot(
        tmp_path: Path) -> None:
    net, drivers = make_cluster(tmp_path, snapshot_count=20)
    hubs = [WatchHub(d.sm.store) for d in drivers]
    streams = [h.open_stream() for h in hubs]
    for s in streams:
        s.create(WatchCreate(b"k", prefix_end(b"k"), prev_kv=True))
    seen: list[list[Ev]] = [[] for _ in drivers]
    for d in drivers:
        d.start()
    try:
        leader = await leader_of(drivers)
        lagging_i = next(i for i, d in enumerate(drivers) if d is not leader)
        lagging = drivers[lagging_i]
        await leader.propose(PutRequest(b"k0", b"first"))
        await lagging.wait_applied(leader.applied)
        net.cut.add(lagging.member_id)
        for i in range(80):
            await leader.propose(PutRequest(b"k%d" % (i % 9), b"v%d" % i))
            if i % 10 == 9:
                await leader.propose(DeleteRangeRequest(b"k0", b"k4"))
            for s, out in zip(streams, seen):
                drain(s, out)
        assert leader.snapshot_index > 0
        net.cut.clear()
        await lagging.wait_applied(leader.applied)
        for d in drivers:
            await d.wait_applied(leader.applied)
        for s, out in zip(streams, seen):
            drain(s, out)
        assert hubs[lagging_i].resyncs >= 1, "the lagging member did not restore a snapshot"
        want = seen[drivers.index(leader)]
        revs = sorted({e[0] for e in want})
        assert revs == list(range(2, leader.sm.store.revision + 1))  # no gap, no repeat
        for out in seen:
            assert out == want
    finally:
        for d in drivers:
            await d.stop()
        await asyncio.sleep(0)
