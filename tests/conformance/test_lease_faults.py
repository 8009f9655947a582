"""Leases under faults, against both targets.

- A lease kept alive by `cluster.Client.keep_alive` survives a SIGKILL of the leader: the
  refreshes move to another member, the new leader does not expire it, its keys stay.
- Expiry deletes the attached keys on every member at one and the same revision, also on a
  member that was down when the lease expired and caught up from the log afterwards.
- A revoke racing the expiry is decided once: exactly one DELETE event per key, and every
  losing revoke fails with etcd's `requested lease not found`, nothing else.
- A keepalive that comes after the TTL ran out does not revive the lease.
- (raftnode only) A member restored from a snapshot has the leases; as leader it expires them.

Each member's own record is read: serializable ranges, and watches replaying its history.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cluster import Client
from tests.conformance.streams import RawWatcher, prefix_end
from tests.conformance.targets import Target, b64, compacted_to, raftnode_target

pytestmark = pytest.mark.timeout(180)


def fresh_prefix(tag: str) -> bytes:
    return f"/lf/{tag}/{uuid.uuid4().hex[:8]}/".encode()


async def history(t: Target, name: str, prefix: bytes, start: int, count: int
                  ) -> list[tuple[str, bytes, int]]:
    """(type, key, revision) of the first ``count`` events under ``prefix`` from ``start``,
    replayed from member ``name``'s own history by a watch opened on it alone; a short
    wait after them shows there is no further event."""
    create = {"key": b64(prefix), "range_end": b64(prefix_end(prefix))}
    w = RawWatcher([t.endpoint(name)], create, start).start()
    try:
        await w.wait_count(count)
        await asyncio.sleep(0.3)
    finally:
        await w.stop()
    assert w.reconnects == 0, w.segments
    return [(kind, key, rev) for rev, kind, key, _, _ in w.seen()]


async def wait_gone(t: Target, prefix: bytes, timeout: float = 20.0) -> None:
    """Until no key is left under ``prefix`` (linearizable reads through live members)."""
    deadline = asyncio.get_running_loop().time() + timeout
    async with Client([t.endpoint(n) for n in t.live()], timeout=3.0) as c:
        while (r := await c.get(prefix, prefix=True)).kvs:
            assert asyncio.get_running_loop().time() < deadline, r.kvs
            await asyncio.sleep(0.1)


async def test_lease_survives_leader_kill(healed: Target) -> None:
    t = healed
    prefix = fresh_prefix("survive")
    ttl = 3
    async with Client(t.endpoints, timeout=3.0) as c:
        g = await c.lease_grant(ttl)
        assert g.ttl == ttl
        for k in (b"a", b"b"):
            await c.put(prefix + k, b"x", lease=g.id)
        base = (await c.get(prefix + b"a")).header.revision
        async with c.keep_alive(g.id, ttl, interval=0.5) as ka:
            leader = await asyncio.to_thread(t.leader)
            await asyncio.to_thread(t.kill, leader)
            before = ka.refreshes
            await asyncio.sleep(2.5 * ttl)  # well past the TTL: only refreshes keep it
            assert not ka.lost.is_set(), ka.error
            assert ka.refreshes > before + 2
            for name in t.live():
                kvs = await asyncio.to_thread(t.state, name, prefix)
                assert [int(kv["lease"]) for kv in kvs] == [g.id, g.id], (name, kvs)
            ttl_now = await c.lease_time_to_live(g.id, keys=True)
            assert 0 < ttl_now.ttl <= ttl  # etcd lists a lease's keys in no fixed order
            assert sorted(ttl_now.keys) == [prefix + b"a", prefix + b"b"]
            await asyncio.to_thread(t.restart, leader)
            assert [kv["key"] for kv in await asyncio.to_thread(t.state, leader, prefix)] == \
                [b64(prefix + b"a"), b64(prefix + b"b")]
        gone = (await c.lease_revoke(g.id)).revision
    # nothing was deleted before the revoke, on any member; the revoke took both keys
    await asyncio.to_thread(t.wait_applied, gone)
    for name in t.names:
        events = await history(t, name, prefix, base + 1, 2)
        assert events == [("DELETE", prefix + b"a", gone), ("DELETE", prefix + b"b", gone)], name


async def test_expiry_deletes_at_one_revision_on_every_member(healed: Target) -> None:
    t = healed
    prefix = fresh_prefix("expiry")
    keys = [prefix + b"k%d" % i for i in range(5)]
    down = await asyncio.to_thread(t.follower)
    async with Client(t.endpoints, timeout=3.0) as c:
        g = await c.lease_grant(2)
        for k in keys:
            await c.put(k, b"v", lease=g.id)
        await c.put(prefix + b"other", b"no lease")
        base = (await c.get(keys[0])).header.revision
    await asyncio.to_thread(t.wait_applied, base)
    await asyncio.to_thread(t.kill, down)  # misses the expiry, catches up from the log
    await wait_gone(t, keys[0][:-1])
    async with Client([t.endpoint(n) for n in t.live()], timeout=3.0) as c:
        assert (await c.get(prefix + b"other")).kvs
    await asyncio.to_thread(t.restart, down)
    seen = {name: await history(t, name, prefix, base + 1, len(keys)) for name in t.names}
    gone = seen[down][0][2]
    for name in t.names:  # every member: the same deletes, all at one revision
        assert seen[name] == [("DELETE", k, gone) for k in keys], (name, seen)
        before = await asyncio.to_thread(t.state, name, prefix, gone - 1)
        after = await asyncio.to_thread(t.state, name, prefix, gone)
        assert len(before) == 6 and [kv["key"] for kv in after] == [b64(prefix + b"other")]
    hashes = {n: await asyncio.to_thread(t.hashkv, n, gone) for n in t.names}
    assert len(set(hashes.values())) == 1, hashes


async def revoke(session: aiohttp.ClientSession, url: str, lease_id: int, delay: float
                 ) -> tuple[int, Any]:
    await asyncio.sleep(delay)
    async with session.post(url + "/v3/lease/revoke", json={"ID": str(lease_id)}) as r:
        return r.status, await r.json(content_type=None)


async def test_revoke_racing_expiry_is_decided_once(healed: Target) -> None:
    t = healed
    prefix = fresh_prefix("race")
    ttl = max(2, t.min_ttl)
    # revokes from all three members at once, at moments around the expiry: the first ones
    # before it is due, the last ones after the lessor's check should have fired
    offsets = [-0.3, 0.0, 0.2, 0.4, 0.6, 0.9]
    async with Client(t.endpoints, timeout=3.0) as c:
        base = (await c.get(prefix)).header.revision
        leases = [(await c.lease_grant(ttl)).id for _ in offsets]
        granted = asyncio.get_running_loop().time()
        for i, lid in enumerate(leases):
            for k in (b"a", b"b"):
                await c.put(prefix + b"%d/%s" % (i, k), b"v", lease=lid)
    loop = asyncio.get_running_loop()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as s:
        per_lease = await asyncio.gather(*(
            asyncio.gather(*(revoke(s, t.endpoint(n), lid,
                                    max(0.0, granted + ttl + off - loop.time()))
                             for n in t.names))
            for lid, off in zip(leases, offsets, strict=True)))
    await wait_gone(t, prefix)
    wins = []
    for i, outcomes in enumerate(per_lease):
        for status, body in outcomes:
            assert status == 200 or (status, body.get("code"), body.get("message")) == \
                (404, 5, "etcdserver: requested lease not found"), (i, status, body)
        won = [body for status, body in outcomes if status == 200]
        assert len(won) <= 1, (i, outcomes)  # one revoke wins, or the expiry does
        wins.append(len(won))
    n_keys = 2 * len(leases)
    for name in t.names:
        events = await history(t, name, prefix, base + 1, 2 * n_keys)
        deletes = [(key, rev) for kind, key, rev in events if kind == "DELETE"]
        assert sorted(k for k, _ in deletes) == \
            sorted(prefix + b"%d/%s" % (i, k) for i in range(len(leases)) for k in (b"a", b"b"))
        for i, w in enumerate(wins):  # the two keys of a lease go at one revision
            revs = {rev for key, rev in deletes if key.startswith(prefix + b"%d/" % i)}
            assert len(revs) == 1, (name, i, deletes)
            if w:  # the winning revoke's answer names the revision that deleted the keys
                won_rev = int(next(b for st, b in per_lease[i] if st == 200)
                              ["header"]["revision"])
                assert revs == {won_rev}, (name, i, revs, won_rev)


async def keepalive(session: aiohttp.ClientSession, url: str, lease_id: int, at: float
                    ) -> int:
    """One keepalive sent at loop time ``at``; the TTL answered (0: lease not found)."""
    await asyncio.sleep(max(0.0, at - asyncio.get_running_loop().time()))
    async with session.post(url + "/v3/lease/keepalive", json={"ID": str(lease_id)}) as r:
        body = await r.json(content_type=None)
        assert r.status == 200, body
        return int(body["result"].get("TTL", 0))


async def test_keepalive_after_expiry_does_not_revive(healed: Target) -> None:
    """etcd's lessor does not renew a lease whose TTL ran out: the renewal waits for the
    revoke and answers not found. Reviving it instead would tell the holder it still owns
    keys (a lock) that the pending revoke deletes a moment later."""
    t = healed
    prefix = fresh_prefix("revive")
    ttl = max(2, t.min_ttl)
    offsets = [0.05 * i for i in range(12)]  # after the deadline, by the client's clock
    leader = await asyncio.to_thread(t.leader)
    urls = [t.endpoint(leader), t.endpoint(next(n for n in t.names if n != leader))]
    leases = []
    for i, _ in enumerate(offsets):  # granted through the leader and a follower in turn
        async with Client([urls[i % 2]], timeout=3.0) as c:
            g = await c.lease_grant(ttl)
            deadline = asyncio.get_running_loop().time() + ttl  # >= the leader's deadline
            await c.put(prefix + b"%d" % i, b"v", lease=g.id)
            leases.append((g.id, deadline))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as s:
        ttls = await asyncio.gather(*(
            keepalive(s, urls[(i // 2) % 2], lid, deadline + off)
            for i, ((lid, deadline), off) in enumerate(zip(leases, offsets, strict=True))))
    assert ttls == [0] * len(offsets), ttls  # leader or follower-relayed, all refused
    await wait_gone(t, prefix)


async def test_lease_on_member_restored_from_snapshot(tmp_path: Path) -> None:
    """raftnode only (see test_watch_faults): a member that catches up by a snapshot gets
    the leases with their attached keys; made leader, it expires the lease, and every member
    deletes the keys at one revision."""
    t = await asyncio.to_thread(raftnode_target, tmp_path / "cluster",
                                ["--snapshot-count", "40", "--snapshot-catchup-entries", "5"])
    try:
        prefix = b"/snaplease/"
        victim = await asyncio.to_thread(t.follower)
        # the victim last: a put on a pooled connection to it when it is killed is rightly
        # indeterminate (IndeterminateError), which is not what this test is about
        eps = [e for e in t.endpoints if e != t.endpoint(victim)] + [t.endpoint(victim)]
        async with Client(eps, timeout=3.0) as c:
            g = await c.lease_grant(3)
            for k in (b"a", b"b", b"c"):
                await c.put(prefix + k, b"v", lease=g.id)
            base = (await c.get(prefix + b"a")).header.revision
            async with c.keep_alive(g.id, 3, interval=0.5) as ka:
                await asyncio.to_thread(t.kill, victim)
                index_at_kill = max(int(t.status(n)["raftIndex"]) for n in t.live()) + 20
                for i in range(120):  # past the victim's log: it will need a snapshot
                    await c.put(b"/filler/%d" % (i % 7), b"x")
                logs = {n: tmp_path / "cluster" / f"{n}.log" for n in t.live()}
                assert all(compacted_to(p) > index_at_kill for p in logs.values())
                await asyncio.to_thread(t.restart, victim)
                await asyncio.to_thread(t.wait_applied, base + 120)
                victim_id = int(t.status(victim)["header"]["member_id"])
                await c.move_leader(victim_id)
                assert await asyncio.to_thread(t.leader) == victim
                assert not ka.lost.is_set(), ka.error
            # no more refreshes: the new leader, restored from a snapshot, must expire it
        await wait_gone(t, prefix)
        seen = {n: await history(t, n, prefix, base + 1, 3) for n in t.names}
        gone = seen[victim][0][2]
        for name in t.names:
            assert seen[name] == [("DELETE", prefix + k, gone) for k in (b"a", b"b", b"c")]
        await asyncio.to_thread(t.wait_applied, gone)
        hashes = {n: await asyncio.to_thread(t.hashkv, n, gone) for n in t.names}
        assert len(set(hashes.values())) == 1, hashes
    finally:
        await asyncio.to_thread(t.stop_all)
