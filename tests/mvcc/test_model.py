"""The store against a plain-dict model over random put/delete/txn/compact sequences."""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from raftnode.mvcc.errors import ErrCompacted
from raftnode.mvcc.messages import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    KeyValue,
    PutRequest,
    RangeRequest,
    TxnRequest,
)
from raftnode.mvcc.store import MVCCStore

KEYS = [b"a", b"ab", b"b", b"ba", b"c"]
key = st.sampled_from(KEYS)
value = st.binary(max_size=3)


@dataclass
class Model:
    """key -> KeyValue, plus a copy of the whole map at every revision."""

    rev: int = 1
    kvs: dict[bytes, KeyValue] = field(default_factory=dict)
    at: dict[int, dict[bytes, KeyValue]] = field(default_factory=lambda: {1: {}})

    def put(self, k: bytes, v: bytes, rev: int) -> None:
        old = self.kvs.get(k)
        self.kvs[k] = (KeyValue(k, old.create_revision, rev, old.version + 1, v) if old
                       else KeyValue(k, rev, rev, 1, v))

    def delete(self, lo: bytes, hi: bytes) -> int:
        gone = [k for k in self.kvs if (k == lo if not hi else lo <= k < hi)]
        for k in gone:
            del self.kvs[k]
        return len(gone)

    def commit(self, changed: bool) -> None:
        if changed:
            self.rev += 1
            self.at[self.rev] = dict(self.kvs)


op = st.one_of(
    st.tuples(st.just("put"), key, value),
    st.tuples(st.just("del"), key, st.sampled_from([b"", b"b", b"bz", b"\xff"])),
    st.tuples(st.just("txn"), key, value, key, value),
    st.tuples(st.just("compact"), st.integers(0, 40)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(op, max_size=40))
def test_store_matches_model(ops: list[tuple]) -> None:  # type: ignore[type-arg]
    s, m, compacted = MVCCStore(), Model(), -1
    for o in ops:
        if o[0] == "put":
            s.put(PutRequest(o[1], o[2]))
            m.put(o[1], o[2], m.rev + 1)
            m.commit(True)
        elif o[0] == "del":
            n = s.delete_range(DeleteRangeRequest(o[1], o[2] if o[2] > o[1] else b"")).deleted
            hi = o[2] if o[2] > o[1] else b""
            assert n == m.delete(o[1], hi)
            m.commit(n > 0)
        elif o[0] == "txn":
            # create-if-absent of k1, else put k2 (distinct keys only: etcd forbids dups)
            _, k1, v1, k2, v2 = o
            if k1 == k2:
                continue
            t = TxnRequest((Compare(k1, CompareTarget.CREATE, CompareResult.EQUAL, 0),),
                           (PutRequest(k1, v1),), (PutRequest(k2, v2), RangeRequest(k1)))
            r = s.txn(t)
            assert r.succeeded == (k1 not in m.kvs)
            m.put(k1 if r.succeeded else k2, v1 if r.succeeded else v2, m.rev + 1)
            m.commit(True)
        else:
            rev = o[1]
            if compacted < rev <= m.rev:
                s.compact(CompactionRequest(rev))
                compacted = rev
        assert s.revision == m.rev
        got = s.range(RangeRequest(b"\x00", b"\x00")).kvs
        assert got == tuple(m.kvs[k] for k in sorted(m.kvs))
    for rev, snap in m.at.items():
        req = RangeRequest(b"\x00", b"\x00", revision=rev)
        if rev < compacted:
            try:
                s.range(req)
            except ErrCompacted:
                continue
            raise AssertionError(f"revision {rev} < compacted {compacted} was readable")
        assert s.range(req).kvs == tuple(snap[k] for k in sorted(snap)), rev
    copy = MVCCStore()
    copy.restore(s.snapshot())
    assert copy.hash() == s.hash() and copy.hash_kv() == s.hash_kv()
    assert copy.approx_size() == s.approx_size()  # incremental accounting == recount
