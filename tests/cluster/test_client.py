"""Every client method against a real 3-member etcd 3.4."""

from __future__ import annotations

import asyncio
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
from tests.cluster.etcd_cluster import EtcdCluster


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


async def test_status_leader_hash_health(client: Client, etcd: EtcdCluster) -> None:
    sts = await client.statuses()
    assert len(sts) == 3
    ids = {s.header.member_id for s in sts if not isinstance(s, Exception)}
    assert len(ids) == 3
    lead = await client.leader()
    assert lead.is_leader and lead.endpoint == etcd.leader().client_url
    assert all(s.leader == lead.header.member_id for s in sts if not isinstance(s, Exception))
    h = await client.hash(etcd.endpoints[0])
    assert h.hash != 0
    with pytest.raises(Unsupported):  # etcd 3.4's gateway maps HashKV onto /hash
        await client.hashkv(etcd.endpoints[0])
    health = await client.health(etcd.endpoints[1])
    assert health.healthy and health.error == ""
    samples = await client.metrics(etcd.endpoints[0])
    assert metrics.quantile(samples, metrics.FSYNC, 0.99) is not None


async def test_members_list_add_update_remove(etcd: EtcdCluster) -> None:
    # etcd refuses reconfiguration ("unhealthy cluster", retried by the client) until its
    # members have been connected for 5 s: a longer deadline than the default.
    async with Client(etcd.endpoints, timeout=10) as client:
        await _members_list_add_update_remove(client, etcd)


async def _members_list_add_update_remove(client: Client, etcd: EtcdCluster) -> None:
    ml = await client.member_list()
    assert sorted(m.name for m in ml.members) == ["m0", "m1", "m2"]
    assert {m.client_urls[0] for m in ml.members} == set(etcd.endpoints)
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


async def test_member_promote_started_learner(etcd_fresh: EtcdCluster) -> None:
    async with Client(etcd_fresh.endpoints, timeout=10) as c:
        learner = etcd_fresh.add_member("m3")
        added = await c.member_add([learner.peer_url], is_learner=True)
        assert added.member is not None
        etcd_fresh.start(learner, state="existing")
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


async def test_move_leader(etcd_fresh: EtcdCluster) -> None:
    async with Client(etcd_fresh.endpoints) as c:
        old = await c.leader()
        target = next(s for s in await c.statuses()
                      if not isinstance(s, Exception) and not s.is_leader)
        assert not isinstance(target, Exception)
        await c.move_leader(target.header.member_id)
        assert etcd_fresh.leader().client_url == target.endpoint
        with pytest.raises(NotLeader):  # asked directly of a member that is not leader
            await c._call("/v3/maintenance/transfer-leadership",
                          {"targetID": str(target.header.member_id)}, write=True,
                          endpoint=old.endpoint)


async def test_snapshot_to_file(client: Client, tmp_path: Path) -> None:
    await client.put(_p() + "snap", "v")
    dest = tmp_path / "snap.db"
    size = await client.snapshot(dest)
    assert size == dest.stat().st_size > 0
    # A bbolt file starts with a meta page whose magic is 0xED0CDAED (little endian).
    assert dest.read_bytes()[16:20] == bytes.fromhex("edda0ced")
    assert not list(tmp_path.glob("*.part"))


async def test_failpoints_unsupported_on_etcd(client: Client, etcd: EtcdCluster) -> None:
    with pytest.raises(Unsupported):
        await client.failpoint_set(etcd.endpoints[0], "walBeforeFsync", "sleep(10)")
    with pytest.raises(Unsupported):
        await client.failpoint_list(etcd.endpoints[0])
    with pytest.raises(ValueError):
        await client.failpoint_get(etcd.endpoints[0], "a/b")


async def test_unreachable_cluster_is_unavailable() -> None:
    async with Client(["127.0.0.1:1", "127.0.0.1:2"], timeout=0.5) as c:
        with pytest.raises(Unavailable) as ei:
            await c.put("k", "v")
    assert any("127.0.0.1:2" in a for a in ei.value.attempts)


def test_sync_client(etcd: EtcdCluster) -> None:
    p = _p()
    with SyncClient(etcd.endpoints) as c:
        rev = c.put(p + "s", "v").header.revision
        assert c.get(p + "s").kvs[0].value == b"v"
        w = c.watch(p, prefix=True, start_revision=rev)
        ev = next(w)
        w.close()
        assert ev.kv.key == (p + "s").encode() and ev.kv.mod_revision == rev
        with pytest.raises(AttributeError):
            c.keep_alive  # noqa: B018 - not a coroutine method
