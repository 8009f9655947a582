"""The lean HTTP path for unary routes (raftnode.api.fastpath) against aiohttp's own.

Every test talks raw HTTP/1.1 over a real socket, so what is checked is what a client
gets: the same bytes from both paths, answers in order, nothing lost on bad input, and
every request the fast path does not understand served by aiohttp as before.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import orjson
import pytest
from aiohttp import web

from raftnode.api import fastpath
from raftnode.api.local import LocalService
from raftnode.api.server import create_app
from raftnode.mvcc.messages import Response, WriteRequest

LIMIT = 64 * 1024  # max_request_bytes of the gateways below


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


def post(path: str, body: bytes, *headers: str, version: str = "1.1") -> bytes:
    head = [f"POST {path} HTTP/{version}", "Host: test", *headers]
    if not any(h.lower().startswith(("content-length:", "transfer-encoding:")) for h in headers):
        head.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class Gateway:
    """A gateway on a real runner (as the member starts it) and raw connections to it."""

    def __init__(self, runner: web.AppRunner, port: int, service: LocalService) -> None:
        self.runner = runner
        self.port = port
        self.service = service

    @property
    def fast(self) -> fastpath.FastServer:
        server = self.runner.server
        assert isinstance(server, fastpath.FastServer)
        return server

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)


@contextlib.asynccontextmanager
async def gateway(service: LocalService | None = None, **runner_kw: Any
                  ) -> AsyncIterator[Gateway]:
    service = service or LocalService()
    runner = web.AppRunner(create_app(service, max_request_bytes=LIMIT), access_log=None,
                           **runner_kw)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield Gateway(runner, port, service)
    finally:
        await runner.cleanup()


async def read_response(r: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """(status line, headers by lower-case name, body) of one Content-Length response."""
    head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), 10)
    status, *lines = head[:-4].split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.decode().partition(":")
        headers[name.lower()] = value.strip()
    body = await asyncio.wait_for(r.readexactly(int(headers["content-length"])), 10)
    return status, headers, body


def without_date(resp: tuple[bytes, dict[str, str], bytes]) -> tuple[Any, ...]:
    status, headers, body = resp
    return status, sorted((k, v) for k, v in headers.items() if k != "date"), body


# requests covering answers and errors of the hot routes; sent through each path in turn
SCRIPT: list[tuple[str, bytes]] = [
    ("/v3/kv/put", orjson.dumps({"key": b64(b"foo"), "value": b64(b"bar")})),
    ("/v3/kv/put", orjson.dumps({"key": b64(b"foo"), "value": b64(b"baz"), "prev_kv": True})),
    ("/v3/kv/range", orjson.dumps({"key": b64(b"foo")})),
    ("/v3beta/kv/range", orjson.dumps({"key": b64(b"a"), "rangeEnd": "AA==", "keysOnly": True})),
    ("/v3/kv/put", b'{"key": "Zm9v", "value": '),  # malformed JSON
    ("/v3/kv/put", b'{"key": "Zm9v!", "value": "YQ=="}'),  # bad base64
    ("/v3/kv/put", b'{"value": "YQ=="}'),  # no key
    ("/v3/kv/put", b"[1, 2]"),  # not an object
    ("/v3/kv/put", b""),  # empty body: an empty message
    ("/v3/kv/deleterange", orjson.dumps({"key": b64(b"foo"), "prev_kv": True})),
    ("/v3/kv/txn", orjson.dumps({"compare": [{"key": b64(b"foo"), "target": "VERSION",
                                              "result": "EQUAL", "version": "0"}],
                                 "success": [{"request_put": {"key": b64(b"foo")}}]})),
    ("/v3/kv/range", orjson.dumps({"key": b64(b"foo"), "revision": 99})),  # future revision
    ("/v3/maintenance/status", b"{}"),
    ("/v3/lease/grant", orjson.dumps({"TTL": 60, "ID": 7})),
]


async def transcript(path_suffix: str, extra: tuple[str, ...] = ()) -> tuple[
        list[tuple[Any, ...]], int, int]:
    """SCRIPT on one keep-alive connection to a fresh gateway: (responses without Date,
    requests served fast, connections handed to aiohttp)."""
    async with gateway() as gw:
        r, w = await gw.connect()
        out = []
        for path, body in SCRIPT:
            w.write(post(path + path_suffix, body, *extra))
            out.append(without_date(await read_response(r)))
        w.close()
        return out, gw.fast.fast_requests, gw.fast.handoffs


async def test_both_paths_send_the_same_bytes() -> None:
    fast, served, handed = await transcript("")
    assert (served, handed) == (len(SCRIPT), 0)
    # a query string is not a route the fast path knows: the connection goes to aiohttp,
    # whose router ignores the query, so the same handler answers there
    slow, served, handed = await transcript("?via=aiohttp")
    assert (served, handed) == (0, 1)
    assert fast == slow
    statuses = [s for s, _, _ in fast]
    assert statuses[0] == b"HTTP/1.1 200 OK" and b"HTTP/1.1 400 Bad Request" in statuses
    assert dict(fast[0][1])["content-type"] == "application/json"
    assert orjson.loads(fast[4][2])["message"].startswith("invalid JSON in request body")
    assert orjson.loads(fast[5][2])["message"] == 'field "key": illegal base64 data'


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with gateway() as gw:
        r, w = await gw.connect()
        burst = b"".join(post("/v3/kv/put", orjson.dumps({"key": b64(b"k%d" % i)}))
                         for i in range(20))
        w.write(burst)
        revisions = [orjson.loads((await read_response(r))[2])["header"]["revision"]
                     for _ in range(20)]
        assert revisions == [str(i) for i in range(2, 22)]
        assert gw.fast.fast_requests == 20
        w.close()


async def test_a_large_pipelined_burst_is_served_whole() -> None:
    """More than PIPELINE_BYTES arrive while requests are in flight: reading pauses and
    resumes, and every request gets its answer."""
    n = 3000
    value = b64(b"v" * 256)
    async with gateway() as gw:
        r, w = await gw.connect()
        burst = b"".join(post("/v3/kv/put", orjson.dumps({"key": b64(b"k%d" % i),
                                                          "value": value})) for i in range(n))
        assert len(burst) > 2 * fastpath.PIPELINE_BYTES
        w.write(burst)
        for i in range(n):
            status, _, body = await read_response(r)
            assert status == b"HTTP/1.1 200 OK"
            assert orjson.loads(body)["header"]["revision"] == str(i + 2)
        assert gw.service.store.revision == n + 1
        w.close()


async def test_requests_arriving_byte_by_byte() -> None:
    async with gateway() as gw:
        r, w = await gw.connect()
        for i in range(2):
            for b in post("/v3/kv/put", orjson.dumps({"key": b64(b"slow"), "value": "YQ=="})):
                w.write(bytes([b]))
                await w.drain()
            status, _, body = await read_response(r)
            assert status == b"HTTP/1.1 200 OK"
            assert orjson.loads(body)["header"]["revision"] == str(i + 2)
        assert (gw.fast.fast_requests, gw.fast.handoffs) == (2, 0)
        w.close()


async def test_bad_input_gets_a_clear_error_and_the_connection_keeps_serving() -> None:
    async with gateway() as gw:
        r, w = await gw.connect()
        for body, message in ((b"{nope", "invalid JSON in request body"),
                              (b'{"key":"***"}', 'field "key": illegal base64 data'),
                              (b"\xff\xfe", "invalid JSON in request body")):
            w.write(post("/v3/kv/put", body))
            status, _, answer = await read_response(r)
            assert status == b"HTTP/1.1 400 Bad Request"
            err = orjson.loads(answer)
            assert err["code"] == 3 and err["message"].startswith(message)
            assert err["error"] == err["message"]
        assert gw.service.store.revision == 1  # nothing applied
        w.write(post("/v3/kv/put", orjson.dumps({"key": b64(b"ok")})))
        assert (await read_response(r))[0] == b"HTTP/1.1 200 OK"
        assert gw.service.store.revision == 2
        assert gw.fast.handoffs == 0
        w.close()


async def test_oversize_body_goes_to_aiohttp_and_gets_etcds_error() -> None:
    async with gateway() as gw:
        r, w = await gw.connect()
        big = orjson.dumps({"key": "YQ==", "value": b64(b"x" * (2 * LIMIT))})
        w.write(post("/v3/kv/put", big))
        status, _, body = await read_response(r)
        assert status == b"HTTP/1.1 400 Bad Request"
        assert orjson.loads(body)["message"] == "etcdserver: request is too large"
        assert gw.fast.handoffs == 1 and gw.service.store.revision == 1
        assert await asyncio.wait_for(r.read(), 10) == b""  # closed: the rest is not drained
        w.close()


@pytest.mark.parametrize("headers, version", [
    (("Transfer-Encoding: chunked",), "1.1"),
    (("Connection: close",), "1.1"),
    (("Connection: keep-alive",), "1.0"),
    (("Expect: 100-continue",), "1.1"),
])
async def test_requests_the_fast_path_leaves_to_aiohttp(headers: tuple[str, ...],
                                                        version: str) -> None:
    body = orjson.dumps({"key": b64(b"k"), "value": "YQ=="})
    if "chunked" in headers[0]:
        raw = post("/v3/kv/put", b"", *headers) + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    else:
        raw = post("/v3/kv/put", body, *headers, version=version)
    async with gateway() as gw:
        r, w = await gw.connect()
        w.write(raw)
        if "100-continue" in headers[0]:
            assert await r.readuntil(b"\r\n\r\n") == b"HTTP/1.1 100 Continue\r\n\r\n"
        status, got, answer = await read_response(r)
        assert status.endswith(b" 200 OK")
        assert orjson.loads(answer)["header"]["revision"] == "2"
        assert gw.fast.handoffs == 1 and gw.fast.fast_requests == 0
        if headers[0] == "Connection: close":
            assert got["connection"] == "close"
            assert await asyncio.wait_for(r.read(), 10) == b""
        w.close()


async def test_other_routes_and_methods_after_fast_requests_on_one_connection() -> None:
    async with gateway() as gw:
        r, w = await gw.connect()
        w.write(post("/v3/kv/put", orjson.dumps({"key": b64(b"a")}))
                + b"GET /version HTTP/1.1\r\nHost: test\r\n\r\n"
                + post("/v3/kv/range", orjson.dumps({"key": b64(b"a")}))
                + post("/v3/nope", b"{}"))
        answers = [await read_response(r) for _ in range(4)]
        assert [a[0] for a in answers] == [b"HTTP/1.1 200 OK", b"HTTP/1.1 200 OK",
                                           b"HTTP/1.1 200 OK", b"HTTP/1.1 404 Not Found"]
        assert orjson.loads(answers[1][2])["etcdserver"] == "3.5.0"
        assert orjson.loads(answers[2][2])["count"] == "1"
        assert (gw.fast.fast_requests, gw.fast.handoffs) == (1, 1)
        w.close()


class Gated(LocalService):
    """Writes wait for ``gate``; ``fail`` makes them raise instead."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.fail: BaseException | None = None

    async def write(self, req: WriteRequest) -> Response:
        self.started.set()
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return await super().write(req)


async def test_a_client_that_leaves_mid_request_loses_nothing() -> None:
    service = Gated()
    async with gateway(service) as gw:
        _, w = await gw.connect()
        w.write(post("/v3/kv/put", orjson.dumps({"key": b64(b"gone")})))
        await asyncio.wait_for(service.started.wait(), 10)
        w.close()
        await asyncio.sleep(0.05)
        service.gate.set()
        for _ in range(100):
            if service.store.revision == 2:
                break
            await asyncio.sleep(0.01)
        assert service.store.revision == 2  # the write itself went through
        r2, w2 = await gw.connect()  # and the server is serving
        w2.write(post("/v3/kv/range", orjson.dumps({"key": b64(b"gone")})))
        assert orjson.loads((await read_response(r2))[2])["count"] == "1"
        w2.close()


@pytest.mark.parametrize("fail, expect", [
    (RuntimeError("disk on fire"), b"HTTP/1.1 500 Internal Server Error"),
    (ConnectionResetError("leader gone"), None),  # no answer: the connection ends
])
async def test_service_failures(fail: BaseException, expect: bytes | None) -> None:
    service = Gated()
    service.fail = fail
    service.gate.set()
    async with gateway(service) as gw:
        r, w = await gw.connect()
        w.write(post("/v3/kv/put", orjson.dumps({"key": b64(b"x")})))
        if expect is None:
            assert await asyncio.wait_for(r.read(), 10) == b""
        else:
            status, _, body = await read_response(r)
            assert status == expect
            err = orjson.loads(body)
            assert err["code"] == 2 and "disk on fire" in err["message"]
        w.close()


async def test_shutdown_lets_a_request_in_flight_finish_and_closes_idle_connections() -> None:
    service = Gated()
    async with gateway(service) as gw:
        r_idle, w_idle = await gw.connect()
        w_idle.write(post("/v3/kv/range", orjson.dumps({"key": b64(b"x")})))
        await read_response(r_idle)
        r, w = await gw.connect()
        w.write(post("/v3/kv/put", orjson.dumps({"key": b64(b"late")})))
        await asyncio.wait_for(service.started.wait(), 10)
        cleanup = asyncio.ensure_future(gw.runner.cleanup())
        assert await asyncio.wait_for(r_idle.read(), 10) == b""  # idle: closed at once
        await asyncio.sleep(0.05)
        assert not cleanup.done()
        service.gate.set()
        status, _, body = await read_response(r)  # busy: answered, then closed
        assert status == b"HTTP/1.1 200 OK" and orjson.loads(body)["header"]["revision"] == "2"
        assert await asyncio.wait_for(r.read(), 10) == b""
        await asyncio.wait_for(cleanup, 10)
        w.close()
        w_idle.close()


async def test_idle_connections_close_after_the_keepalive_timeout() -> None:
    async with gateway(keepalive_timeout=0.3) as gw:
        r, w = await gw.connect()
        w.write(post("/v3/kv/put", orjson.dumps({"key": b64(b"a")})))
        assert (await read_response(r))[0] == b"HTTP/1.1 200 OK"
        assert await asyncio.wait_for(r.read(), 5) == b""
        w.close()


async def test_middlewares_see_every_request_so_aiohttp_serves_all() -> None:
    seen: list[str] = []

    @web.middleware
    async def record(request: web.Request,
                     handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                     ) -> web.StreamResponse:
        seen.append(request.path)
        return await handler(request)

    runner = web.AppRunner(create_app(LocalService(), middlewares=[record]), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        assert not isinstance(runner.server, fastpath.FastServer)
        r, w = await asyncio.open_connection("127.0.0.1", runner.addresses[0][1])
        w.write(post("/v3/kv/put", orjson.dumps({"key": b64(b"a")})))
        assert (await read_response(r))[0] == b"HTTP/1.1 200 OK"
        assert seen == ["/v3/kv/put"]
        w.close()
    finally:
        await runner.cleanup()


def _server(max_body: int = 100) -> fastpath.FastServer:
    routes = {b"/v3/kv/put": "put"}
    return fastpath.FastServer(None, routes, None, max_body, 0.0, None)  # type: ignore[arg-type]


@pytest.mark.parametrize("head", [
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5",
    b"POST /v3/kv/put HTTP/1.1\r\nHost: x\r\ncontent-length:5",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5 \r\nConnection: Keep-Alive\r\nX-E:",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length:\t5\r\nUser-Agent: a b\tc",
])
def test_heads_served_fast(head: bytes) -> None:
    assert _server().parse_head(head) == ("put", "/v3/kv/put", 5)


@pytest.mark.parametrize("head", [
    b"POST /v3/kv/put HTTP/1.0\r\nContent-Length: 5",
    b"post /v3/kv/put HTTP/1.1\r\nContent-Length: 5",
    b"PUT /v3/kv/put HTTP/1.1\r\nContent-Length: 5",
    b"POST /v3/kv/put?x=1 HTTP/1.1\r\nContent-Length: 5",
    b"POST /v3/kv/%70ut HTTP/1.1\r\nContent-Length: 5",
    b"POST http://h/v3/kv/put HTTP/1.1\r\nContent-Length: 5",
    b"POST  /v3/kv/put HTTP/1.1\r\nContent-Length: 5",
    b"POST /v3/kv/put HTTP/1.1",  # no Content-Length
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: +5",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 0x5",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 101",  # over the limit
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5\r\nContent-Encoding: gzip",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5\r\nConnection: close",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5\r\nConnection: Upgrade\r\nUpgrade: h2c",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length : 5",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5\r\n folded",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5\r\nX: caf\xc3\xa9",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5\r\nX: a\x00b",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5\r\nX: a\rb",
    b"POST /v3/kv/put HTTP/1.1\r\nContent-Length: 5\r\nNo colon here",
    b"POST /v3/kv/put HTTP/1.1\r\n" + b"X: y\r\n" * 70 + b"Content-Length: 5",
])
def test_heads_left_to_aiohttp(head: bytes) -> None:
    assert _server().parse_head(head) is None


def test_response_bytes_match_aiohttps_format() -> None:
    raw = fastpath.response_bytes(404, b'{"a":1}')
    head, body = raw.split(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 404 Not Found" and body == b'{"a":1}'
    assert lines[1:3] == [b"Content-Type: application/json", b"Content-Length: 7"]
    assert lines[3].startswith(b"Date: ") and lines[3].endswith(b" GMT")
    assert lines[4].startswith(b"Server: Python/") and b"aiohttp/" in lines[4]
