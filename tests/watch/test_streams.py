"""Recorded streams under a random workload, and many watchers on one member."""

from __future__ import annotations

import asyncio
import random
from typing import Any

from raftnode.mvcc.messages import PutRequest
from tests.watch.checker import Recorder, check, seen_from_results
from tests.watch.conftest import RawWatch, WGw, b64
from tests.watch.test_http import create


async def _collect_until_progress(w: RawWatch) -> list[dict[str, Any]]:
    """Every result up to the answer to a progress request (revision = all delivered)."""
    await w.send({"progress_request": {}})
    out: list[dict[str, Any]] = []
    while True:
        r = await w.result(10)
        if r.get("watch_id") == "-1" and "events" not in r and "created" not in r:
            out.append(r)
            return out
        out.append(r)


async def _random_op(gw: WGw, rng: random.Random, keys: list[str]) -> None:
    k = rng.choice(keys)
    roll = rng.random()
    if roll < 0.55:
        await gw.put(k, f"{rng.randrange(1000)}")
    elif roll < 0.7:
        await gw.delete(k)
    elif roll < 0.8:
        await gw.delete("a", "b")  # a range delete: many events in one revision
    else:
        ks = rng.sample(keys, 3)
        ops = [{"request_put": {"key": b64(ks[0]), "value": b64("t")}},
               {"request_delete_range": {"key": b64(ks[1])}},
               {"request_put": {"key": b64(ks[2]), "value": b64("u")}}]
        await gw.post("/v3/kv/txn", {"success": ops})


async def test_recorded_streams_are_ordered_complete_and_exact(make_gw: Any) -> None:
    gw: WGw = await make_gw(max_pending=8, replay_batch=5)  # small: exercise catch-up
    rec = Recorder(gw.service.store)
    rng = random.Random(11)
    keys = ["a1", "a2", "a3", "a/x", "a/y", "b1", "b2", "c"]
    for _ in range(40):
        await _random_op(gw, rng, keys)
    specs: list[tuple[str, str, dict[str, Any]]] = [("a", "b", {}), ("a/", "a0", {"prev_kv": True}), ("b1", "", {"prev_kv": True}),
             ("\0", "\0", {"prev_kv": True, "filters": ["NOPUT"]}), ("b", "\0", {})]
    starts = [5, 1, 0, 17, 30]
    w = await gw.watch(*[create(k, range_end=e, start_revision=s, **kw) if e else
                         create(k, start_revision=s, **kw)
                         for (k, e, kw), s in zip(specs, starts)])
    created_at: list[int] = []
    for _ in specs:
        r = await w.result()
        assert r["created"] is True
        created_at.append(int(r["header"]["revision"]))
    results: list[dict[str, Any]] = []
    for i in range(160):
        await _random_op(gw, rng, keys)
        if i % 40 == 20:
            # a burst applied with no chance for the stream to drain in between: the
            # watchers' queues overflow and they must catch up from history
            for j in range(30):
                gw.service.store.apply(PutRequest(rng.choice(keys).encode(), b"%d" % j))
        if i % 40 == 39:  # a slow reader: let the queue overflow, then drain
            results += await _collect_until_progress(w)
    results += await _collect_until_progress(w)
    final = int(results[-1]["header"]["revision"])
    assert final == gw.service.store.revision
    assert gw.hub.slow_events > 0, "the workload never made a watcher fall behind"
    for i, ((key, end, kw), start) in enumerate(zip(specs, starts)):
        first = start or created_at[i] + 1
        filters = frozenset(kw.get("filters", []))
        want = rec.expected(key.encode(), end.encode(), first, final, filters)
        seen = seen_from_results(results, str(i))
        if not kw.get("prev_kv"):
            want = [(r, t, k, v, None) for r, t, k, v, _ in want]
        assert want, f"watcher {i} expected nothing: a vacuous check"
        check(seen, want)


async def test_a_thousand_watchers_on_one_member(gw: WGw) -> None:
    streams = []
    for _ in range(10):
        w = await gw.watch(*[create("hot/", range_end="hot0") if i % 2 else create("hot/k")
                             for i in range(100)])
        streams.append(w)
    for w in streams:
        for _ in range(100):
            assert (await w.result())["created"] is True
    assert gw.hub.watchers == 1000
    revs = [await gw.put("hot/k", str(i)) for i in range(20)]

    async def drain(w: RawWatch) -> dict[str, list[int]]:
        got: dict[str, list[int]] = {}
        for _ in range(100 * 20):
            r = await w.result(10)
            got.setdefault(r.get("watch_id", "0"), []).append(
                int(r["events"][0]["kv"]["mod_revision"]))
        return got

    for got in await asyncio.gather(*(drain(w) for w in streams)):
        assert len(got) == 100 and all(v == revs for v in got.values())
    for w in streams:
        await w.close()
    deadline = asyncio.get_running_loop().time() + 5
    while gw.hub.watchers and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.05)
    assert gw.hub.watchers == 0
