"""The state machine applies each request ID at most once (re-submissions to a new leader).

The window is replicated state: a member restored from a snapshot must refuse the same
duplicates as one that applied every entry, or the members' stores would diverge.
"""

from __future__ import annotations

import pytest

from raftnode.mvcc.errors import EtcdError
from raftnode.mvcc.messages import PutRequest, RangeRequest
from raftnode.mvcc.store import MVCCStore
from raftnode.statemachine import (
    DEDUP_WINDOW,
    StateMachine,
    as_resubmission,
    encode_kv,
)


def put(rid: int, key: bytes) -> bytes:
    return encode_kv(rid, PutRequest(key, b"v"))


def version(sm: StateMachine, key: bytes) -> int:
    kvs = sm.store.range(RangeRequest(key)).kvs
    return kvs[0].version if kvs else 0


def test_a_resubmitted_copy_of_an_applied_request_is_skipped() -> None:
    sm = StateMachine(MVCCStore())
    rid, res = sm.apply_normal(put(7, b"k"), 1)
    assert rid == 7 and not isinstance(res, EtcdError)
    assert sm.apply_normal(as_resubmission(put(7, b"k"), since=0), 2) == (0, None)
    assert version(sm, b"k") == 1 and sm.store.revision == 2


def test_a_resubmission_whose_original_never_applied_applies() -> None:
    sm = StateMachine(MVCCStore())
    rid, res = sm.apply_normal(as_resubmission(put(9, b"k"), since=0), 5)
    assert rid == 9 and not isinstance(res, EtcdError)
    # and the late original, should it ever commit, is then the duplicate
    assert sm.apply_normal(put(9, b"k"), 6) == (0, None)
    assert version(sm, b"k") == 1


def test_a_resubmission_older_than_the_window_is_refused_not_applied() -> None:
    sm = StateMachine(MVCCStore())
    late = DEDUP_WINDOW + 10
    rid, res = sm.apply_normal(as_resubmission(put(3, b"k"), since=9), late)
    assert rid == 3 and isinstance(res, EtcdError) and "too late" in res.message
    assert version(sm, b"k") == 0
    # the boundary: every index above ``since`` is still inside the window
    rid, res = sm.apply_normal(as_resubmission(put(4, b"j"), since=11), late + 1)
    assert not isinstance(res, EtcdError) and version(sm, b"j") == 1


def test_the_window_forgets_old_ids_and_stays_bounded() -> None:
    sm = StateMachine(MVCCStore())
    for i in range(1, DEDUP_WINDOW + 101):
        sm.apply_normal(put(i, b"k%d" % (i % 50)), i)
    assert len(sm.applied_ids) == DEDUP_WINDOW  # the entries (i - W, i]
    assert 1 not in sm.applied_ids and DEDUP_WINDOW + 100 in sm.applied_ids


@pytest.mark.parametrize("cut", [1, 3])
def test_the_window_travels_in_snapshots(cut: int) -> None:
    entries = [put(i, b"k%d" % i) for i in range(1, 5)]
    full = StateMachine(MVCCStore())
    for i, data in enumerate(entries, 1):
        full.apply_normal(data, i)
    part = StateMachine(MVCCStore())
    for i, data in enumerate(entries[:cut], 1):
        part.apply_normal(data, i)
    restored = StateMachine(MVCCStore())
    restored.restore(part.snapshot())
    for i, data in enumerate(entries[cut:], cut + 1):
        restored.apply_normal(data, i)
    dup = as_resubmission(entries[0], since=0)
    assert full.apply_normal(dup, 5) == restored.apply_normal(dup, 5) == (0, None)
    assert full.store.hash() == restored.store.hash()
    assert list(full.applied_ids.items()) == list(restored.applied_ids.items())
