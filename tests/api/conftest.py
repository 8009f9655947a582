"""A real gateway over LocalService on a free port, and a raw HTTP client for it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from raftnode.api.local import LocalService
from raftnode.api.server import create_app


@dataclass
class Gw:
    url: str
    host: str
    port: int
    service: LocalService
    session: aiohttp.ClientSession

    async def post(self, path: str, body: Any = None, raw: bytes | None = None
                   ) -> tuple[int, Any]:
        data = raw if raw is not None else (b"" if body is None else orjson.dumps(body))
        async with self.session.post(self.url + path, data=data) as r:
            text = await r.read()
            assert r.headers["Content-Type"].startswith("application/json"), text
            return r.status, orjson.loads(text)

    def header(self, revision: int | None = None, cluster: bool = False) -> dict[str, str]:
        h = self.service.header()
        out = {"cluster_id": str(h.cluster_id), "member_id": str(h.member_id),
               "revision": str(h.revision if revision is None else revision),
               "raft_term": str(h.raft_term)}
        if cluster:
            del out["revision"]
        return out


async def start_gateway(service: LocalService, **kw: Any) -> tuple[TestServer, str]:
    server = TestServer(create_app(service, **kw), host="127.0.0.1", port=0)
    await server.start_server()
    return server, f"http://127.0.0.1:{server.port}"


@pytest.fixture
async def gw() -> AsyncIterator[Gw]:
    service = LocalService()
    server, url = await start_gateway(service, max_request_bytes=64 * 1024)
    service.set_client_urls((url,))
    async with aiohttp.ClientSession() as session:
        yield Gw(url, "127.0.0.1", server.port or 0, service, session)
    await service.stop()
    await server.close()


class ThreadedGateway:
    """The gateway on its own event loop thread, for synchronous clients (etcd3gw)."""

    def __init__(self, service: LocalService) -> None:
        self.service = service
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._runner: web.AppRunner | None = None
        self._start: asyncio.Task[None] | None = None

    def __enter__(self) -> ThreadedGateway:
        ready = threading.Event()
        loop = self._loop = asyncio.new_event_loop()

        async def start() -> None:
            self._runner = web.AppRunner(create_app(self.service))
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self.service.start(0.05)
            ready.set()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._start = loop.create_task(start())
            loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        assert ready.wait(10), "gateway did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        loop = self._loop
        assert loop is not None and self._thread is not None and self._runner is not None

        async def stop() -> None:
            await self.service.stop()
            await self._runner.cleanup()  # type: ignore[union-attr]

        asyncio.run_coroutine_threadsafe(stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        self._thread.join(10)
        loop.close()
