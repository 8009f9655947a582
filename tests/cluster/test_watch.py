"""Watch: history replay, filters, compaction, and resume across a killed member."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from cluster.client import Client
from cluster.errors import CompactedError
from cluster.types import Event
from cluster.watch import Watch
from tests.cluster.local_cluster import LocalCluster


async def _collect(w: Watch, n: int, timeout: float = 10) -> list[Event]:
    out: list[Event] = []

    async def run() -> None:
        async for ev in w:
            out.append(ev)
            if len(out) >= n:
                return
    await asyncio.wait_for(run(), timeout)
    return out


async def test_watch_replays_history_and_follows_live(client: Client) -> None:
    p = f"w/{uuid.uuid4().hex[:8]}/"
    r1 = await client.put(p + "a", "1")
    r2 = await client.put(p + "a", "2")
    r3 = await client.delete(p + "a")
    async with client.watch(p, prefix=True, start_revision=r1.header.revision,
                            prev_kv=True) as w:
        task = asyncio.create_task(_collect(w, 4))
        await w.wait_created()
        r4 = await client.put(p + "b", "live")
        evs = await task
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in evs] == [
        ("PUT", (p + "a").encode(), r1.header.revision),
        ("PUT", (p + "a").encode(), r2.header.revision),
        ("DELETE", (p + "a").encode(), r3.header.revision),
        ("PUT", (p + "b").encode(), r4.header.revision),
    ]
    assert evs[1].prev_kv is not None and evs[1].prev_kv.value == b"1"
    assert evs[3].kv.value == b"live" and evs[3].kv.version == 1


async def test_watch_filters_and_from_now(client: Client) -> None:
    p = f"w/{uuid.uuid4().hex[:8]}/"
    await client.put(p + "old", "before the watch")
    async with client.watch(p, prefix=True, filters=["NOPUT"]) as w:
        task = asyncio.create_task(_collect(w, 1))
        await w.wait_created()
        await client.put(p + "new", "filtered out")
        d = await client.delete(p + "old")
        evs = await task
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in evs] == \
        [("DELETE", (p + "old").encode(), d.header.revision)]
    with pytest.raises(ValueError):
        client.watch(p, filters=["NOTHING"])


async def test_watch_from_compacted_revision_raises(client: Client) -> None:
    p = f"w/{uuid.uuid4().hex[:8]}/"
    r1 = await client.put(p + "c", "1")
    r2 = await client.put(p + "c", "2")
    await client.compact(r2.header.revision)
    w = client.watch(p, prefix=True, start_revision=r1.header.revision)
    with pytest.raises(CompactedError) as ei:
        await _collect(w, 1)
    assert ei.value.compact_revision >= r2.header.revision
    await w.close()


@pytest.mark.parametrize("role", ["follower", "leader"])
async def test_watch_resumes_on_another_member_exactly_once(fresh: LocalCluster,
                                                            role: str) -> None:
    c = fresh
    victim = c.follower() if role == "follower" else c.leader()
    others = [m.client_url for m in c.members if m is not victim]
    n_before, n_after = 20, 30
    async with Client([victim.client_url, *others]) as wc, Client(others) as writer:
        w = wc.watch("r/", prefix=True)
        got: list[Event] = []

        async def consume() -> None:
            async for ev in w:
                got.append(ev)
                if len(got) == n_before + n_after:
                    return
        task = asyncio.create_task(consume())
        await w.wait_created()
        assert w.endpoint == victim.client_url
        revs = [(await writer.put(f"r/{i:03d}", str(i))).header.revision
                for i in range(n_before)]
        while len(got) < n_before // 2:  # the victim has delivered some events
            await asyncio.sleep(0.01)
        c.kill(victim)
        if role == "leader":  # writes resume once the survivors elected a new leader
            await asyncio.to_thread(c.leader)
        revs += [(await writer.put(f"r/{i:03d}", str(i))).header.revision
                 for i in range(n_before, n_before + n_after)]
        await asyncio.wait_for(task, 15)
        await w.close()
    assert w.reconnects >= 1 and w.endpoint != victim.client_url
    assert [e.kv.mod_revision for e in got] == revs  # every write once, in order, no gaps
    assert [e.kv.value for e in got] == [str(i).encode() for i in range(n_before + n_after)]


async def test_watch_leaves_a_hung_member(fresh: LocalCluster) -> None:
    """A SIGSTOPped member keeps the stream open and silent; the liveness probe notices."""
    c = fresh
    victim = c.follower()
    others = [m.client_url for m in c.members if m is not victim]
    async with Client([victim.client_url, *others], watch_liveness=0.3) as wc, \
            Client(others) as writer:
        w = wc.watch("h/", prefix=True)
        task = asyncio.create_task(_collect(w, 10))
        await w.wait_created()
        c.pause(victim)
        revs = [(await writer.put(f"h/{i}", str(i))).header.revision for i in range(10)]
        got = await task
        await w.close()
    assert [e.kv.mod_revision for e in got] == revs
    assert w.endpoint != victim.client_url
