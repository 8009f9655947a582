"""Every client method against a real 3-member etcd 3.4 and a real 3-member raftnode."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from pathlib import Path

import pytest

from cluster import metrics
from cluster import txn as T
from cluster.client import Client
from cluster.errors import (
    CompactedError,
    EtcdError,
    FutureRevisionError,
    LeaseNotFound,
    MemberNotFound,
    NotLeader,
    Unavailable,
    Unsupported,
)
from cluster.sync import SyncClient
from cluster.types import DeleteResult, PutResult, RangeResult
from tests.cluster.local_cluster import LocalCluster


def _p() -> str:
    """A fresh key prefix per test: the session cluster is shared."""
    return f"t/{uuid.uuid4().hex[:8]}/"


async def test_put_get_delete_round_trip(client: Client) -> None:
    p = _p()
    r1 = await client.put(p + "a", b"\x00\xffbin")
    r2 = await client.put(p + "a", "two", prev_kv=True)
    assert r2.header.revision == r1.header.revision + 1
    assert r2.prev_kv is not None and r2.prev_kv.value == b"\x00\xffbin"
    await client.put(p + "b", "")
    got = await client.get(p, prefix=True)
    assert [kv.key for kv in got.kvs] == [(p + "a").encode(), (p + "b").encode()]
    a = got.kvs[0]
    assert (a.value, a.version, a.create_revision, a.mod_revision) == \
        (b"two", 2, r1.header.revision, r2.header.revision)
    assert got.kvs[1].value == b"" and got.count == 2
    assert got.header.cluster_id != 0 and got.header.member_id != 0
    old = await client.get(p + "a", revision=r1.header.revision)
    assert old.kvs[0].value == b"\x00\xffbin"
    lim = await client.get(p, prefix=True, limit=1, keys_only=True)
    assert lim.more and lim.count == 2 and lim.kvs[0].value == b""
    cnt = await client.get(p, prefix=True, count_only=True)
    assert cnt.kvs == () and cnt.count == 2
    desc = await client.get(p, prefix=True, sort_order="DESCEND")
    assert [kv.key for kv in desc.kvs] == [(p + "b").encode(), (p + "a").encode()]
    ser = await client.get(p + "a", serializable=True)
    assert ser.kvs[0].value == b"two"
    d = await client.delete(p, prefix=True, prev_kv=True)
    assert d.deleted == 2 and {kv.key for kv in d.prev_kvs} == {(p + "a").encode(),
                                                                (p + "b").encode()}
    assert (await client.delete(p + "a")).deleted == 0
    assert await client.get_one(p + "a") is None


async def test_bad_requests_raise_typed_errors(client: Client) -> None:
    with pytest.raises(FutureRevisionError):
        await client.get("x", revision=10**9)
    with pytest.raises(LeaseNotFound):
        await client.put(_p() + "k", "v", lease=123456789)
    with pytest.raises(EtcdError) as ei:
        await client.put(_p() + "k", "", ignore_value=True)
    assert ei.value.message == "etcdserver: key not found" and ei.value.code == 3


async def test_txn_branches(client: Client) -> None:
    p = _p()
    await client.put(p + "k", "v1")
    ok = await client.txn().when(T.value(p + "k") == "v1", T.version(p + "k") == 1) \
        .then(T.put(p + "k", "v2"), T.get(p + "k"), T.delete(p + "nothing")) \
        .otherwise(T.put(p + "k", "never")).commit()
    assert ok.succeeded
    put, rng, dele = ok.responses
    assert isinstance(put, PutResult) and isinstance(rng, RangeResult)
    assert isinstance(dele, DeleteResult) and dele.deleted == 0
    assert rng.kvs[0].value == b"v2" and rng.header.revision == ok.header.revision
    bad = await client.txn().when(T.mod_revision(p + "k") < 2) \
        .then(T.put(p + "k", "never")).otherwise(T.get(p + "k"), T.nested(
            T.Txn().when(T.create_revision(p + "new") == 0).then(T.put(p + "new", "x")))) \
        .commit()
    assert not bad.succeeded
    assert (await client.get_one(p + "k")).value == b"v2"  # type: ignore[union-attr]
    assert (await client.get_one(p + "new")).value == b"x"  # type: ignore[union-attr]


async def test_compaction_and_compacted_read(client: Client) -> None:
    p = _p()
    r1 = await client.put(p + "c", "1")
    r2 = await client.put(p + "c", "2")
    await client.compact(r2.header.revision)
    with pytest.raises(CompactedError):
        await client.get(p + "c", revision=r1.header.revision)
    with pytest.raises(CompactedError):
        await client.compact(r1.header.revision)
    assert (await client.get_one(p + "c")).value == b"2"  # type: ignore[union-attr]


async def test_leases_and_keepalive(client: Client) -> None:
    p = _p()
    g = await client.lease_grant(1)  # the minimum TTL with a 500 ms election timeout
    assert g.id > 0 and g.ttl == 1
    await client.put(p + "l", "v", lease=g.id)
    ttl = await client.lease_time_to_live(g.id, keys=True)
    assert ttl.granted_ttl == 1 and ttl.keys == ((p + "l").encode(),) and 0 <= ttl.ttl <= 1
    assert g.id in await client.lease_leases()
    async with client.keep_alive(g.id, g.ttl, interval=0.2) as ka:
        await asyncio.sleep(1.8)  # longer than the TTL: only the refreshes keep it
        assert ka.refreshes >= 3 and not ka.lost.is_set()
    assert (await client.get_one(p + "l")) is not None
    await client.lease_revoke(g.id)
    assert await client.get_one(p + "l") is None
    assert (await client.lease_time_to_live(g.id)).ttl == -1
    with pytest.raises(LeaseNotFound):
        await client.lease_revoke(g.id)
    with pytest.raises(LeaseNotFound):
        await client.lease_keepalive_once(g.id)


async def test_keepalive_reports_revoked_lease(client: Client) -> None:
    g = await client.lease_grant(10)
    async with client.keep_alive(g.id, g.ttl, interval=0.1) as ka:
        await client.lease_revoke(g.id)
        await asyncio.wait_for(ka.lost.wait(), 5)
    assert isinstance(ka.error, LeaseNotFound)


async def test_status_leader_hash_health(client: Client, cluster: LocalCluster) -> None:
    sts = await client.statuses()
    assert len(sts) == 3
    ids = {s.header.member_id for s in sts if not isinstance(s, Exception)}
    assert len(ids) == 3
    lead = await client.leader()
    assert lead.is_leader and lead.endpoint == cluster.leader().client_url
    assert all(s.leader == lead.header.member_id for s in sts if not isinstance(s, Exception))
    h = await client.hash(cluster.endpoints[0])
    assert h.hash != 0
    if not cluster.extended:
        with pytest.raises(Unsupported):  # etcd 3.4's gateway maps HashKV onto /hash
            await client.hashkv(cluster.endpoints[0])
    else:
        await _hashkv_agrees_across_members(client, cluster)
    health = await client.health(cluster.endpoints[1])
    assert health.healthy and health.error == ""
    samples = await client.metrics(cluster.endpoints[0])
    assert metrics.quantile(samples, metrics.FSYNC, 0.99) is not None


async def _hashkv_agrees_across_members(client: Client, cluster: LocalCluster) -> None:
    """HashKV at a revision is the same on every member, and stays so after later writes."""
    p = _p()
    rev = (await client.put(p + "h", "1")).header.revision
    await client.get(p + "h")  # linearizable through the leader; the others catch up below

    async def hashes() -> list[int]:
        out = []
        for ep in cluster.endpoints:
            for _ in range(100):
                try:
                    h = await client.hashkv(ep, revision=rev)
                    break
                except FutureRevisionError:  # this member has not applied rev yet
                    await asyncio.sleep(0.05)
            else:
                raise AssertionError(f"{ep} never applied revision {rev}")
            assert h.header.revision >= rev and h.compact_revision < rev
            out.append(h.hash)
        return out

    at_rev = await hashes()
    assert len(set(at_rev)) == 1 and at_rev[0] != 0, at_rev
    await client.put(p + "h", "2")
    assert await hashes() == at_rev  # the hash of revision rev does not move
    now = await client.hashkv(cluster.endpoints[0])
    assert now.header.revision > rev and now.hash != at_rev[0]


async def test_members_list_add_update_remove(cluster: LocalCluster) -> None:
    # etcd refuses reconfiguration ("unhealthy cluster", retried by the client) until its
    # members have been connected for 5 s: a longer deadline than the default.
    async with Client(cluster.endpoints, timeout=10) as client:
        await _members_list_add_update_remove(client, cluster)


async def _members_list_add_update_remove(client: Client, cluster: LocalCluster) -> None:
    ml = await client.member_list()
    assert sorted(m.name for m in ml.members) == sorted(m.name for m in cluster.members)
    assert {m.client_urls[0] for m in ml.members} == set(cluster.endpoints)
    added = await client.member_add(["http://127.0.0.1:1"], is_learner=True)
    assert added.member is not None and added.member.is_learner
    new_id = added.member.id
    try:
        assert new_id in {m.id for m in added.members}
        assert not next(m for m in added.members if m.id == new_id).started
        upd = await client.member_update(new_id, ["http://127.0.0.1:2"])
        assert next(m for m in upd.members if m.id == new_id).peer_urls == \
            ("http://127.0.0.1:2",)
        with pytest.raises(EtcdError, match="in sync with leader"):
            await client.member_promote(new_id)
    finally:
        left = await client.member_remove(new_id)
    assert new_id not in {m.id for m in left.members} and len(left.members) == 3
    with pytest.raises(MemberNotFound):
        await client.member_remove(new_id)


async def test_member_promote_started_learner(fresh: LocalCluster) -> None:
    async with Client(fresh.endpoints, timeout=10) as c:
        learner = fresh.add_member("learner")
        added = await c.member_add([learner.peer_url], is_learner=True)
        assert added.member is not None
        fresh.start(learner, state="existing")
        for _ in range(100):  # a learner can be promoted once it caught up with the leader
            try:
                promoted = await c.member_promote(added.member.id)
                break
            except EtcdError as e:
                assert "in sync" in e.message, e
                await asyncio.sleep(0.1)
        else:
            raise AssertionError("learner never caught up")
        m = next(m for m in promoted.members if m.id == added.member.id)
        assert not m.is_learner


async def test_move_leader(cluster: LocalCluster) -> None:
    async with Client(cluster.endpoints) as c:
        old = await c.leader()
        target = next(s for s in await c.statuses()
                      if not isinstance(s, Exception) and not s.is_leader)
        assert not isinstance(target, Exception)
        await c.move_leader(target.header.member_id)
        assert cluster.leader().client_url == target.endpoint
        with pytest.raises(NotLeader):  # asked directly of a member that is not leader
            await c._call("/v3/maintenance/transfer-leadership",
                          {"targetID": str(target.header.member_id)}, write=True,
                          endpoint=old.endpoint)


async def test_snapshot_to_file(client: Client, cluster: LocalCluster, tmp_path: Path) \
        -> None:
    key = _p() + "snap"
    await client.put(key, "v")
    dest = tmp_path / "snap.db"
    size = await client.snapshot(dest)
    assert size == dest.stat().st_size > 0
    data = dest.read_bytes()
    # Both servers append the SHA-256 of the database, as etcdctl snapshot restore checks.
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]
    assert key.encode() in data[:-32]
    if cluster.kind == "etcd":
        # A bbolt file starts with a meta page whose magic is 0xED0CDAED (little endian).
        assert data[16:20] == bytes.fromhex("edda0ced")
    assert not list(tmp_path.glob("*.part"))


async def test_failpoints(client: Client, cluster: LocalCluster) -> None:
    ep = cluster.endpoints[0]
    with pytest.raises(ValueError):
        await client.failpoint_get(ep, "a/b")
    if not cluster.extended:  # etcd 3.4 is not built with gofail
        with pytest.raises(Unsupported):
            await client.failpoint_set(ep, "walBeforeFsync", "sleep(10)")
        with pytest.raises(Unsupported):
            await client.failpoint_list(ep)
        return
    # raftnode --enable-failpoints: gofail's HTTP semantics on a real member
    await client.failpoint_set(ep, "walBeforeFsync", "sleep(1)")
    try:
        assert await client.failpoint_get(ep, "walBeforeFsync") == "sleep(1)"
        # armed failpoints only (gofail lists every one, unarmed as "name=")
        assert await client.failpoint_list(ep) == {"walBeforeFsync": "sleep(1)"}
        other = cluster.endpoints[1]
        assert "walBeforeFsync" not in await client.failpoint_list(other)  # per member
        await client.put(_p() + "fp", "through the armed failpoint")
    finally:
        await client.failpoint_clear(ep, "walBeforeFsync")
    assert "walBeforeFsync" not in await client.failpoint_list(ep)
    with pytest.raises(EtcdError) as ei:
        await client.failpoint_set(ep, "walBeforeFsync", "bad term;")
    assert ei.value.http_status == 400
    assert "walBeforeFsync" not in await client.failpoint_list(ep)  # lists armed ones only


async def test_failpoint_off_or_unknown_is_an_error_not_unsupported(
        client: Client, cluster: LocalCluster) -> None:
    ep = cluster.endpoints[0]
    if not cluster.extended:  # no /debug/failpoints at all: that is what Unsupported means
        with pytest.raises(Unsupported):
            await client.failpoint_get(ep, "walBeforeFsync")
        return
    with pytest.raises(EtcdError) as ei:
        await client.failpoint_get(ep, "walBeforeFsync")  # known, not set
    assert ei.value.http_status == 404
    with pytest.raises(EtcdError) as ei:
        await client.failpoint_set(ep, "noSuchFailpoint", "off")  # unknown
    assert ei.value.http_status in (400, 404)


async def test_unreachable_cluster_is_unavailable() -> None:
    async with Client(["127.0.0.1:1", "127.0.0.1:2"], timeout=0.5) as c:
        with pytest.raises(Unavailable) as ei:
            await c.put("k", "v")
    assert any("127.0.0.1:2" in a for a in ei.value.attempts)


def test_sync_client(cluster: LocalCluster) -> None:
    p = _p()
    with SyncClient(cluster.endpoints) as c:
        rev = c.put(p + "s", "v").header.revision
        assert c.get(p + "s").kvs[0].value == b"v"
        w = c.watch(p, prefix=True, start_revision=rev)
        ev = next(w)
        w.close()
        assert ev.kv.key == (p + "s").encode() and ev.kv.mod_revision == rev
        with pytest.raises(AttributeError):
            c.keep_alive  # noqa: B018 - not a coroutine method
