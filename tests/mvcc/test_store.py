"""The MVCC store against etcd's documented semantics, case by case."""

from __future__ import annotations

import pytest

from raftnode.mvcc.errors import (
    ErrCompacted,
    ErrFutureRev,
    ErrKeyNotFound,
    ErrLeaseExists,
    ErrLeaseNotFound,
    ErrLeaseTTLTooLarge,
    EtcdError,
    GrpcCode,
    SnapshotError,
)
from raftnode.mvcc.messages import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    Event,
    EventType,
    KeyValue,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)
from raftnode.mvcc.store import MVCCStore

T, R = CompareTarget, CompareResult


def put(s: MVCCStore, k: bytes, v: bytes = b"v", **kw: object) -> PutResponse:
    return s.put(PutRequest(k, v, **kw))  # type: ignore[arg-type]


def rng(s: MVCCStore, k: bytes, end: bytes = b"", **kw: object) -> RangeResponse:
    return s.range(RangeRequest(k, end, **kw))  # type: ignore[arg-type]


def keys(r: RangeResponse) -> list[bytes]:
    return [kv.key for kv in r.kvs]


@pytest.fixture
def s() -> MVCCStore:
    return MVCCStore()


def test_initial_revision_is_one_and_first_write_is_two(s: MVCCStore) -> None:
    assert s.revision == 1
    assert rng(s, b"foo") == RangeResponse(1)
    assert put(s, b"foo", b"bar").revision == 2
    assert rng(s, b"foo").kvs == (KeyValue(b"foo", 2, 2, 1, b"bar"),)


def test_versions_create_and_mod_revisions(s: MVCCStore) -> None:
    put(s, b"a", b"1")
    put(s, b"b", b"x")
    put(s, b"a", b"2")
    assert s.get(b"a") == KeyValue(b"a", 2, 4, 2, b"2")
    r = put(s, b"a", b"2", prev_kv=True)  # same value still counts as a change
    assert r.revision == 5 and r.prev_kv == KeyValue(b"a", 2, 4, 2, b"2")
    assert s.get(b"a") == KeyValue(b"a", 2, 5, 3, b"2")


def test_delete_resets_version_and_recreate_starts_new_generation(s: MVCCStore) -> None:
    put(s, b"k", b"1")
    put(s, b"k", b"2")
    d = s.delete_range(DeleteRangeRequest(b"k", prev_kv=True))
    assert d == DeleteRangeResponse(4, 1, (KeyValue(b"k", 2, 3, 2, b"2"),))
    assert s.get(b"k") is None
    put(s, b"k", b"3")
    assert s.get(b"k") == KeyValue(b"k", 5, 5, 1, b"3")


def test_delete_of_nothing_does_not_bump_revision(s: MVCCStore) -> None:
    put(s, b"k")
    assert s.delete_range(DeleteRangeRequest(b"missing")) == DeleteRangeResponse(2, 0)
    assert s.delete_range(DeleteRangeRequest(b"x", b"\x00")) == DeleteRangeResponse(2, 0)
    assert s.revision == 2


def test_delete_range_prefix_and_all(s: MVCCStore) -> None:
    for k in (b"a", b"ab", b"abc", b"b", b"c"):
        put(s, k)
    d = s.delete_range(DeleteRangeRequest(b"ab", b"ac"))
    assert d.deleted == 2 and d.revision == 7 and d.prev_kvs == ()
    assert keys(rng(s, b"\x00", b"\x00")) == [b"a", b"b", b"c"]
    assert s.delete_range(DeleteRangeRequest(b"\x00", b"\x00")).deleted == 3
    assert s.revision == 8 and len(s) == 0


def test_range_end_forms(s: MVCCStore) -> None:
    for k in (b"a", b"a\xff", b"aa", b"b", b"ba"):
        put(s, k)
    assert keys(rng(s, b"a")) == [b"a"]
    assert keys(rng(s, b"a", b"b")) == [b"a", b"aa", b"a\xff"]
    assert keys(rng(s, b"aa", b"\x00")) == [b"aa", b"a\xff", b"b", b"ba"]
    assert keys(rng(s, b"\x00", b"\x00")) == [b"a", b"aa", b"a\xff", b"b", b"ba"]
    assert keys(rng(s, b"b", b"a")) == []  # empty interval
    assert rng(s, b"zz").kvs == ()


def test_range_limit_more_count_keys_only_count_only(s: MVCCStore) -> None:
    for i in range(5):
        put(s, b"k%d" % i, b"v%d" % i)
    r = rng(s, b"k", b"l", limit=2)
    assert keys(r) == [b"k0", b"k1"] and r.more and r.count == 5
    r = rng(s, b"k", b"l", limit=5)
    assert len(r.kvs) == 5 and not r.more
    r = rng(s, b"k", b"l", keys_only=True, limit=1)
    assert r.kvs == (KeyValue(b"k0", 2, 2, 1, b""),)
    assert rng(s, b"k", b"l", count_only=True) == RangeResponse(6, (), False, 5)


def test_sort_orders_and_targets(s: MVCCStore) -> None:
    put(s, b"a", b"3")
    put(s, b"b", b"1")
    put(s, b"c", b"2")
    put(s, b"b", b"1")  # b: version 2, mod 5
    assert keys(rng(s, b"a", b"z", sort_order=SortOrder.DESCEND)) == [b"c", b"b", b"a"]
    # NONE with a non-KEY target means ASCEND (etcd)
    assert keys(rng(s, b"a", b"z", sort_target=SortTarget.VALUE)) == [b"b", b"c", b"a"]
    assert keys(rng(s, b"a", b"z", sort_target=SortTarget.MOD,
                    sort_order=SortOrder.DESCEND)) == [b"b", b"c", b"a"]
    assert keys(rng(s, b"a", b"z", sort_target=SortTarget.CREATE,
                    sort_order=SortOrder.DESCEND)) == [b"c", b"b", b"a"]
    r = rng(s, b"a", b"z", sort_target=SortTarget.VERSION, sort_order=SortOrder.DESCEND, limit=1)
    assert keys(r) == [b"b"] and r.more and r.count == 3


def test_min_max_revision_filters_apply_before_limit_but_not_count(s: MVCCStore) -> None:
    for k in (b"a", b"b", b"c", b"d"):
        put(s, k)  # revisions 2..5
    put(s, b"a")  # a: create 2, mod 6
    r = rng(s, b"a", b"z", min_mod_revision=4)
    assert keys(r) == [b"a", b"c", b"d"] and r.count == 4
    assert keys(rng(s, b"a", b"z", max_mod_revision=4)) == [b"b", b"c"]
    assert keys(rng(s, b"a", b"z", min_create_revision=3, max_create_revision=4)) == [b"b", b"c"]
    r = rng(s, b"a", b"z", min_mod_revision=3, limit=1)
    assert keys(r) == [b"a"] and r.more


def test_revision_reads_and_header_is_current(s: MVCCStore) -> None:
    put(s, b"k", b"1")  # 2
    put(s, b"k", b"2")  # 3
    s.delete_range(DeleteRangeRequest(b"k"))  # 4
    put(s, b"k", b"3")  # 5
    assert rng(s, b"k", revision=2).kvs == (KeyValue(b"k", 2, 2, 1, b"1"),)
    assert rng(s, b"k", revision=3).kvs[0].value == b"2"
    r = rng(s, b"k", revision=4)
    assert r.kvs == () and r.revision == 5 and r.count == 0
    assert rng(s, b"k", revision=1).kvs == ()
    with pytest.raises(ErrFutureRev) as e:
        rng(s, b"k", revision=6)
    assert e.value.message == "etcdserver: mvcc: required revision is a future revision"
    assert e.value.code == GrpcCode.OUT_OF_RANGE


def test_put_options(s: MVCCStore) -> None:
    with pytest.raises(ErrKeyNotFound):
        put(s, b"k", b"", ignore_value=True)
    with pytest.raises(ErrLeaseNotFound):
        put(s, b"k", b"v", lease=99)
    assert s.revision == 1  # failed requests change nothing
    lease = s.lease_grant(LeaseGrantRequest(10, 7)).ID
    put(s, b"k", b"v", lease=lease)
    put(s, b"k", b"", ignore_value=True)
    assert s.get(b"k") == KeyValue(b"k", 2, 3, 2, b"v", 0)  # lease dropped: not ignore_lease
    put(s, b"k", b"w", lease=lease)
    put(s, b"k", b"x", ignore_lease=True)
    assert s.get(b"k") == KeyValue(b"k", 2, 5, 4, b"x", 7)


def test_txn_compare_targets_on_existing_and_missing_keys(s: MVCCStore) -> None:
    put(s, b"k", b"abc")  # create 2 mod 2 ver 1

    def ok(c: Compare) -> bool:
        return s.txn(TxnRequest((c,))).succeeded

    assert ok(Compare(b"k", T.VALUE, R.EQUAL, b"abc"))
    assert ok(Compare(b"k", T.VALUE, R.GREATER, b"abb"))
    assert ok(Compare(b"k", T.VALUE, R.LESS, b"abd"))
    assert ok(Compare(b"k", T.VERSION, R.EQUAL, 1))
    assert ok(Compare(b"k", T.CREATE, R.NOT_EQUAL, 0))
    assert ok(Compare(b"k", T.MOD, R.GREATER, 1))
    assert ok(Compare(b"k", T.LEASE, R.EQUAL, 0))
    assert not ok(Compare(b"k", T.VERSION, R.LESS, 1))
    # a missing key compares as a zero KeyValue, except VALUE, which always fails
    assert ok(Compare(b"nope", T.CREATE, R.EQUAL, 0))
    assert ok(Compare(b"nope", T.VERSION, R.EQUAL, 0))
    assert not ok(Compare(b"nope", T.VALUE, R.EQUAL, b""))
    assert not ok(Compare(b"nope", T.VALUE, R.NOT_EQUAL, b"x"))
    assert s.revision == 2  # read-only txns do not bump


def test_txn_compare_with_range_end_must_hold_for_every_key(s: MVCCStore) -> None:
    put(s, b"p/a", b"1")
    put(s, b"p/b", b"1")
    c = Compare(b"p/", T.VALUE, R.EQUAL, b"1", b"p0")
    assert s.txn(TxnRequest((c,))).succeeded
    put(s, b"p/c", b"2")
    assert not s.txn(TxnRequest((c,))).succeeded
    assert s.txn(TxnRequest((Compare(b"p/", T.VERSION, R.GREATER, 0, b"p0"),))).succeeded


def test_txn_one_revision_reads_own_writes_and_inner_headers(s: MVCCStore) -> None:
    put(s, b"foo", b"bar")  # 2
    t = TxnRequest(
        (Compare(b"foo", T.CREATE, R.EQUAL, 0),),
        success=(PutRequest(b"x", b"1"),),
        failure=(RangeRequest(b"foo"),
                 TxnRequest(success=(PutRequest(b"y", b"1"), RangeRequest(b"y"))),
                 DeleteRangeRequest(b"foo", prev_kv=True), RangeRequest(b"foo"),
                 RangeRequest(b"foo", revision=2)))
    r = s.txn(t)
    assert not r.succeeded and r.revision == 3 and s.revision == 3
    rr, nested, dr, after, old = r.responses
    assert isinstance(rr, RangeResponse) and rr.revision == 2 and rr.count == 1
    assert isinstance(nested, TxnResponse) and nested.succeeded
    assert nested.responses == (PutResponse(3), RangeResponse(3, (KeyValue(b"y", 3, 3, 1, b"1"),),
                                                              False, 1))
    assert dr == DeleteRangeResponse(3, 1, (KeyValue(b"foo", 2, 2, 1, b"bar"),))
    assert after == RangeResponse(3)
    assert isinstance(old, RangeResponse) and old.kvs[0].value == b"bar"  # at revision 2


def test_txn_failing_check_changes_nothing(s: MVCCStore) -> None:
    t = TxnRequest(success=(PutRequest(b"a", b"1"), PutRequest(b"b", b"1", lease=42)))
    with pytest.raises(ErrLeaseNotFound):
        s.txn(t)
    assert s.revision == 1 and s.get(b"a") is None
    with pytest.raises(ErrFutureRev):
        s.txn(TxnRequest(success=(PutRequest(b"a"), RangeRequest(b"a", revision=2))))
    assert s.get(b"a") is None


def test_nested_compares_are_evaluated_before_the_txn_runs(s: MVCCStore) -> None:
    """etcd computes the whole path of compares up front (compareToPath)."""
    inner = TxnRequest((Compare(b"a", T.VERSION, R.EQUAL, 0),), (PutRequest(b"inner", b"then"),),
                       (PutRequest(b"inner", b"else"),))
    s.txn(TxnRequest(success=(PutRequest(b"a"), inner)))
    assert s.get(b"inner") is not None and s.get(b"inner").value == b"then"  # type: ignore


def test_compaction(s: MVCCStore) -> None:
    put(s, b"a", b"1")  # 2
    put(s, b"a", b"2")  # 3
    put(s, b"b", b"1")  # 4
    s.delete_range(DeleteRangeRequest(b"b"))  # 5
    put(s, b"c", b"1")  # 6
    with pytest.raises(ErrFutureRev):
        s.compact(CompactionRequest(7))
    assert s.compact(CompactionRequest(5)).revision == 6
    assert s.compact_revision == 5
    with pytest.raises(ErrCompacted) as e:
        rng(s, b"a", revision=4)
    assert e.value.message == "etcdserver: mvcc: required revision has been compacted"
    assert rng(s, b"a", revision=5).kvs == (KeyValue(b"a", 2, 3, 2, b"2"),)
    assert keys(rng(s, b"\x00", b"\x00", revision=5)) == [b"a"]
    assert keys(rng(s, b"\x00", b"\x00")) == [b"a", b"c"]
    with pytest.raises(ErrCompacted):
        s.compact(CompactionRequest(5))
    with pytest.raises(ErrCompacted):
        s.events_since(b"a", b"", 4)
    put(s, b"b", b"again")
    assert s.get(b"b") == KeyValue(b"b", 7, 7, 1, b"again")


def test_leases_grant_attach_revoke_in_one_revision(s: MVCCStore) -> None:
    g = s.lease_grant(LeaseGrantRequest(30))
    assert g.ID > 0 and g.TTL == 30 and g.revision == 1  # grants do not bump
    with pytest.raises(ErrLeaseExists):
        s.lease_grant(LeaseGrantRequest(30, g.ID))
    with pytest.raises(ErrLeaseTTLTooLarge):
        s.lease_grant(LeaseGrantRequest(9_000_000_001))
    assert MVCCStore(min_lease_ttl=5).lease_grant(LeaseGrantRequest(1)).TTL == 5
    put(s, b"a", lease=g.ID)
    put(s, b"b", lease=g.ID)
    put(s, b"c")
    put(s, b"b")  # detaches b
    ttl = s.lease_time_to_live(LeaseTimeToLiveRequest(g.ID, keys=True))
    assert (ttl.ID, ttl.TTL, ttl.grantedTTL, ttl.keys) == (g.ID, 30, 30, (b"a",))
    put(s, b"b", lease=g.ID)
    assert s.lease_leases().leases == (g.ID,)
    seen: list[tuple[int, list[Event]]] = []
    s.event_sink = lambda rev, evs: seen.append((rev, evs))
    assert s.lease_revoke(LeaseRevokeRequest(g.ID)).revision == 7
    assert keys(rng(s, b"\x00", b"\x00")) == [b"c"]
    assert [(rev, [(e.type, e.kv.key) for e in evs]) for rev, evs in seen] == [
        (7, [(EventType.DELETE, b"a"), (EventType.DELETE, b"b")])]
    assert s.lease_time_to_live(LeaseTimeToLiveRequest(g.ID)).TTL == -1
    with pytest.raises(ErrLeaseNotFound) as e:
        s.lease_revoke(LeaseRevokeRequest(g.ID))
    assert e.value.code == GrpcCode.NOT_FOUND
    empty = s.lease_grant(LeaseGrantRequest(10))
    assert s.lease_revoke(LeaseRevokeRequest(empty.ID)).revision == 7  # nothing deleted


def test_events_match_etcd_shapes(s: MVCCStore) -> None:
    seen: list[tuple[int, list[Event]]] = []
    s.event_sink = lambda rev, evs: seen.append((rev, evs))
    put(s, b"k", b"1")
    put(s, b"k", b"2")
    s.delete_range(DeleteRangeRequest(b"k"))
    s.delete_range(DeleteRangeRequest(b"k"))  # no change: no event
    rng(s, b"k")
    assert seen == [
        (2, [Event(EventType.PUT, KeyValue(b"k", 2, 2, 1, b"1"), None)]),
        (3, [Event(EventType.PUT, KeyValue(b"k", 2, 3, 2, b"2"), KeyValue(b"k", 2, 2, 1, b"1"))]),
        (4, [Event(EventType.DELETE, KeyValue(b"k", 0, 4, 0), KeyValue(b"k", 2, 3, 2, b"2"))]),
    ]
    assert s.events_since(b"k", b"", 3) == [e for _, evs in seen[1:] for e in evs]
    put(s, b"j", b"x")
    assert [(e.kv.key, e.kv.mod_revision) for e in s.events_since(b"a", b"z", 0)] == [
        (b"k", 2), (b"k", 3), (b"k", 4), (b"j", 5)]


def test_errors_are_typed_etcd_errors(s: MVCCStore) -> None:
    with pytest.raises(EtcdError) as e:
        s.apply(LeaseRevokeRequest(1))
    assert (e.value.message, e.value.code) == ("etcdserver: requested lease not found", 5)
    with pytest.raises(TypeError):
        s.apply("put k v")  # type: ignore[arg-type]


def _history(s: MVCCStore) -> None:
    g = s.apply(LeaseGrantRequest(60, 5))
    assert g
    for i in range(30):
        s.apply(PutRequest(b"k%02d" % (i % 7), b"v%d" % i, lease=5 if i % 3 == 0 else 0))
        if i % 5 == 4:
            s.apply(DeleteRangeRequest(b"k%02d" % (i % 4)))
    s.apply(TxnRequest((Compare(b"k01", T.VERSION, R.GREATER, 0),),
                       (PutRequest(b"t", b"1"),), (PutRequest(b"f", b"1"),)))
    s.apply(CompactionRequest(20))


def test_snapshot_restore_round_trip_and_hashes(s: MVCCStore) -> None:
    _history(s)
    other = MVCCStore()
    _history(other)
    assert s.hash() == other.hash() and s.hash_kv() == other.hash_kv()
    assert s.hash_kv(25) == other.hash_kv(25) and s.hash_kv(25).hash != s.hash_kv().hash
    copy = MVCCStore()
    copy.restore(s.snapshot())
    assert copy.snapshot() == s.snapshot() and copy.hash() == s.hash()
    assert copy.revision == s.revision and copy.compact_revision == 20
    for rev in (20, 25, s.revision):
        assert rng(copy, b"\x00", b"\x00", revision=rev) == rng(s, b"\x00", b"\x00", revision=rev)
    lease = copy.lease(5)
    assert lease is not None and lease.keys == s.lease(5).keys  # type: ignore[union-attr]
    # both continue identically
    for st in (s, copy):
        st.apply(LeaseRevokeRequest(5))
        st.apply(PutRequest(b"after", b"x"))
    assert copy.hash() == s.hash()
    other.apply(PutRequest(b"after", b"y"))
    assert other.hash() != s.hash()


@pytest.mark.parametrize("blob", [b"", b"\xc1", b"\x93\x01\x02\x03",
                                  b"\x96\xa5other\x01\xff\x01\x90\x90"])
def test_restore_rejects_garbage_and_keeps_state(s: MVCCStore, blob: bytes) -> None:
    put(s, b"k")
    before = s.snapshot()
    with pytest.raises(SnapshotError):
        s.restore(blob)
    assert s.snapshot() == before


def test_restore_rejects_truncated_snapshot(s: MVCCStore) -> None:
    _history(s)
    snap = s.snapshot()
    for cut in (1, len(snap) // 2, len(snap) - 1):
        with pytest.raises(SnapshotError):
            MVCCStore().restore(snap[:cut])


def test_events_within_a_txn_keep_operation_order(s: MVCCStore) -> None:
    put(s, b"z", b"old")
    seen: list[tuple[int, list[Event]]] = []
    s.event_sink = lambda rev, evs: seen.append((rev, evs))
    # etcd accepts this (a "\0"-ended delete conflicts with nothing in checkIntervals):
    # z is put, then deleted by the nested txn, all at revision 3
    r = s.txn(TxnRequest(success=(PutRequest(b"z", b"new"), PutRequest(b"b", b"1"),
                                  TxnRequest(success=(DeleteRangeRequest(b"y", b"\x00"),)))))
    assert r.revision == 3 and s.get(b"z") is None and s.get(b"b") is not None
    order = [(e.type, e.kv.key) for e in seen[0][1]]
    assert order == [(EventType.PUT, b"z"), (EventType.PUT, b"b"), (EventType.DELETE, b"z")]
    replay = [(e.type, e.kv.key) for e in s.events_since(b"\x00", b"\x00", 3)]
    assert replay == order
    assert rng(s, b"z", revision=2).kvs[0].value == b"old"
    assert rng(s, b"z", revision=3).kvs == ()
    put(s, b"z", b"again")
    assert s.get(b"z") == KeyValue(b"z", 4, 4, 1, b"again")
    copy = MVCCStore()
    copy.restore(s.snapshot())
    assert copy.events_since(b"\x00", b"\x00", 3) == s.events_since(b"\x00", b"\x00", 3)


def test_approx_size_tracks_history_compaction_and_restore(s: MVCCStore) -> None:
    assert s.approx_size() == 0
    put(s, b"k", b"x" * 1000)
    put(s, b"k", b"y" * 1000)
    two = s.approx_size()
    assert two > 2000
    s.delete_range(DeleteRangeRequest(b"k"))
    assert s.approx_size() > two
    s.compact(CompactionRequest(s.revision))  # everything superseded or deleted
    assert s.approx_size() == 0
    put(s, b"a", b"z" * 100)
    copy = MVCCStore()
    copy.restore(s.snapshot())
    assert copy.approx_size() == s.approx_size() > 100
