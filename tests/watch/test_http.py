"""``POST /v3/watch`` over real sockets: every case of the watch semantics, chunk by chunk."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestServer

from raftnode.api.local import LocalService
from raftnode.api.server import create_app
from raftnode.watch.hub import WatchHub
from tests.watch.conftest import RawWatch, WGw, b64, unb64


def b64d(s: str) -> str:
    return unb64(s).decode()


def create(key: str, **kw: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"key": b64(key)}
    for k, v in kw.items():
        body[k] = b64(v) if k == "range_end" else v
    return {"create_request": body}


def put_event(key: str, value: str, create_rev: int, mod_rev: int, version: int) -> dict[str, Any]:
    return {"kv": {"key": b64(key), "create_revision": str(create_rev),
                   "mod_revision": str(mod_rev), "version": str(version), "value": b64(value)}}


def del_event(key: str, rev: int) -> dict[str, Any]:
    return {"type": "DELETE", "kv": {"key": b64(key), "mod_revision": str(rev)}}


async def test_created_then_live_events(gw: WGw) -> None:
    r1 = await gw.put("foo", "old")
    w = await gw.watch(create("foo"))
    assert await w.result() == {"header": gw.header(r1), "created": True}
    assert w.status == 200 and w.headers["content-type"].startswith("application/json")
    assert w.headers["transfer-encoding"] == "chunked"
    r2 = await gw.put("foo", "new")
    await gw.put("other", "x")
    r3 = await gw.delete("foo")
    assert await w.result() == {"header": gw.header(r2),
                                "events": [put_event("foo", "new", r1, r2, 2)]}
    assert await w.result() == {"header": gw.header(r3), "events": [del_event("foo", r3)]}
    await w.silent()


async def test_stream_continues_after_request_body_eof(gw: WGw) -> None:
    w = await gw.watch(create("k"), close_body=True)
    assert (await w.result())["created"] is True
    rev = await gw.put("k", "v")
    assert (await w.result())["events"] == [put_event("k", "v", rev, rev, 1)]


async def test_ids_from_zero_per_stream_skipping_requested(gw: WGw) -> None:
    w = await gw.watch(create("a", watch_id=1), create("a"), create("a"), create("a", watch_id=7))
    ids = [(await w.result()).get("watch_id", "0") for _ in range(4)]
    assert ids == ["1", "0", "2", "7"]
    w2 = await gw.watch(create("a"))
    assert "watch_id" not in await w2.result()  # a new stream counts from 0 again
    rev = await gw.put("a")
    got = sorted([(await w.result()).get("watch_id", "0") for _ in range(4)])
    assert got == ["0", "1", "2", "7"]
    assert (await w2.result())["header"]["revision"] == str(rev)


async def test_duplicate_id_empty_range_and_negative_start_are_refused(gw: WGw) -> None:
    w = await gw.watch(create("a", watch_id=3), create("b", watch_id=3),
                       create("b", range_end="a"), create("b", range_end="b"),
                       create("a", start_revision=-1))
    hdr = gw.header(1)
    assert await w.result() == {"header": hdr, "watch_id": "3", "created": True}
    refused = [await w.result() for _ in range(4)]
    reasons = ["mvcc: duplicate watch ID provided on the WatchStream",
               "mvcc: watcher range is empty", "mvcc: watcher range is empty",
               "mvcc: required revision has been compacted"]
    assert refused == [{"header": hdr, "watch_id": "-1", "created": True, "canceled": True,
                        "cancel_reason": r} for r in reasons]
    assert gw.hub.watchers == 1


async def test_start_revision_replays_history_inclusive(gw: WGw) -> None:
    r1 = await gw.put("k", "1")
    r2 = await gw.put("k", "2")
    r3 = await gw.delete("k")
    w = await gw.watch(create("k", start_revision=r2, prev_kv=True))
    assert (await w.result())["created"] is True
    # replayed history comes in one response (a revision is never split), with the
    # current revision in its header, as etcd's does
    m = await w.result()
    assert m == {"header": gw.header(r3), "events": [
        {**put_event("k", "2", r1, r2, 2), "prev_kv": put_event("k", "1", r1, r1, 1)["kv"]},
        {**del_event("k", r3), "prev_kv": put_event("k", "2", r1, r2, 2)["kv"]}]}
    r4 = await gw.put("k", "4")
    m4 = await w.result()
    assert m4 == {"header": gw.header(r4), "events": [put_event("k", "4", r4, r4, 1)]}
    await w.silent()


async def test_future_start_revision_skips_earlier_events(gw: WGw) -> None:
    cur = gw.service.store.revision
    w = await gw.watch(create("k", start_revision=cur + 3))
    assert (await w.result())["header"]["revision"] == str(cur)
    await gw.put("k", "a")
    await gw.put("k", "b")
    r = await gw.put("k", "c")
    assert r == cur + 3
    assert (await w.result())["events"][0]["kv"]["mod_revision"] == str(r)


async def test_compacted_start_is_canceled_with_compact_revision(gw: WGw) -> None:
    for i in range(4):
        await gw.put("k", str(i))
    await gw.post("/v3/kv/compaction", {"revision": 4})
    w = await gw.watch(create("k", start_revision=2), create("k", start_revision=4))
    assert (await w.result())["created"] is True
    assert (await w.result())["created"] is True
    msgs = [await w.result(), await w.result()]
    canceled = [m for m in msgs if m.get("canceled")]
    # as etcd: no watch_id (0), no revision in the header, no reason
    assert canceled == [{"header": gw.header(0), "canceled": True, "compact_revision": "4"}]
    replay = [m for m in msgs if "events" in m]  # start == compact revision is allowed
    assert [e["kv"]["mod_revision"] for e in replay[0]["events"]] == ["4", "5"]
    assert replay[0]["watch_id"] == "1"
    assert gw.hub.watchers == 1


async def test_prev_kv_live(gw: WGw) -> None:
    w = await gw.watch(create("k", prev_kv=True))
    await w.result()
    r1 = await gw.put("k", "1")
    r2 = await gw.put("k", "2")
    r3 = await gw.delete("k")
    e1, e2, e3 = [(await w.result())["events"][0] for _ in range(3)]
    assert "prev_kv" not in e1  # a creation has none
    assert e2["prev_kv"] == put_event("k", "1", r1, r1, 1)["kv"]
    assert e3 == {**del_event("k", r3), "prev_kv": put_event("k", "2", r1, r2, 2)["kv"]}


async def test_filters(gw: WGw) -> None:
    w = await gw.watch(create("k", filters=["NOPUT"]), create("k", filters=[1]))
    await w.result()
    await w.result()
    r1 = await gw.put("k", "1")
    r = await gw.delete("k")
    msgs = {m.get("watch_id", "0"): m for m in [await w.result(), await w.result()]}
    assert msgs["0"] == {"header": gw.header(r), "events": [del_event("k", r)]}
    assert msgs["1"] == {"header": gw.header(r1), "watch_id": "1",
                         "events": [put_event("k", "1", r1, r1, 1)]}
    await w.silent()


async def test_ranges_prefixes_and_open_ends(gw: WGw) -> None:
    w = await gw.watch(create("b", range_end="d"), create("ab", range_end="ac"),
                       create("c", range_end="\0"), {"create_request": {"range_end": "AA=="}})
    for _ in range(4):
        await w.result()
    seen: dict[str, list[str]] = {"0": [], "1": [], "2": [], "3": []}
    for key in ["a", "ab", "abc", "b", "bz", "c", "d", "zz"]:
        await gw.put(key)
    await gw.put("end")
    for _ in range(3 + 2 + 4 + 9):
        m = await w.result()
        seen[m.get("watch_id", "0")] += [b64d(e["kv"]["key"]) for e in m["events"]]
    assert seen == {"0": ["b", "bz", "c"], "1": ["ab", "abc"],
                    "2": ["c", "d", "zz", "end"],
                    "3": ["a", "ab", "abc", "b", "bz", "c", "d", "zz", "end"]}


async def test_txn_events_arrive_in_one_response_in_op_order(gw: WGw) -> None:
    await gw.put("p/b", "old")
    w = await gw.watch(create("p/", range_end="p0"), create("p/b"))
    await w.result()
    await w.result()
    ops = [{"request_put": {"key": b64("p/c"), "value": b64("1")}},
           {"request_delete_range": {"key": b64("p/b")}},
           {"request_put": {"key": b64("p/a"), "value": b64("2")}},
           {"request_put": {"key": b64("q"), "value": b64("3")}}]
    r = int((await gw.post("/v3/kv/txn", {"success": ops}))["header"]["revision"])
    msgs = {m.get("watch_id", "0"): m for m in [await w.result(), await w.result()]}
    assert [(e.get("type", "PUT"), b64d(e["kv"]["key"])) for e in msgs["0"]["events"]] == \
        [("PUT", "p/c"), ("DELETE", "p/b"), ("PUT", "p/a")]
    assert msgs["1"]["events"] == [del_event("p/b", r)]
    await w.silent()


async def test_lease_revoke_deletes_in_one_response(gw: WGw) -> None:
    lease = (await gw.post("/v3/lease/grant", {"TTL": 60}))["ID"]
    for k in ("l/1", "l/2"):
        await gw.put(k, "v", lease=int(lease))
    w = await gw.watch(create("l/", range_end="l0"))
    await w.result()
    await gw.post("/v3/kv/lease/revoke", {"ID": lease})
    m = await w.result()
    rev = gw.service.store.revision
    assert m["events"] == [del_event("l/1", rev), del_event("l/2", rev)]


async def test_cancel(gw: WGw) -> None:
    w = await gw.watch(create("k"), create("k"))
    await w.result()
    await w.result()
    await w.send({"cancel_request": {"watch_id": 1}})
    await w.send({"cancel_request": {"watch_id": 99}})  # unknown: ignored, as etcd
    assert await w.result() == {"header": gw.header(1), "watch_id": "1", "canceled": True}
    r = await gw.put("k")
    assert (await w.result()).get("watch_id") is None and r == 2
    await w.silent()
    assert gw.hub.watchers == 1


async def test_progress_request(gw: WGw) -> None:
    w = await gw.watch({"progress_request": {}})
    assert await w.result() == {"header": gw.header(1), "watch_id": "-1"}
    await w.send(create("k"))
    await w.result()
    r = await gw.put("k")
    await w.send({"progress_request": {}})
    assert (await w.result())["events"][0]["kv"]["mod_revision"] == str(r)
    assert await w.result() == {"header": gw.header(r), "watch_id": "-1"}


async def test_progress_notify(make_gw: Any) -> None:
    gw = await make_gw(progress_interval=0.2)
    w = await gw.watch(create("k", progress_notify=True), create("other"))
    await w.result()
    await w.result()
    r = await gw.put("x")
    m = await w.result(3)
    assert m == {"header": gw.header(r)}  # watch 0: its watch_id is omitted
    rk = await gw.put("k")
    assert (await w.result())["events"][0]["kv"]["mod_revision"] == str(rk)
    m2 = await w.result(3)  # progress again, once an interval passes without events
    assert m2 == {"header": gw.header(rk)}


async def test_bad_first_object_is_an_http_error(gw: WGw) -> None:
    for raw in (b'{"create_request":{"key":"!!"}}', b"xx", b'{"create_request":{"key":"a",'
                b'"filters":["NOPE"]}}', b"[1]", b'{"create_request":{"key":"a"}'):
        w = await gw.watch(raw=raw, close_body=True)
        assert await w.chunk() is None
        assert w.status == 400, (raw, w.status, w.body)
        body = orjson.loads(w.body)
        assert body["code"] == 3 and body["error"] == body["message"], body
    assert gw.hub.watchers == 0


async def test_bad_later_object_ends_the_stream_with_an_error_chunk(gw: WGw) -> None:
    w = await gw.watch(create("k"))
    await w.result()
    await w.send_raw(b'{"create_request":{"start_revision":"x"}}')
    m = await w.msg()
    assert m["error"]["grpc_code"] == 3 and m["error"]["http_code"] == 400
    assert "start_revision" in m["error"]["message"]
    assert await w.chunk() is None
    await _until(lambda: gw.hub.watchers == 0)


async def test_requests_split_across_chunks_and_concatenated(gw: WGw) -> None:
    body = orjson.dumps(create("k")) + b"\n " + orjson.dumps(create("k\u00e9"))
    w = await gw.watch()
    for i in range(len(body)):
        await w.send_raw(body[i:i + 1])
    assert (await w.result())["created"] is True
    assert (await w.result())["watch_id"] == "1"


async def test_disconnect_removes_watchers(gw: WGw) -> None:
    ws = [await gw.watch(create("k"), create("j", range_end="k")) for _ in range(3)]
    for w in ws:
        await w.result()
        await w.result()
    assert gw.hub.watchers == 6
    await ws[0].close()
    await _until(lambda: gw.hub.watchers == 4)
    await ws[1].end_body()
    await ws[1].close()
    await _until(lambda: gw.hub.watchers == 2)


async def test_without_a_hub_watch_is_unimplemented() -> None:
    server = TestServer(create_app(LocalService()), host="127.0.0.1", port=0)
    await server.start_server()
    try:
        w = await RawWatch.open(server.port or 0, create("k"), close_body=True)
        assert await w.chunk() is None and w.status == 501
        await w.close()
    finally:
        await server.close()


async def _until(cond: Any, timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            pytest.fail("condition not reached")
        await asyncio.sleep(0.02)


async def test_server_shutdown_ends_open_streams() -> None:
    service = LocalService()
    hub = WatchHub(service.store)
    server = TestServer(create_app(service, watch_hub=hub), host="127.0.0.1", port=0)
    await server.start_server()
    w = await RawWatch.open(server.port or 0, create("k"))
    assert (await w.result())["created"] is True
    closing = asyncio.create_task(server.close())
    try:
        assert await w.chunk() is None  # the response ends cleanly (terminating chunk)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass  # or the connection is closed under it
    await asyncio.wait_for(closing, 10)
    assert hub.watchers == 0
    await w.close()
