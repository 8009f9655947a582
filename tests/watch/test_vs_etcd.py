"""The same watch streams against a real etcd (Debian's etcd-server, 3.4) and against us:
every message compared field by field (member/cluster IDs and raft term aside), chunk by
chunk. Cross-watcher interleaving is not specified, so messages are compared per watcher.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.etcd_single import ETCD, HAVE_ETCD, single_etcd
from tests.watch.conftest import RawWatch, WGw, b64
from tests.watch.test_http import create

pytestmark = pytest.mark.skipif(not HAVE_ETCD,
                                reason=f"no etcd binary at {ETCD} (apt install etcd-server)")
IDS = ("cluster_id", "member_id", "raft_term")


class Target:
    def __init__(self, url: str, session: aiohttp.ClientSession) -> None:
        self.url = url
        self.port = int(url.rsplit(":", 1)[1])
        self.session = session
        self.streams: list[RawWatch] = []

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        async with self.session.post(self.url + path, data=orjson.dumps(body)) as r:
            out: dict[str, Any] = orjson.loads(await r.read())
            assert r.status == 200, out
            return out

    async def put(self, key: str, value: str) -> None:
        await self.post("/v3/kv/put", {"key": b64(key), "value": b64(value)})

    async def watch(self, *objs: Any) -> RawWatch:
        # etcd (Go net/http, HTTP/1.1) answers only once the request body is complete
        w = await RawWatch.open(self.port, *objs, close_body=True)
        self.streams.append(w)
        return w


@pytest.fixture
async def etcd(tmp_path: Path) -> AsyncIterator[Target]:
    async with single_etcd(tmp_path) as curl, aiohttp.ClientSession() as s:
        t = Target(curl, s)
        yield t
        for w in t.streams:
            await w.close()


@pytest.fixture
async def ours(gw: WGw) -> AsyncIterator[Target]:
    t = Target(gw.url, gw.session)
    yield t
    for w in t.streams:  # open streams would hold the server's shutdown for its full timeout
        await w.close()


def _norm(msg: dict[str, Any]) -> dict[str, Any]:
    r = dict(msg["result"])
    r["header"] = {k: v for k, v in r["header"].items() if k not in IDS}
    return r


async def _run(t: Target, scenario: Callable[[Target], Awaitable[list[tuple[RawWatch, int]]]]
               ) -> dict[str, list[dict[str, Any]]]:
    """Run a scenario; it returns (stream, messages to read); group them per watcher."""
    out: dict[str, list[dict[str, Any]]] = {}
    for i, (w, n) in enumerate(await scenario(t)):
        for _ in range(n):
            r = _norm(await w.msg())
            out.setdefault(f"{i}/{r.get('watch_id', '0')}", []).append(r)
        await w.silent(0.2)
    return out


async def live_prev_kv_and_filters(t: Target) -> list[tuple[RawWatch, int]]:
    await t.put("foo", "0")
    w = await t.watch(create("foo", prev_kv=True), create("foo", filters=["NOPUT"]),
                      create("f", range_end="g"))
    await asyncio.sleep(1.0)  # let the member register the watches (etcd: after body EOF)
    await t.put("foo", "1")
    await t.put("fz", "2")
    await t.post("/v3/kv/deleterange", {"key": b64("foo")})
    return [(w, 3 + 2 + 3 + 1)]


async def history_and_txn(t: Target) -> list[tuple[RawWatch, int]]:
    for i in range(3):
        await t.put(f"h/{i}", str(i))
    await t.post("/v3/kv/txn", {"success": [
        {"request_put": {"key": b64("h/9"), "value": b64("t")}},
        {"request_delete_range": {"key": b64("h/0")}}]})
    w = await t.watch(create("h/", range_end="h0", start_revision=3, prev_kv=True))
    await asyncio.sleep(1.0)  # let the member register the watches (etcd: after body EOF)
    await t.post("/v3/kv/txn", {"success": [
        {"request_put": {"key": b64("h/1"), "value": b64("x")}},
        {"request_put": {"key": b64("h/2"), "value": b64("y")}}]})
    return [(w, 3)]


async def refusals_cancel_progress(t: Target) -> list[tuple[RawWatch, int]]:
    await t.put("a", "1")
    w = await t.watch(create("a", watch_id=2), create("a", watch_id=2), create("b", range_end="a"),
                      create("a"), {"progress_request": {}}, {"cancel_request": {"watch_id": 2}},
                      {"cancel_request": {"watch_id": 42}})
    await asyncio.sleep(1.0)  # let the member register the watches (etcd: after body EOF)
    await t.put("a", "2")
    return [(w, 4 + 1 + 1 + 1)]


async def compacted(t: Target) -> list[tuple[RawWatch, int]]:
    for i in range(4):
        await t.put("c", str(i))
    await t.post("/v3/kv/compaction", {"revision": 4})
    w1 = await t.watch(create("c", start_revision=2))
    w2 = await t.watch(create("c", start_revision=4))
    return [(w1, 2), (w2, 2)]


@pytest.mark.parametrize("scenario", [live_prev_kv_and_filters, history_and_txn,
                                      refusals_cancel_progress, compacted])
async def test_same_stream_as_etcd(etcd: Target, ours: Target, scenario: Any) -> None:
    theirs = await _run(etcd, scenario)
    mine = await _run(ours, scenario)
    assert mine == theirs
