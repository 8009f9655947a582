"""Watch fan-out on one member: many watchers, a stream of updates, memory and latency.

    python -m bench.watch_bench            # 10,000 watchers x 1,000 updates
    BENCH_QUICK=1 python -m bench.watch_bench   # 2,000 x 100 (< 30 s)

In-process, on purpose: it measures the hub and the stream encoding (what a member does
per update and per watcher), without a client competing for the same two cores. It
imports raftnode (unlike the black-box benches) because tracemalloc must see the hub.

Phases:
1. idle memory: tracemalloc of registering the watchers (100 per stream);
2. live delivery: each update is applied to the store (the sink feeds the hub), then every
   stream is drained and each message encoded to its wire bytes, as the HTTP writer does;
   latency = apply start -> that watcher's message encoded. Every watcher must receive
   every update exactly once (checked);
3. slow readers: nobody drains while all updates are applied; queues are bounded
   (``max_pending``), overflowing watchers fall back to history replay; memory peak, then
   the time to drain everything (checked complete and in order again).
"""

from __future__ import annotations

import gc
import time
import tracemalloc
from dataclasses import dataclass

import orjson

from bench.common import md_table, quick
from raftnode.api.codec import header_json
from raftnode.api.service import ResponseHeader
from raftnode.mvcc.messages import PutRequest
from raftnode.mvcc.store import MVCCStore
from raftnode.watch.codec import encode
from raftnode.watch.hub import WatchCreate, WatchHub, WatchStream, prefix_end

PER_STREAM = 100


@dataclass
class Result:
    watchers: int
    updates: int
    idle_bytes_per_watcher: float
    deliveries_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    slow_peak_mb: float
    slow_drain_s: float
    slow_overflows: int


def _setup(n: int, max_pending: int) -> tuple[MVCCStore, WatchHub, list[WatchStream]]:
    store = MVCCStore()
    hub = WatchHub(store, max_pending=max_pending)
    streams = []
    for i in range(0, n, PER_STREAM):
        s = hub.open_stream()
        for j in range(min(PER_STREAM, n - i)):
            if j % 2:
                s.create(WatchCreate(b"/registry/pods/", prefix_end(b"/registry/pods/")))
            else:
                s.create(WatchCreate(b"/registry/pods/p1"))
        while s.next_message() is not None:  # the created responses
            pass
        streams.append(s)
    return store, hub, streams


def _pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000


def run(n: int, updates: int) -> Result:
    header = orjson.dumps(header_json(ResponseHeader(1, 2, 0, 3), 5))
    value = b"x" * 256

    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    store, hub, streams = _setup(n, 1024)
    idle = (tracemalloc.get_traced_memory()[0] - base) / n
    tracemalloc.stop()

    lat: list[float] = []
    stride = max(1, n * updates // 200_000)  # keep ~200k latency samples
    got = [0] * len(streams)
    k = 0
    t_start = time.perf_counter()
    for _ in range(updates):
        t0 = time.perf_counter()
        store.apply(PutRequest(b"/registry/pods/p1", value))
        for si, s in enumerate(streams):
            while (m := s.next_message()) is not None:
                encode(m, header)
                got[si] += 1
                k += 1
                if k % stride == 0:
                    lat.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - t_start
    assert sum(got) == n * updates, f"{sum(got)} deliveries, expected {n * updates}"
    lat.sort()

    # slow readers
    hub.close()
    del store, hub, streams
    gc.collect()
    store, hub, streams = _setup(n, max(16, updates // 4))
    first = store.revision + 1
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for _ in range(updates):
        store.apply(PutRequest(b"/registry/pods/p1", value))
    peak = (tracemalloc.get_traced_memory()[1] - base) / 1e6
    tracemalloc.stop()
    t0 = time.perf_counter()
    seen: dict[tuple[int, int], int] = {}
    for si, s in enumerate(streams):
        while (m := s.next_message()) is not None:
            assert m.events is not None
            for e in m.events.events:
                key = (si, m.watch_id)
                want = seen.get(key, first - 1) + 1
                assert e.kv.mod_revision == want, (key, e.kv.mod_revision, want)
                seen[key] = want
            encode(m, header)
    drain = time.perf_counter() - t0
    assert len(seen) == n and all(v == store.revision for v in seen.values())
    return Result(n, updates, idle, n * updates / elapsed, _pct(lat, 0.5), _pct(lat, 0.99),
                  lat[-1] * 1000, peak, drain, hub.slow_events)


def main() -> None:
    n, updates = (2_000, 100) if quick() else (10_000, 1_000)
    r = run(n, updates)
    print(f"### Watch fan-out on one member: {r.watchers} watchers x {r.updates} updates\n")
    print(f"{r.watchers // PER_STREAM} streams of {PER_STREAM} watchers, half on the key, half "
          "on its prefix; 256-byte values; in-process (hub + JSON encoding, no socket).\n")
    print(md_table(["measure", "value"], [
        ["idle memory per watcher", f"{r.idle_bytes_per_watcher:.0f} B"],
        ["live deliveries per second", f"{r.deliveries_per_s:,.0f}"],
        ["latency apply -> message encoded, p50", f"{r.p50_ms:.1f} ms"],
        ["latency apply -> message encoded, p99", f"{r.p99_ms:.1f} ms"],
        ["latency apply -> message encoded, max", f"{r.max_ms:.1f} ms"],
        [f"slow readers: memory peak, {r.updates} updates undrained", f"{r.slow_peak_mb:.1f} MB"],
        ["slow readers: overflows (-> history replay)", r.slow_overflows],
        ["slow readers: time to drain everything", f"{r.slow_drain_s:.1f} s"],
    ]))


if __name__ == "__main__":
    main()
