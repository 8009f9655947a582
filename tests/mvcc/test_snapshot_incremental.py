"""Incremental MVCC snapshots (format 3): a snapshot reuses the last one's packed versions
and packs only what was written since; restoring any chain of them gives the same state as
the store that made it, and anything that voids the reused bytes makes a full snapshot."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftnode.mvcc.errors import SnapshotError
from raftnode.mvcc.messages import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    PutRequest,
    TxnRequest,
)
from raftnode.mvcc.store import SNAPSHOT_FORMAT, MVCCStore, SnapshotToken, StaleSnapshotError
from raftnode.snapparts import SnapParts


def _fork(s: MVCCStore) -> tuple[SnapParts, SnapshotToken]:
    """What the driver does: an incremental snapshot packed in place when there is a base
    (here all at once; the driver in slices), else the whole store in a forked child (here:
    packed before the token, as after a fork, the token taken at the same instant)."""
    plan = s.plan_delta()
    if plan is not None:
        while not s.pack_delta(plan, 1000):
            pass
        return s.finish_delta(plan), plan.token
    parts = s.snapshot_parts()
    return parts, s.snapshot_forked()


def _saved(s: MVCCStore, parts: SnapParts, token: SnapshotToken) -> bytes:
    i, j = parts.region  # as the driver does: the very buffers, never joined
    s.snapshot_saved(token, parts.parts[i:j], parts.chunks)
    return parts.join()


def _with_base(puts: int, keys: int) -> tuple[MVCCStore, bytes]:
    """A store of ``puts`` puts over ``keys`` keys, snapshotted and saved: the base of the
    next incremental snapshot. Returns the store and that snapshot's bytes."""
    s = MVCCStore()
    for i in range(puts):
        s.apply(PutRequest(b"k%d" % (i % keys), b"v%d" % i))
    parts, token = _fork(s)
    return s, _saved(s, parts, token)


def _restored(data: bytes) -> MVCCStore:
    r = MVCCStore()
    r.restore(data)
    return r


def _writes(s: MVCCStore, rng: random.Random, n: int) -> None:
    for _ in range(n):
        k = b"k%02d" % rng.randrange(20)
        op = rng.random()
        if op < 0.7:
            s.apply(PutRequest(k, rng.randbytes(rng.randrange(0, 40)),
                               lease=7 if s.lease(7) is not None and op < 0.1 else 0))
        elif op < 0.85:
            s.apply(DeleteRangeRequest(k, k + b"\xff"))
        else:  # two changes of one key in one revision: sub-revisions 0 and 1
            s.apply(TxnRequest((Compare(k, CompareTarget.VERSION, CompareResult.GREATER, -1),),
                               (PutRequest(k, b"a"), DeleteRangeRequest(k))))


def test_each_snapshot_packs_only_what_was_written_since_and_restores_exactly() -> None:
    rng = random.Random(4)
    s = MVCCStore()
    s.apply(LeaseGrantRequest(60, 7))
    kept: list[object] = []
    for round_ in range(6):
        _writes(s, rng, 150)
        parts, token = _fork(s)
        assert parts.chunks == round_ + 1  # the first packs all; each next adds one chunk
        i, j = parts.region
        # the older chunks are the very buffers of the last snapshot (the .snap writer
        # references what it wrote before by identity), never copied
        assert all(a is b for a, b in zip(parts.parts[i:j - 1], kept, strict=True))
        kept = list(parts.parts[i:j])
        new_chunk = parts.parts[parts.region[1] - 1]
        if round_ >= 3:  # the history is 4+ rounds long; the new chunk holds one round
            assert len(new_chunk) < 0.5 * len(s.snapshot()), (round_, len(new_chunk))
        data = _saved(s, parts, token)
        r = _restored(data)
        assert r.snapshot() == s.snapshot() and r.hash_kv() == s.hash_kv()
        assert r.revision == s.revision and r.lease(7) == s.lease(7)


def test_a_snapshot_with_nothing_new_reuses_the_base_alone() -> None:
    s = MVCCStore()
    s.apply(PutRequest(b"a", b"1"))
    parts, token = _fork(s)
    _saved(s, parts, token)
    parts2, _ = _fork(s)
    assert parts2.chunks == 1 and parts2.join() == s.snapshot()


@pytest.mark.parametrize("void", ["compaction", "unsaved", "restore", "stale token"])
def test_what_voids_the_base_makes_a_full_snapshot(void: str) -> None:
    s, data = _with_base(30, 4)
    s.apply(PutRequest(b"k1", b"later"))
    if void == "compaction":  # the reused bytes hold versions a compaction dropped
        s.apply(CompactionRequest(20))
    elif void == "unsaved":  # a child that failed: the keys it took are not in any base
        _fork(s)
        s.apply(PutRequest(b"k2", b"after the failed one"))
    elif void == "restore":
        s.restore(data)
    else:  # the child forked, then a leader's snapshot replaced the store, then it saved
        p2, t2 = _fork(s)
        s.restore(data)
        _saved(s, p2, t2)
    assert s.plan_delta() is None  # no base: the next snapshot is the whole store
    full, _ = _fork(s)
    assert full.chunks == 1
    assert full.join() == s.snapshot() and _restored(full.join()).snapshot() == s.snapshot()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.booleans(), st.booleans()), min_size=1,
                max_size=8), st.integers(0, 2**16))
def test_any_chain_of_snapshots_restores_to_the_store(
        rounds: list[tuple[int, bool, bool]], seed: int) -> None:
    """Random writes, compactions, failed children and restores between snapshots: every
    snapshot restores to exactly the store's state at that point."""
    rng = random.Random(seed)
    s = MVCCStore()
    s.apply(LeaseGrantRequest(60, 7))
    last = b""
    for n, compact, fail in rounds:
        _writes(s, rng, n)
        if compact and s.compact_revision < s.revision:
            s.apply(CompactionRequest(rng.randrange(max(1, s.compact_revision + 1),
                                                    s.revision + 1)))
        if rng.random() < 0.1 and s.lease(7) is not None:
            s.apply(LeaseRevokeRequest(7))
        parts, token = _fork(s)
        if fail:
            continue
        last = _saved(s, parts, token)
        r = _restored(last)
        assert r.snapshot() == s.snapshot()
        # and a member restored from it goes on making incremental snapshots of its own
        _writes(r, random.Random(seed), 5)
        _writes(s, random.Random(seed), 5)
        assert r.snapshot() == s.snapshot()


def test_the_canonical_snapshot_is_one_chunk_and_msgpack_of_the_whole() -> None:
    s = MVCCStore()
    s.apply(PutRequest(b"a", b"1"))
    s.apply(PutRequest(b"a", b"2"))
    s.apply(DeleteRangeRequest(b"a"))
    s.apply(PutRequest(b"b", b"3", lease=0))
    obj = msgpack.unpackb(s.snapshot())
    assert obj == [SNAPSHOT_FORMAT, 5, -1, 1, [],  # (etcd's first revision is 1)
                   [[[b"a", b"b"], [3, 1], [2, 3, 4, 5], [0, 0, 0, 0], [2, 2, 0, 5],
                     [1, 2, 0, 1], [b"1", b"2", b"", b"3"], [0, 0, 0, 0]]]]


def _format2(s: MVCCStore) -> bytes:
    """A snapshot as members before format 3 wrote it (one list per version)."""
    obj = msgpack.unpackb(s.snapshot())
    _, rev, compact, nxt, leases, chunks = obj
    keys, counts, revs, subs, creates, versions, values, vleases = chunks[0]
    rows, pos = [], 0
    for k, c in zip(keys, counts):
        rows.append([k, [[creates[i], revs[i], subs[i], versions[i], values[i], vleases[i]]
                         for i in range(pos, pos + c)]])
        pos += c
    return msgpack.packb(["raftnode-mvcc/2", rev, compact, nxt, rows, leases])


def test_a_format_2_snapshot_still_restores() -> None:
    s = MVCCStore()
    s.apply(LeaseGrantRequest(60, 5))
    _writes(s, random.Random(1), 80)
    s.apply(PutRequest(b"leased", b"x", lease=5))
    r = _restored(_format2(s))
    assert r.snapshot() == s.snapshot() and r.lease(5) == s.lease(5)


def _chunked(chunks: list[list[object]], rev: int = 10) -> bytes:
    return msgpack.packb([SNAPSHOT_FORMAT, rev, -1, 1, [], chunks])


def _chunk(keys: list[bytes], counts: list[int], revs: list[int],
           subs: list[int] | None = None) -> list[object]:
    n = len(revs)
    return [keys, counts, revs, subs if subs is not None else [0] * n, revs, [1] * n,
            [b"v"] * n, [0] * n]


@pytest.mark.parametrize("chunks", [
    [_chunk([b"a"], [2], [1])],  # counts disagree with the columns
    [_chunk([b"a"], [0], [])],  # a key with no versions
    [_chunk([b"a"], [2], [2, 1])],  # versions out of order
    [_chunk([b"a"], [1], [3]), _chunk([b"a"], [1], [2])],  # ... across chunks
    [_chunk([b"a"], [1], [3]), _chunk([b"a"], [1], [3])],  # the same version twice
    [_chunk([b"a"], [1], [11])],  # a version above the store's revision
    [_chunk(["a"], [1], [1])],  # type: ignore[list-item]  # a key that is not bytes
    [_chunk([b"a"], [1], [1])[:5]],  # a chunk missing columns
])
def test_malformed_chunks_are_refused_and_change_nothing(chunks: list[list[object]]) -> None:
    s = MVCCStore()
    s.apply(PutRequest(b"keep", b"me"))
    before = s.snapshot()
    with pytest.raises(SnapshotError):
        s.restore(_chunked(chunks))
    assert s.snapshot() == before


def _delta(s: MVCCStore, rng: random.Random, writes_between: int) -> tuple[bytes, SnapParts,
                                                                         SnapshotToken, bytes]:
    """plan_delta now, then pack it one key at a time with writes landing in between (as the
    driver's slices let the loop apply more): returns the canonical snapshot of the plan's
    instant, the packed parts, the token, and their bytes."""
    plan = s.plan_delta()
    assert plan is not None
    expected = s.snapshot()
    while not s.pack_delta(plan, 1):
        _writes(s, rng, writes_between)
    _writes(s, rng, writes_between)
    parts = s.finish_delta(plan)
    return expected, parts, plan.token, parts.join()


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=6), st.integers(0, 3),
       st.integers(0, 2**16))
def test_a_delta_packed_while_writes_go_on_is_the_state_of_its_instant(
        rounds: list[int], between: int, seed: int) -> None:
    rng = random.Random(seed)
    s = MVCCStore()
    s.apply(LeaseGrantRequest(60, 7))
    _writes(s, rng, 30)
    parts, token = _fork(s)  # the first snapshot: the whole store (a fork, in the driver)
    _saved(s, parts, token)
    for n in rounds:
        _writes(s, rng, n)
        expected, parts, token, data = _delta(s, rng, between)
        assert _restored(data).snapshot() == expected
        i, j = parts.region
        s.snapshot_saved(token, parts.parts[i:j], parts.chunks)
    # and the chain goes on: a full canonical snapshot of now restores from the last delta
    # plus what was written since, packed the same way
    expected, parts, _, data = _delta(s, rng, 0)
    assert _restored(data).snapshot() == expected == s.snapshot()


@pytest.mark.parametrize("change", ["compaction", "restore"])
def test_a_delta_whose_history_changed_underneath_is_abandoned(change: str) -> None:
    s, data = _with_base(20, 3)
    s.apply(PutRequest(b"k1", b"new"))
    plan = s.plan_delta()
    assert plan is not None and s.plan_delta() is None  # one at a time: the base is taken
    if change == "compaction":
        s.apply(CompactionRequest(s.revision))
    else:
        s.restore(data)
    with pytest.raises(StaleSnapshotError):
        s.pack_delta(plan, 10)
    assert s.plan_delta() is None  # the next one packs everything
