"""The watch hub: every watcher of one member, fed from the member's applied state.

One hub per member hooks the MVCC store's ``event_sink`` (called on apply, on every
member). Watchers are indexed so that a change to key K touches only the watchers that
cover K: an exact-key dict, a prefix dict probed with K's prefixes of the lengths in use,
and a short list of the remaining (non-prefix) ranges. Delivery is synchronous and
allocation-light: a matching watcher gets a reference to a shared :class:`Batch` appended
to its queue; JSON is produced later, once per batch, by whoever drains the stream.

A watcher is *synced* (fed live by the sink) or *unsynced* (behind: its next revision is
``next_rev``, and the stream's drain replays it from the store's history, then rejoins the
live feed in the same synchronous step, so nothing is missed or repeated). Watchers start
unsynced when asked for a past revision, become unsynced when their queue overflows
(etcd's "slow watcher"; or are canceled, by policy), and all become unsynced when the
store's revision jumps under the hub (a snapshot restore): history replay covers the gap,
and a watcher whose next revision was compacted is canceled with ``compact_revision``.

Everything runs on one thread (the event loop that applies); nothing here awaits.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from typing import Literal

from raftnode.mvcc.errors import ErrCompacted
from raftnode.mvcc.messages import Event, EventType
from raftnode.mvcc.store import MVCCStore

REASON_EMPTY_RANGE = "mvcc: watcher range is empty"
REASON_DUPLICATE_ID = "mvcc: duplicate watch ID provided on the WatchStream"
REASON_COMPACTED = "mvcc: required revision has been compacted"
REASON_REWOUND = "raftnode: member state moved back to revision {to} (was {was}); rewatch"
REASON_SLOW = "raftnode: watcher fell too far behind ({n} responses, {b} bytes pending)"

#: watch_id of a response that is about the stream, not a watcher (etcd's InvalidWatchID)
STREAM_WATCH_ID = -1

#: etcd's default progress_notify interval (``progressReportInterval``, 10 minutes)
DEFAULT_PROGRESS_INTERVAL = 600.0

SlowPolicy = Literal["catchup", "cancel"]


class FilterType(IntEnum):
    NOPUT = 0
    NODELETE = 1


@dataclass(slots=True, frozen=True)
class WatchCreate:
    """A decoded ``create_request``: ``range_end`` as etcd's gateway sends it (empty = one
    key, ``b"\\0"`` = every key >= ``key``)."""

    key: bytes
    range_end: bytes = b""
    start_revision: int = 0
    progress_notify: bool = False
    filters: frozenset[FilterType] = frozenset()
    prev_kv: bool = False
    watch_id: int = 0


class Batch:
    """Events for one or more watchers (shared, never mutated): those of one revision when
    live, of consecutive revisions when replayed from history. ``revision`` is the last
    one; ``header_rev`` is the header revision to report: the event revision when live,
    the store's revision at replay time when replayed (as etcd does)."""

    __slots__ = ("events", "first", "header_rev", "json", "revision", "size")

    def __init__(self, revision: int, events: list[Event], header_rev: int) -> None:
        assert events, "an empty batch"
        self.revision = revision
        self.first = events[0].kv.mod_revision
        self.events = events
        self.header_rev = header_rev
        self.json: list[bytes | None] = [None, None]  # encoded events without/with prev_kv
        size = 0
        for ev in events:
            kv, prev = ev.kv, ev.prev_kv
            size += 64 + len(kv.key) + len(kv.value) + (len(prev.value) if prev else 0)
        self.size = size


@dataclass(slots=True)
class WatchResponse:
    """One message of a watch stream, before JSON (see raftnode.watch.stream)."""

    watch_id: int
    revision: int
    events: Batch | None = None
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    prev_kv: bool = False


class Watcher:
    """One watch. Lives in exactly one index of its hub while active."""

    __slots__ = ("canceled", "filters", "id", "key", "min_rev", "n_bytes", "next_rev",
                 "pending", "prev_kv", "progress_notify", "range_end", "ready", "sent",
                 "stream", "synced")

    def __init__(self, stream: WatchStream, watch_id: int, req: WatchCreate,
                 key: bytes, range_end: bytes) -> None:
        self.stream = stream
        self.id = watch_id
        self.key = key
        self.range_end = range_end
        self.prev_kv = req.prev_kv
        self.progress_notify = req.progress_notify
        self.filters = req.filters
        self.synced = True
        self.canceled = False
        self.min_rev = 0       # live events below it are skipped (a future start_revision)
        self.next_rev = 0      # when unsynced: the first revision not yet queued
        self.pending: deque[Batch] = deque()
        self.n_bytes = 0
        self.ready = False     # in its stream's ready queue
        self.sent = False      # events went out since the last progress tick

    def wants(self, ev: Event) -> bool:
        f = self.filters
        if not f:
            return True
        bad = FilterType.NOPUT if ev.type is EventType.PUT else FilterType.NODELETE
        return bad not in f


def prefix_end(key: bytes) -> bytes:
    """etcd's GetPrefixRangeEnd: the smallest key greater than every key with this prefix
    (``b"\\0"``, i.e. no end, when the key is all 0xff)."""
    b = bytearray(key)
    while b and b[-1] == 0xFF:
        b.pop()
    if not b:
        return b"\x00"
    b[-1] += 1
    return bytes(b)


class WatchHub:
    """The watchers of one member; see the module docstring."""

    def __init__(self, store: MVCCStore, *, max_pending: int = 1024,
                 max_pending_bytes: int = 8 << 20, slow: SlowPolicy = "catchup",
                 replay_batch: int = 512, max_control: int = 4096,
                 progress_interval: float = DEFAULT_PROGRESS_INTERVAL) -> None:
        assert store.event_sink is None, "the store already feeds another hub"
        assert max_pending > 0 and max_pending_bytes > 0 and replay_batch > 0
        self.store = store
        self.max_pending = max_pending
        self.max_pending_bytes = max_pending_bytes
        self.slow: SlowPolicy = slow
        self.replay_batch = replay_batch
        self.max_control = max_control
        #: seconds between progress notifications to progress_notify watchers
        self.progress_interval = progress_interval
        self._rev = store.revision
        self._exact: dict[bytes, set[Watcher]] = {}
        self._prefix: dict[bytes, set[Watcher]] = {}
        self._prefix_lens: dict[int, int] = {}  # prefix length -> watchers using it
        self._ranges: dict[tuple[bytes, bytes], set[Watcher]] = {}
        self._streams: set[WatchStream] = set()
        self._doomed: list[tuple[Watcher, str]] = []  # canceled once delivery is done
        # replay steps computed at (revision, compact revision) _replay_at, shared by alike
        # watchers
        self._replay_cache: dict[tuple[bytes, bytes, int, frozenset[FilterType]],
                                 tuple[Batch | None, int]] = {}
        self._replay_at = (-1, -1)
        self.watchers = 0
        #: counters for metrics and tests
        self.slow_events = 0
        self.resyncs = 0
        store.event_sink = self._on_apply

    def close_streams(self) -> None:
        """End every stream (server shutdown): their writers wake up and finish."""
        for s in list(self._streams):
            s.close()

    def close(self) -> None:
        """End every stream and detach from the store."""
        self.close_streams()
        if self.store.event_sink == self._on_apply:
            self.store.event_sink = None

    def open_stream(self, wake: Callable[[], None] | None = None) -> WatchStream:
        """A new watch stream; ``wake`` is called when it has something to send."""
        s = WatchStream(self, wake)
        self._streams.add(s)
        return s

    @property
    def revision(self) -> int:
        """The last revision the hub has seen applied."""
        return self._rev

    # ------------------------------------------------------------------ index

    def _index_of(self, w: Watcher) -> tuple[dict[bytes, set[Watcher]] | None, bytes]:
        if not w.range_end:
            return self._exact, w.key
        if w.range_end != b"\x00" and prefix_end(w.key) == w.range_end:
            return self._prefix, w.key
        return None, b""

    def _add(self, w: Watcher) -> None:
        idx, k = self._index_of(w)
        if idx is None:
            self._ranges.setdefault((w.key, w.range_end), set()).add(w)
        else:
            idx.setdefault(k, set()).add(w)
            if idx is self._prefix:
                n = len(k)
                self._prefix_lens[n] = self._prefix_lens.get(n, 0) + 1
        self.watchers += 1

    def _remove(self, w: Watcher) -> None:
        idx, k = self._index_of(w)
        if idx is None:
            idx2: dict[tuple[bytes, bytes], set[Watcher]] = self._ranges
            ws = idx2[(w.key, w.range_end)]
            ws.discard(w)
            if not ws:
                del idx2[(w.key, w.range_end)]
        else:
            ws = idx[k]
            ws.discard(w)
            if not ws:
                del idx[k]
            if idx is self._prefix:
                n = len(k)
                left = self._prefix_lens[n] - 1
                if left:
                    self._prefix_lens[n] = left
                else:
                    del self._prefix_lens[n]
        self.watchers -= 1

    def _match(self, key: bytes) -> Iterator[set[Watcher]]:
        ws = self._exact.get(key)
        if ws:
            yield ws
        if self._prefix_lens:
            n = len(key)
            prefix = self._prefix
            for length in self._prefix_lens:
                if length <= n:
                    ws = prefix.get(key[:length])
                    if ws:
                        yield ws
        for (start, end), ws in self._ranges.items():
            if start <= key and (end == b"\x00" or key < end):
                yield ws

    # ------------------------------------------------------------------ feed

    def _on_apply(self, rev: int, events: list[Event]) -> None:
        """The store's event sink: one call per applied revision that changed keys."""
        if rev != self._rev + 1:
            self._jumped(rev - 1)
        self._rev = rev
        if not self.watchers:
            return
        if len(events) == 1:
            ev = events[0]
            batch: Batch | None = None
            for ws in self._match(ev.kv.key):
                for w in ws:
                    if w.synced and rev >= w.min_rev and w.wants(ev):
                        if batch is None:
                            batch = Batch(rev, events, rev)
                        self._push(w, batch)
        else:
            self._deliver_many(rev, events)
        if self._doomed:  # not while iterating the index sets it changes
            doomed, self._doomed = self._doomed, []
            for w, reason in doomed:
                if not w.canceled:
                    w.stream._cancel(w, reason=reason)

    def _deliver_many(self, rev: int, events: list[Event]) -> None:
        """A revision with several events (txn, lease revoke): each watcher gets the
        events it covers, in operation order, in one response."""
        per: dict[Watcher, list[Event]] = {}
        for ev in events:
            for ws in self._match(ev.kv.key):
                for w in ws:
                    if w.synced and rev >= w.min_rev and w.wants(ev):
                        got = per.get(w)
                        if got is None:
                            per[w] = [ev]
                        else:
                            got.append(ev)
        full: Batch | None = None
        for w, evs in per.items():
            if len(evs) == len(events):
                if full is None:
                    full = Batch(rev, events, rev)
                self._push(w, full)
            else:
                self._push(w, Batch(rev, evs, rev))

    def _push(self, w: Watcher, batch: Batch) -> None:
        w.pending.append(batch)
        w.n_bytes += batch.size
        if len(w.pending) > self.max_pending or w.n_bytes > self.max_pending_bytes:
            self._overflow(w)
            return
        w.stream._ready(w)

    def _overflow(self, w: Watcher) -> None:
        self.slow_events += 1
        n, b = len(w.pending), w.n_bytes
        if self.slow == "cancel":
            w.synced = False  # no more live events; canceled after this delivery
            w.stream._unsynced += 1
            self._doomed.append((w, REASON_SLOW.format(n=n, b=b)))
            return
        first = w.pending[0].first
        w.pending.clear()
        w.n_bytes = 0
        w.stream._unsync(w, first)

    def _jumped(self, seen: int) -> None:
        """The store is at ``seen`` but the hub last saw ``self._rev``: a restore."""
        self.resyncs += 1
        was = self._rev
        if seen < was:
            for s in list(self._streams):
                for w in list(s.watchers.values()):
                    s._cancel(w, reason=REASON_REWOUND.format(to=seen, was=was))
            return
        for s in self._streams:
            for w in s.watchers.values():
                if w.synced:
                    s._unsync(w, max(was + 1, w.min_rev))

    def check(self) -> None:
        """Notice a restore done without a following apply (cheap; streams call it when
        they wake). The node may also call it right after restoring a snapshot."""
        cur = self.store.revision
        if cur != self._rev:
            self._jumped(cur)
            self._rev = cur

    on_restore = check

    # ---------------------------------------------------------------- replay

    def _replay(self, w: Watcher) -> None:
        """Queue up to ``replay_batch`` events of w's history; rejoin the live feed when
        caught up. Synchronous: the store cannot move between reading and rejoining."""
        self.check()
        if w.synced or w.canceled:
            return
        store = self.store
        cur = store.revision
        assert cur == self._rev, "hub and store disagree after check()"
        at = (cur, store.compact_revision)  # what the cached steps were computed against
        if self._replay_at != at:
            self._replay_cache.clear()
            self._replay_at = at
        ck = (w.key, w.range_end, w.next_rev, w.filters)
        step = self._replay_cache.get(ck)
        if step is None:
            try:
                step = self._replay_step(w, cur)
            except ErrCompacted:
                w.stream._cancel(w, compact_revision=store.compact_revision)
                return
            if len(self._replay_cache) < 1024:
                self._replay_cache[ck] = step
        batch, next_rev = step
        if batch is not None:
            assert not w.pending or w.pending[-1].revision < batch.first, "replay out of order"
            w.pending.append(batch)
            w.n_bytes += batch.size
            w.stream._ready(w)
        if next_rev:
            w.next_rev = next_rev
            w.stream._ready(w)
        else:
            w.stream._resync(w)

    def _replay_step(self, w: Watcher, cur: int) -> tuple[Batch | None, int]:
        """The next replay response for a watcher like w (shared by every watcher with the
        same range, filters and next revision: a fan-out that fell behind together catches
        up together, with one history scan and one JSON encoding), and the revision to
        continue from (0: caught up). Like etcd's syncWatchers, one response holds several
        revisions (never a partial one), about ``replay_batch`` events at most."""
        evs = self.store.events_since(w.key, w.range_end, w.next_rev)
        group: list[Event] = []
        i, n = 0, len(evs)
        while i < n:
            r = evs[i].kv.mod_revision
            j = i + 1
            while j < n and evs[j].kv.mod_revision == r:
                j += 1
            if len(group) >= self.replay_batch:
                return Batch(group[-1].kv.mod_revision, group, cur), r
            group.extend(e for e in evs[i:j] if w.wants(e))
            i = j
        return (Batch(group[-1].kv.mod_revision, group, cur) if group else None), 0


class WatchStream:
    """The watchers of one client stream, and its outgoing messages in order.

    ``create``/``cancel``/``request_progress`` are the client's requests; ``next_message``
    pops what to send next (``None``: nothing now, wait for ``wake``); ``tick`` sends the
    periodic progress notifications."""

    def __init__(self, hub: WatchHub, wake: Callable[[], None] | None) -> None:
        self.hub = hub
        self.watchers: dict[int, Watcher] = {}
        self.control: deque[WatchResponse] = deque()
        self._ready_q: deque[Watcher] = deque()
        self._wake = wake
        self._next_id = 0
        self._unsynced = 0
        self._progress_wanted = False
        self.closed = False

    # ---------------------------------------------------------- client requests

    def create(self, req: WatchCreate) -> int:
        """Create a watcher; queue its created response. Return its ID (-1 if refused)."""
        hub = self.hub
        hub.check()
        cur = hub.store.revision
        key = req.key or b"\x00"
        end = req.range_end
        if end and end != b"\x00" and end <= key:
            return self._refuse(REASON_EMPTY_RANGE, cur)
        if req.start_revision < 0:
            return self._refuse(REASON_COMPACTED, cur)
        wid = req.watch_id
        if wid == 0:
            while self._next_id in self.watchers:
                self._next_id += 1
            wid = self._next_id
            self._next_id += 1
        elif wid in self.watchers:
            return self._refuse(REASON_DUPLICATE_ID, cur)
        w = Watcher(self, wid, req, key, end)
        self.watchers[wid] = w
        self._send(WatchResponse(wid, cur, created=True))
        start = req.start_revision
        hub._add(w)
        if start == 0 or start > cur:
            w.min_rev = max(start, cur + 1)
        else:
            w.synced = False
            w.next_rev = start
            self._unsynced += 1
            self._ready(w)
        return wid

    def _refuse(self, reason: str, cur: int) -> int:
        self._send(WatchResponse(STREAM_WATCH_ID, cur, created=True, canceled=True,
                                 cancel_reason=reason))
        return STREAM_WATCH_ID

    def cancel(self, watch_id: int) -> bool:
        """Cancel a watcher at the client's request; unknown IDs are ignored (as etcd)."""
        w = self.watchers.get(watch_id)
        if w is None:
            return False
        self._cancel(w)
        return True

    def request_progress(self) -> None:
        """Answer with the current revision once every watcher is synced and drained."""
        self._progress_wanted = True
        self._notify()

    def close(self) -> None:
        """The client went away: drop every watcher."""
        if self.closed:
            return
        self.closed = True
        for w in list(self.watchers.values()):
            self._drop(w)
        self.control.clear()
        self._ready_q.clear()
        self.hub._streams.discard(self)
        self._notify()

    # ------------------------------------------------------------- draining

    def next_message(self) -> WatchResponse | None:
        """The next message to send, or None. Per watcher: created, then its events in
        revision order, each revision once; progress only after what it vouches for."""
        if self.control:
            return self.control.popleft()
        ready = self._ready_q
        while ready:
            w = ready[0]
            if w.canceled:
                ready.popleft()
                w.ready = False
                continue
            if w.pending:
                batch = w.pending.popleft()
                w.n_bytes -= batch.size
                if w.pending:
                    ready.rotate(-1)  # round robin between the stream's watchers
                elif w.synced:
                    ready.popleft()
                    w.ready = False
                w.sent = True
                return WatchResponse(w.id, batch.header_rev, batch, prev_kv=w.prev_kv)
            if not w.synced:
                self.hub._replay(w)
                if self.control:  # the replay canceled it (compacted)
                    return self.control.popleft()
                continue
            ready.popleft()
            w.ready = False
        if self._progress_wanted and not self._unsynced:
            self._progress_wanted = False
            return WatchResponse(STREAM_WATCH_ID, self.hub.revision)
        return None

    def tick(self) -> None:
        """A progress interval passed: a header-only response to each progress_notify
        watcher that is synced, drained, and sent nothing since the last tick."""
        self.hub.check()
        rev = self.hub.revision
        for w in self.watchers.values():
            if w.progress_notify and not w.sent and w.synced and not w.pending:
                self.control.append(WatchResponse(w.id, rev))
            w.sent = False
        if self.control:
            self._notify()

    @property
    def control_full(self) -> bool:
        return len(self.control) >= self.hub.max_control

    # ------------------------------------------------------------- internals

    def _notify(self) -> None:
        if self._wake is not None:
            self._wake()

    def _send(self, resp: WatchResponse) -> None:
        self.control.append(resp)
        self._notify()

    def _ready(self, w: Watcher) -> None:
        if not w.ready:
            w.ready = True
            self._ready_q.append(w)
            if len(self._ready_q) == 1:
                self._notify()

    def _unsync(self, w: Watcher, next_rev: int) -> None:
        if w.synced:
            w.synced = False
            self._unsynced += 1
        w.next_rev = next_rev
        self._ready(w)
        self._notify()

    def _resync(self, w: Watcher) -> None:
        if not w.synced:
            w.synced = True
            self._unsynced -= 1

    def _drop(self, w: Watcher) -> None:
        w.canceled = True
        if not w.synced:
            self._unsynced -= 1
            w.synced = True
        w.pending.clear()
        w.n_bytes = 0
        del self.watchers[w.id]
        self.hub._remove(w)

    def _cancel(self, w: Watcher, *, compact_revision: int = 0, reason: str = "") -> None:
        self._drop(w)
        # etcd's compaction cancel comes from the store with no revision (0: omitted)
        rev = 0 if compact_revision else self.hub.store.revision
        self._send(WatchResponse(w.id, rev, canceled=True, compact_revision=compact_revision,
                                 cancel_reason=reason))
