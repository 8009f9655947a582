"""Watches under faults, against both targets: the watcher's member is SIGKILLed, then the
leader, while puts, deletes and txns continue.

Three watchers record the run: a raw `/v3/watch` client (streams.RawWatcher: reconnects from
its last seen revision + 1, filters nothing, so a server repeating or skipping an event is
caught), the same raw client tied to the killed member (it waits for the member's restart
and catches up there), and the `cluster.Client` watch (the library users run). All are
checked against the MVCC history with `tests.watch.checker`: ordered, no duplicates, no gaps between start
and final revision, prev_kv right. Then watches opened from revisions throughout the run,
on every member, must replay exactly the history from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest

from cluster import Client
from cluster.errors import ClusterError
from cluster.txn import delete, put
from tests.conformance.streams import RawWatcher, by_revision_then_key, prefix_end, truth
from tests.conformance.targets import Target, b64, compacted_to, post, raftnode_target
from tests.watch.checker import Seen, check

pytestmark = pytest.mark.timeout(180)


async def writer(c: Client, prefix: bytes, seed: int, stop: asyncio.Event,
                 done: list[int]) -> None:
    """Puts, deletes and 3-key txns over 8 keys; failures (indeterminate) are fine."""
    rng = random.Random(seed)
    i = 0
    while not stop.is_set():
        i += 1
        keys = [prefix + b"k%d" % n for n in rng.sample(range(8), 3)]
        roll = rng.random()
        with contextlib.suppress(ClusterError):
            if roll < 0.6:
                await c.put(keys[0], b"v%d-%d" % (seed, i))
            elif roll < 0.75:
                await c.delete(keys[0])
            else:
                await c.txn().then(put(keys[0], b"t%d-%d" % (seed, i)),
                                   put(keys[1], b"u%d-%d" % (seed, i)),
                                   delete(keys[2])).commit()
            done.append(i)
        await asyncio.sleep(0.01)


async def library_watch(c: Client, prefix: bytes, start: int, out: list[Seen]) -> None:
    async with c.watch(prefix, prefix=True, start_revision=start, prev_kv=True) as w:
        async for ev in w:
            out.append((ev.kv.mod_revision, ev.type, ev.kv.key, ev.kv.value,
                        None if ev.prev_kv is None else ev.prev_kv.value))


async def test_watch_survives_member_and_leader_kill(healed: Target) -> None:
    await watch_under_kills(healed, rounds=1)


@pytest.mark.chaos
@pytest.mark.timeout(600)
async def test_watch_survives_repeated_kills(healed: Target) -> None:
    """The long variant: rounds of killing the roaming watcher's member, then the leader."""
    await watch_under_kills(healed, rounds=8)


async def watch_under_kills(t: Target, rounds: int) -> None:
    """Writers run throughout; each round SIGKILLs the member the roaming watcher is on
    (at first a follower, which the sticky watcher is also tied to), restarts it, then
    SIGKILLs the leader and restarts it. Every watcher must see the whole history."""
    prefix = f"/wf/{uuid.uuid4().hex[:8]}/".encode()
    create = {"key": b64(prefix), "range_end": b64(prefix_end(prefix)), "prev_kv": True}
    start = await asyncio.to_thread(t.revision) + 1
    watched = await asyncio.to_thread(t.follower)
    order = [watched] + [n for n in t.names if n != watched]
    raw = RawWatcher([t.endpoint(n) for n in order], create, start).start()
    # and one that waits for its member to come back, then catches up on it
    sticky = RawWatcher([t.endpoint(watched)], create, start).start()
    lib_seen: list[Seen] = []
    lib_client = Client([t.endpoint(n) for n in order], timeout=5.0, watch_liveness=1.0)
    lib = asyncio.create_task(library_watch(lib_client, prefix, start, lib_seen))
    stop = asyncio.Event()
    done: list[int] = []
    async with Client(t.endpoints, timeout=2.0) as wc:
        writers = [asyncio.create_task(writer(wc, prefix, s, stop, done)) for s in (1, 2)]
        try:
            await asyncio.sleep(1.0)
            for r in range(rounds):
                # the member the roaming watcher is on (the sticky one's too, first round)
                victim = watched if r == 0 else name_of(t, raw.segments[-1].endpoint)
                await asyncio.to_thread(t.kill, victim)
                await asyncio.sleep(1.0)
                await asyncio.to_thread(t.restart, victim)
                leader = await asyncio.to_thread(t.leader)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(t.kill, leader)
                at_kill = raw.next_revision
                await asyncio.sleep(1.5)
                await asyncio.to_thread(t.restart, leader)
                await asyncio.sleep(2.0)  # writes stuck on the dead leader time out meanwhile
        finally:
            stop.set()
            await asyncio.gather(*writers)
    final = await asyncio.to_thread(t.revision)
    assert len(done) > 20, f"only {len(done)} writes succeeded"
    assert final > at_kill + 20, f"writes did not go on after the leader kill: {at_kill}..{final}"
    rec = await asyncio.to_thread(truth, t, t.names[0], prefix, start, final)
    want = rec.expected(prefix, prefix_end(prefix), start, final)
    assert want and want[-1][0] == final
    try:
        await raw.wait_for(final)
        await sticky.wait_for(final)
        deadline = asyncio.get_running_loop().time() + 30
        while (not lib_seen or lib_seen[-1][0] < final) and not lib.done():
            assert asyncio.get_running_loop().time() < deadline, lib_seen[-1:]
            await asyncio.sleep(0.05)
    finally:
        await raw.stop()
        await sticky.stop()
        lib.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await lib
        await lib_client.close()
    assert raw.reconnects >= 1 and raw.segments[0].endpoint == t.endpoint(watched)
    check(by_revision_then_key(raw.seen()), by_revision_then_key(want))
    check(by_revision_then_key(lib_seen), by_revision_then_key(want))
    assert sticky.reconnects >= 1
    check(by_revision_then_key(sticky.seen()), by_revision_then_key(want))

    # resumable from any revision of the run, on any member
    await asyncio.to_thread(t.wait_applied, final)
    rng = random.Random(final)
    for rev in sorted(rng.sample(range(start, final + 1), min(6, final - start + 1))):
        name = rng.choice(t.names)
        w = RawWatcher([t.endpoint(name)], create, rev).start()
        try:
            await w.wait_for(final)
        finally:
            await w.stop()
        assert w.reconnects == 0
        check(by_revision_then_key(w.seen()),
              by_revision_then_key(rec.expected(prefix, prefix_end(prefix), rev, final)))
    states = [await asyncio.to_thread(t.state, n, prefix, final) for n in t.names]
    assert states[0] == states[1] == states[2]
    hashes = {n: await asyncio.to_thread(t.hashkv, n, final) for n in t.names}
    assert len(set(hashes.values())) == 1, hashes

    # compacted in the middle: from there on still resumable, before it canceled, everywhere
    mid = (start + final) // 2
    await asyncio.to_thread(post, t.endpoint(t.names[0]), "/v3/kv/compaction",
                            {"revision": mid, "physical": True})
    barrier = await asyncio.to_thread(post, t.endpoint(t.names[1]), "/v3/kv/put",
                                      {"key": b64(b"/wf-barrier"), "value": b64(b"x")})
    await asyncio.to_thread(t.wait_applied, int(barrier["header"]["revision"]))
    for name in t.names:
        canceled = await first_result(t.endpoint(name), {**create, "start_revision": mid - 1})
        assert canceled.get("canceled") is True, canceled
        assert int(canceled["compact_revision"]) == mid, canceled
        # what happened at mid itself is partly compacted away (tombstones at mid, the
        # versions it replaced: DELETEs and prev_kv there), on both targets; after it, all
        w = RawWatcher([t.endpoint(name)], create, mid + 1).start()
        try:
            await w.wait_for(final)
        finally:
            await w.stop()
        check(by_revision_then_key(w.seen()),
              by_revision_then_key(rec.expected(prefix, prefix_end(prefix), mid + 1, final)))


async def first_result(url: str, create: dict[str, object]) -> dict[str, object]:
    """The first response after ``created`` (or the refusal) of a watch on one member."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s, \
            s.post(url + "/v3/watch", json={"create_request": create}) as r:
        while line := await r.content.readline():
            if line.strip():
                res: dict[str, object] = orjson.loads(line)["result"]
                if not (res.get("created") and not res.get("canceled")):
                    return res
    raise AssertionError("watch stream ended without a response")


def name_of(t: Target, endpoint: str) -> str:
    return next(n for n in t.names if t.endpoint(n) == endpoint)


async def test_watch_on_member_restored_from_snapshot(tmp_path: Path) -> None:
    """raftnode only (etcd 3.4 cannot be made to send a snapshot without 5000 writes): a
    member killed while the leader compacts its log past that member's index catches up
    by a snapshot, which replaces its store wholesale; a watcher waiting on that member
    must still get every event from its revision on, exactly once, from history."""
    t = await asyncio.to_thread(raftnode_target, tmp_path / "cluster",
                                ["--snapshot-count", "40", "--snapshot-catchup-entries", "5"])
    try:
        prefix = b"/snapwatch/"
        create = {"key": b64(prefix), "range_end": b64(prefix_end(prefix)), "prev_kv": True}
        start = await asyncio.to_thread(t.revision) + 1
        victim = await asyncio.to_thread(t.follower)
        sticky = RawWatcher([t.endpoint(victim)], create, start).start()
        stop = asyncio.Event()
        done: list[int] = []
        async with Client(t.endpoints, timeout=2.0) as wc:
            w = asyncio.create_task(writer(wc, prefix, 7, stop, done))
            await asyncio.sleep(0.5)
            await asyncio.to_thread(t.kill, victim)
            behind = await asyncio.to_thread(t.revision)
            # the victim's log ends near the leader's commit index at the kill (a few
            # proposals may have been in flight): 20 entries of margin
            index_at_kill = max(int(t.status(n)["raftIndex"]) for n in t.live()) + 20
            while await asyncio.to_thread(t.revision) < behind + 100:
                await asyncio.sleep(0.1)
            stop.set()
            await w
        final = await asyncio.to_thread(t.revision)
        compacted = {n: compacted_to(tmp_path / "cluster" / f"{n}.log") for n in t.live()}
        await asyncio.to_thread(t.restart, victim)
        await asyncio.to_thread(t.wait_applied, final)
        rec = await asyncio.to_thread(truth, t, victim, prefix, start, final)
        want = rec.expected(prefix, prefix_end(prefix), start, final)
        try:
            await sticky.wait_for(final)
        finally:
            await sticky.stop()
        # the survivors dropped log entries the victim never had: it needed a snapshot
        assert all(c > index_at_kill for c in compacted.values()), (index_at_kill, compacted)
        assert sticky.reconnects >= 1
        check(by_revision_then_key(sticky.seen()), by_revision_then_key(want))
        hashes = {n: await asyncio.to_thread(t.hashkv, n, final) for n in t.names}
        assert len(set(hashes.values())) == 1, hashes
    finally:
        await asyncio.to_thread(t.stop_all)


NO_LEADER = {"grpc_code": 14, "http_code": 503, "message": "etcdserver: no leader",
             "http_status": "Service Unavailable"}


async def test_require_leader_watch_ends_when_member_loses_leader(healed: Target) -> None:
    """clientv3's WithRequireLeader (``Grpc-Metadata-Hasleader: true``, which
    `cluster.Client` sends): a member left without a leader ends such a watch with etcd's
    ``no leader`` stream error (so the client moves on instead of waiting silently), and
    refuses new ones with 503 until a leader is back."""
    t = healed
    lonely = await asyncio.to_thread(t.follower)
    url = t.endpoint(lonely) + "/v3/watch"
    body = {"create_request": {"key": b64("/rl/k")}}
    headers = {"Grpc-Metadata-Hasleader": "true"}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as s:
        async with s.post(url, json=body, headers=headers) as r:
            assert r.status == 200
            first = orjson.loads(await r.content.readline())
            assert first["result"]["created"] is True
            for n in t.names:
                if n != lonely:
                    await asyncio.to_thread(t.kill, n)
            rest = [ln for ln in (await r.content.read()).splitlines() if ln.strip()]
        assert [orjson.loads(ln) for ln in rest] == [{"error": NO_LEADER}]
        async with s.post(url, json=body, headers=headers) as r:
            assert (r.status, orjson.loads(await r.read())) == (503, {"error": NO_LEADER})
        # without the header the member still serves the watch from its own state
        async with s.post(url, json=body) as r:
            assert r.status == 200
            assert orjson.loads(await r.content.readline())["result"]["created"] is True
