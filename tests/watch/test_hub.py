"""The hub on its own: index matching, slow watchers, restores, progress, ordering."""

from __future__ import annotations

import random

from raftnode.mvcc.messages import (
    CompactionRequest,
    DeleteRangeRequest,
    EventType,
    PutRequest,
    TxnRequest,
)
from raftnode.mvcc.store import MVCCStore
from raftnode.watch.hub import (
    REASON_COMPACTED,
    STREAM_WATCH_ID,
    FilterType,
    WatchCreate,
    WatchHub,
    WatchResponse,
    WatchStream,
    prefix_end,
)


def drain(s: WatchStream) -> list[WatchResponse]:
    out: list[WatchResponse] = []
    while (m := s.next_message()) is not None:
        out.append(m)
    return out


def events_of(msgs: list[WatchResponse], wid: int = 0) -> list[tuple[int, str, bytes]]:
    out = []
    for m in msgs:
        if m.watch_id == wid and m.events is not None:
            for e in m.events.events:
                assert m.events.first <= e.kv.mod_revision <= m.events.revision
                out.append((e.kv.mod_revision, e.type.name, e.kv.key))
    return out


def put(store: MVCCStore, key: bytes, value: bytes = b"v") -> int:
    return store.apply(PutRequest(key, value)).revision


def test_prefix_end() -> None:
    assert prefix_end(b"abc") == b"abd"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"


def test_index_matches_exactly_the_covering_watchers() -> None:
    rng = random.Random(5)
    store = MVCCStore()
    hub = WatchHub(store, max_pending=10_000)
    s = hub.open_stream()
    alphabet = [b"a", b"b", b"\xff", b"\x00"]

    def rkey(n: int = 3) -> bytes:
        return b"".join(rng.choice(alphabet) for _ in range(rng.randint(1, n)))

    specs: dict[int, tuple[bytes, bytes]] = {}
    for _ in range(200):
        kind = rng.randrange(4)
        key = rkey()
        end = {0: b"", 1: prefix_end(key), 2: b"\x00", 3: rkey()}[kind]
        if end and end != b"\x00" and end <= key:
            continue
        wid = s.create(WatchCreate(key, end))
        specs[wid] = (key, end)
    drain(s)
    assert hub.watchers == len(specs)

    def covers(k: bytes, key: bytes, end: bytes) -> bool:
        if not end:
            return k == key
        return key <= k and (end == b"\x00" or k < end)

    for _ in range(300):
        k = rkey(4)
        rev = put(store, k)
        got = {m.watch_id for m in drain(s)}
        want = {wid for wid, (key, end) in specs.items() if covers(k, key, end)}
        assert got == want, (k, rev)


def test_slow_watcher_catches_up_without_gaps_or_duplicates() -> None:
    store = MVCCStore()
    hub = WatchHub(store, max_pending=4, replay_batch=3)
    s = hub.open_stream()
    s.create(WatchCreate(b"k/", prefix_end(b"k/"), prev_kv=True))
    revs = []
    for i in range(50):
        revs.append(put(store, b"k/%d" % (i % 7), b"%d" % i))
        if i % 10 == 9:
            store.apply(DeleteRangeRequest(b"k/0"))
            revs.append(store.revision)
        if i == 25:  # drain part of the backlog in the middle
            msgs = drain(s)
    assert hub.slow_events > 0
    msgs += drain(s)
    assert [r for r, _, _ in events_of(msgs)] == revs
    # each prev_kv is the key's previous live version
    last: dict[bytes, bytes] = {}
    for m in msgs:
        if m.events is None:
            continue
        for e in m.events.events:
            prev = e.prev_kv.value if e.prev_kv is not None else None
            assert prev == last.get(e.kv.key), e
            if e.type is EventType.PUT:
                last[e.kv.key] = e.kv.value
            else:
                last.pop(e.kv.key, None)
    # back on the live feed
    r = put(store, b"k/x")
    assert events_of(drain(s)) == [(r, "PUT", b"k/x")]


def test_slow_watcher_cancel_policy() -> None:
    store = MVCCStore()
    hub = WatchHub(store, max_pending=3, slow="cancel")
    s = hub.open_stream()
    slow = s.create(WatchCreate(b"k"))
    other = s.create(WatchCreate(b"j"))
    for _ in range(5):
        put(store, b"k")
    msgs = drain(s)
    canceled = [m for m in msgs if m.canceled]
    assert len(canceled) == 1 and canceled[0].watch_id == slow
    assert "fell too far behind" in canceled[0].cancel_reason
    assert hub.watchers == 1 and other in s.watchers
    r = put(store, b"j")
    assert events_of(drain(s), other) == [(r, "PUT", b"j")]


def test_bytes_limit_also_counts() -> None:
    store = MVCCStore()
    hub = WatchHub(store, max_pending=1000, max_pending_bytes=10_000)
    s = hub.open_stream()
    s.create(WatchCreate(b"k"))
    revs = [put(store, b"k", b"x" * 3000) for _ in range(10)]
    assert hub.slow_events > 0
    assert [r for r, _, _ in events_of(drain(s))] == revs


def test_start_revision_replay_then_live_in_one_order() -> None:
    store = MVCCStore()
    early = [put(store, b"a%d" % i) for i in range(5)]
    hub = WatchHub(store)
    s = hub.open_stream()
    s.create(WatchCreate(b"a", b"b", start_revision=early[2]))
    late = put(store, b"a9")  # applied before the stream drains: replay must include it once
    msgs = drain(s)
    assert msgs[0].created
    assert [r for r, _, _ in events_of(msgs)] == [*early[2:], late]
    assert all(m.revision == late for m in msgs[1:])  # replay header = store revision


def test_restore_forward_replays_the_gap() -> None:
    store = MVCCStore()
    hub = WatchHub(store)
    s = hub.open_stream()
    s.create(WatchCreate(b"p", b"q"))
    r1 = put(store, b"p1")
    ahead = MVCCStore()
    ahead.restore(store.snapshot())
    gap = [put(ahead, b"p2"), put(ahead, b"x"), put(ahead, b"p3")]
    ahead.apply(TxnRequest(success=(PutRequest(b"p4"), DeleteRangeRequest(b"p1"))))
    gap.append(ahead.revision)
    store.restore(ahead.snapshot())  # a member catching up by snapshot
    hub.check()
    assert hub.resyncs == 1
    msgs = drain(s)
    got = events_of(msgs)
    assert got == [(r1, "PUT", b"p1"), (gap[0], "PUT", b"p2"), (gap[2], "PUT", b"p3"),
                   (gap[3], "PUT", b"p4"), (gap[3], "DELETE", b"p1")]
    r = put(store, b"p5")
    assert events_of(drain(s)) == [(r, "PUT", b"p5")]


def test_restore_noticed_by_the_next_apply() -> None:
    store = MVCCStore()
    hub = WatchHub(store)
    s = hub.open_stream()
    s.create(WatchCreate(b"k"))
    drain(s)
    ahead = MVCCStore()
    ahead.restore(store.snapshot())
    r1 = put(ahead, b"k", b"1")
    store.restore(ahead.snapshot())
    r2 = put(store, b"k", b"2")  # no check() call: the jump is seen here
    assert [r for r, _, _ in events_of(drain(s))] == [r1, r2]


def test_restore_past_a_compaction_cancels_with_compact_revision() -> None:
    store = MVCCStore()
    hub = WatchHub(store)
    s = hub.open_stream()
    wid = s.create(WatchCreate(b"k"))
    drain(s)
    ahead = MVCCStore()
    ahead.restore(store.snapshot())
    for _ in range(4):
        put(ahead, b"k")
    ahead.apply(CompactionRequest(ahead.revision - 1))
    store.restore(ahead.snapshot())
    hub.check()
    msgs = drain(s)
    assert len(msgs) == 1 and msgs[0].canceled and msgs[0].watch_id == wid
    assert msgs[0].compact_revision == ahead.revision - 1
    assert hub.watchers == 0


def test_state_moving_backwards_cancels_everything() -> None:
    store = MVCCStore()
    old = store.snapshot()
    hub = WatchHub(store)
    s = hub.open_stream()
    s.create(WatchCreate(b"k"))
    put(store, b"k")
    drain(s)
    store.restore(old)
    hub.check()
    msgs = drain(s)
    assert [m.canceled for m in msgs] == [True] and "moved back" in msgs[0].cancel_reason
    assert hub.watchers == 0


def test_compacted_start_and_negative_start() -> None:
    store = MVCCStore()
    for _ in range(5):
        put(store, b"k")
    store.apply(CompactionRequest(4))
    hub = WatchHub(store)
    s = hub.open_stream()
    wid = s.create(WatchCreate(b"k", start_revision=3))
    assert s.create(WatchCreate(b"k", start_revision=-5)) == STREAM_WATCH_ID
    msgs = drain(s)
    assert [(m.watch_id, m.revision, m.created, m.canceled, m.compact_revision,
             m.cancel_reason) for m in msgs] == [
        (wid, 6, True, False, 0, ""), (STREAM_WATCH_ID, 6, True, True, 0, REASON_COMPACTED),
        (wid, 0, False, True, 4, "")]


def test_multi_event_revision_is_split_per_watcher_with_filters() -> None:
    store = MVCCStore()
    put(store, b"a")
    hub = WatchHub(store)
    s = hub.open_stream()
    everything = s.create(WatchCreate(b"\x00", b"\x00"))
    no_delete = s.create(WatchCreate(b"a", b"c", filters=frozenset({FilterType.NODELETE})))
    only_b = s.create(WatchCreate(b"b"))
    drain(s)
    store.apply(TxnRequest(success=(PutRequest(b"b"), DeleteRangeRequest(b"a"),
                                    PutRequest(b"z"))))
    r = store.revision
    msgs = drain(s)
    assert len(msgs) == 3  # one response per watcher, each with its events of r
    assert events_of(msgs, everything) == [(r, "PUT", b"b"), (r, "DELETE", b"a"),
                                           (r, "PUT", b"z")]
    assert events_of(msgs, no_delete) == [(r, "PUT", b"b")]
    assert events_of(msgs, only_b) == [(r, "PUT", b"b")]
    full = next(m for m in msgs if m.watch_id == everything)
    assert full.events is not None and len(full.events.events) == 3


def test_progress_tick_and_request() -> None:
    store = MVCCStore()
    hub = WatchHub(store)
    s = hub.open_stream()
    busy = s.create(WatchCreate(b"busy", progress_notify=True))
    idle = s.create(WatchCreate(b"idle", progress_notify=True))
    quiet = s.create(WatchCreate(b"quiet"))
    drain(s)
    put(store, b"busy")
    drain(s)
    s.tick()
    msgs = drain(s)
    assert [(m.watch_id, m.revision, m.events) for m in msgs] == [(idle, 2, None)]
    s.tick()  # nothing sent since: both progress_notify watchers get one
    assert sorted(m.watch_id for m in drain(s)) == [busy, idle]
    assert quiet in s.watchers
    # a progress request waits for unsynced watchers to catch up
    put(store, b"quiet")
    s.create(WatchCreate(b"quiet", start_revision=1))
    s.request_progress()
    msgs = drain(s)
    assert msgs[-1].watch_id == STREAM_WATCH_ID and msgs[-1].revision == store.revision
    assert sum(1 for m in msgs if m.events is not None) == 2  # live + replayed


def test_cancel_drops_pending_and_close_unregisters() -> None:
    store = MVCCStore()
    hub = WatchHub(store)
    s = hub.open_stream()
    wid = s.create(WatchCreate(b"k"))
    put(store, b"k")
    assert s.cancel(wid) and not s.cancel(wid)
    msgs = drain(s)
    assert [(m.created, m.canceled, m.events) for m in msgs] == [(True, False, None),
                                                                 (False, True, None)]
    s.create(WatchCreate(b"k"))
    s2 = hub.open_stream()
    s2.create(WatchCreate(b"k", b"l"))
    assert hub.watchers == 2
    s.close()
    s2.close()
    assert hub.watchers == 0
    put(store, b"k")  # no watcher left to touch
    hub.close()
    assert store.event_sink is None


def test_watchers_that_fell_behind_together_share_the_replay() -> None:
    store = MVCCStore()
    hub = WatchHub(store, max_pending=2, replay_batch=4)
    s = hub.open_stream()
    a = s.create(WatchCreate(b"k"))
    b = s.create(WatchCreate(b"k"))
    nodel = s.create(WatchCreate(b"k", filters=frozenset({FilterType.NODELETE})))
    revs = [put(store, b"k", b"%d" % i) for i in range(10)]
    msgs = [m for m in drain(s) if m.events is not None]
    for wid in (a, b, nodel):
        assert [r for r, _, _ in events_of(msgs, wid)] == revs
    by_watcher: dict[int, list[int]] = {}
    for m in msgs:
        assert m.events is not None
        by_watcher.setdefault(m.watch_id, []).append(id(m.events))
    assert by_watcher[a] == by_watcher[b]  # the same Batch objects: one scan, one encoding
    assert not set(by_watcher[nodel]) & set(by_watcher[a])  # other filters: its own
