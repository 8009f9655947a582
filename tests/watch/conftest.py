"""A gateway with a watch hub over LocalService on a free port, and a raw watch client that
sees the HTTP chunks themselves (one JSON message per chunk is part of the contract)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from raftnode.api.local import LocalService
from raftnode.api.server import create_app
from raftnode.watch.hub import WatchHub

TIMEOUT = 5.0


def b64(s: bytes | str) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def unb64(s: str) -> bytes:
    return base64.b64decode(s)


class RawWatch:
    """One ``POST /v3/watch`` over a plain socket: the request body is sent chunked (so
    it can stay open), the response is parsed chunk by chunk, and every chunk is checked
    to hold exactly one complete ``{"result"|"error": ...}`` message and its newline."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""

    @classmethod
    async def open(cls, port: int, *objs: Any, raw: bytes | None = None,
                   close_body: bool = False) -> RawWatch:
        r, w = await asyncio.open_connection("127.0.0.1", port)
        self = cls(r, w)
        w.write(b"POST /v3/watch HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n"
                b"Content-Type: application/json\r\n\r\n")
        for o in objs:
            await self.send(o)
        if raw is not None:
            await self.send_raw(raw)
        if close_body:
            await self.end_body()
        await w.drain()
        return self

    async def send(self, obj: Any) -> None:
        await self.send_raw(orjson.dumps(obj))

    async def send_raw(self, data: bytes) -> None:
        self.writer.write(b"%x\r\n%s\r\n" % (len(data), data))
        await self.writer.drain()

    async def end_body(self) -> None:
        self.writer.write(b"0\r\n\r\n")
        await self.writer.drain()

    async def _head(self) -> None:
        line = await self.reader.readline()
        assert line.startswith(b"HTTP/1.1 "), line
        self.status = int(line.split()[1])
        while True:
            h = await self.reader.readline()
            if h in (b"\r\n", b""):
                break
            k, _, v = h.decode().partition(":")
            self.headers[k.strip().lower()] = v.strip()

    async def chunk(self, timeout: float = TIMEOUT) -> bytes | None:
        """The next HTTP chunk's payload (None at the end of the response)."""
        async def read() -> bytes | None:
            if not self.status:
                await self._head()
                if self.headers.get("transfer-encoding") != "chunked":
                    n = int(self.headers.get("content-length", "0"))
                    self.body = await self.reader.readexactly(n)
                    return None
            size = int((await self.reader.readline()).strip(), 16)
            data = await self.reader.readexactly(size)
            assert await self.reader.readexactly(2) == b"\r\n"
            return data if size else None
        return await asyncio.wait_for(read(), timeout)

    async def msg(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        """The next message; asserts it is alone in its chunk and ends with a newline."""
        data = await self.chunk(timeout)
        assert data is not None, f"response ended (status {self.status}: {self.body!r})"
        assert data.endswith(b"\n") and data.count(b"\n") == 1, data
        out: dict[str, Any] = orjson.loads(data)
        assert set(out) in ({"result"}, {"error"}), out
        return out

    async def result(self, timeout: float = TIMEOUT) -> dict[str, Any]:
        m = await self.msg(timeout)
        assert "result" in m, m
        r: dict[str, Any] = m["result"]
        return r

    async def silent(self, seconds: float = 0.3) -> None:
        """Assert nothing arrives for a while."""
        try:
            data = await self.chunk(seconds)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected chunk {data!r}")

    async def close(self) -> None:
        self.writer.close()
        try:
            await self.writer.wait_closed()
        except ConnectionError:
            pass


@dataclass
class WGw:
    url: str
    port: int
    service: LocalService
    hub: WatchHub
    session: aiohttp.ClientSession
    streams: list[RawWatch] = field(default_factory=list)

    async def post(self, path: str, body: Any) -> dict[str, Any]:
        async with self.session.post(self.url + path, data=orjson.dumps(body)) as r:
            out: dict[str, Any] = orjson.loads(await r.read())
            assert r.status == 200, out
            return out

    async def put(self, key: str | bytes, value: str | bytes = b"v", **kw: Any) -> int:
        r = await self.post("/v3/kv/put", {"key": b64(key), "value": b64(value), **kw})
        return int(r["header"]["revision"])

    async def delete(self, key: str | bytes, range_end: str | bytes | None = None) -> int:
        body = {"key": b64(key)}
        if range_end is not None:
            body["range_end"] = b64(range_end)
        r = await self.post("/v3/kv/deleterange", body)
        return int(r["header"]["revision"])

    async def watch(self, *objs: Any, **kw: Any) -> RawWatch:
        w = await RawWatch.open(self.port, *objs, **kw)
        self.streams.append(w)
        return w

    def header(self, revision: int) -> dict[str, str]:
        h = self.service.header()
        out = {"cluster_id": str(h.cluster_id), "member_id": str(h.member_id),
               "raft_term": str(h.raft_term)}
        if revision:
            out["revision"] = str(revision)
        return out


async def start(hub_kw: dict[str, Any] | None = None) -> tuple[TestServer, LocalService,
                                                                WatchHub]:
    service = LocalService()
    hub = WatchHub(service.store, **(hub_kw or {}))
    server = TestServer(create_app(service, watch_hub=hub, max_request_bytes=64 * 1024),
                        host="127.0.0.1", port=0)
    await server.start_server()
    return server, service, hub


@pytest.fixture
async def make_gw() -> AsyncIterator[Any]:
    made: list[tuple[TestServer, WGw]] = []

    async def make(**hub_kw: Any) -> WGw:
        server, service, hub = await start(hub_kw)
        session = aiohttp.ClientSession()
        g = WGw(f"http://127.0.0.1:{server.port}", server.port or 0, service, hub, session)
        made.append((server, g))
        return g

    yield make
    for server, g in made:
        for w in g.streams:
            await w.close()
        await g.session.close()
        await server.close()


@pytest.fixture
async def gw(make_gw: Any) -> WGw:
    g: WGw = await make_gw()
    return g
