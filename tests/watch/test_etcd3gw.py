"""The real etcd3gw client's watch calls (PyPI, unchanged) against LocalService + hub."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import etcd3gw
import pytest
from aiohttp import web

from raftnode.api.local import LocalService
from raftnode.api.server import create_app
from raftnode.watch.hub import WatchHub


class Gateway:
    """The gateway with a hub on its own event-loop thread, for a synchronous client."""

    def __init__(self) -> None:
        self.service = LocalService()
        self.hub = WatchHub(self.service.store)
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> Gateway:
        self._thread.start()

        async def start() -> None:
            self._runner = web.AppRunner(create_app(self.service, watch_hub=self.hub))
            await self._runner.setup()
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._runner is not None
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def watchers(self) -> int:
        async def count() -> int:
            return self.hub.watchers
        return asyncio.run_coroutine_threadsafe(count(), self.loop).result(5)

    def wait_watchers(self, n: int) -> None:
        deadline = time.monotonic() + 5
        while self.watchers() != n:
            assert time.monotonic() < deadline, f"{self.watchers()} watchers, wanted {n}"
            time.sleep(0.01)


@pytest.fixture
def gw() -> Iterator[Gateway]:
    with Gateway() as g:
        yield g


@pytest.fixture
def client(gw: Gateway) -> Any:
    return etcd3gw.client(host="127.0.0.1", port=gw.port, timeout=10)


def _in_thread(fn: Callable[[], Any]) -> Any:
    pool = ThreadPoolExecutor(1)
    fut = pool.submit(fn)
    pool.shutdown(wait=False)
    return fut


def test_watch_events_and_cancel(gw: Gateway, client: Any) -> None:
    events, cancel = client.watch("key")
    gw.wait_watchers(1)
    client.put("key", "v1")
    client.put("other", "x")
    client.delete("key")
    it = iter(events)
    e1, e2 = next(it), next(it)
    assert e1["kv"]["key"] == b"key" and e1["kv"]["value"] == b"v1" and "type" not in e1
    assert e2["type"] == "DELETE" and e2["kv"]["key"] == b"key"
    cancel()
    gw.wait_watchers(0)  # closing the socket removes the watcher


def test_watch_prefix_with_history_and_prev_kv(gw: Gateway, client: Any) -> None:
    client.put("/p/a", "1")
    rev = int(client.status()["header"]["revision"])
    client.put("/p/b", "2")
    client.put("/q", "no")
    events, cancel = client.watch_prefix("/p/", start_revision=rev, prev_kv=True)
    gw.wait_watchers(1)
    client.put("/p/a", "3")
    it = iter(events)
    got = [next(it) for _ in range(3)]
    assert [(e["kv"]["key"], e["kv"]["value"]) for e in got] == \
        [(b"/p/a", b"1"), (b"/p/b", b"2"), (b"/p/a", b"3")]
    assert got[2]["prev_kv"]["value"] == "MQ=="  # etcd3gw decodes kv only
    cancel()


def test_watch_once(gw: Gateway, client: Any) -> None:
    fut = _in_thread(lambda: client.watch_once("once", timeout=10))
    gw.wait_watchers(1)
    client.put("once", "here")
    event = fut.result(10)
    assert event["kv"]["value"] == b"here"
    gw.wait_watchers(0)
    with pytest.raises(etcd3gw.exceptions.WatchTimedOut):
        client.watch_once("never", timeout=0.3)


def test_watch_prefix_once(gw: Gateway, client: Any) -> None:
    # etcd3gw 2.7.0 base64-encodes range_end twice here; etcd (and we) then watch
    # [key, b64(prefix_end)), which still covers the prefix
    fut = _in_thread(lambda: client.watch_prefix_once("/once/", timeout=10))
    gw.wait_watchers(1)
    client.put("/once/x", "y")
    event = fut.result(10)
    assert event["kv"]["key"] == b"/once/x" and event["kv"]["value"] == b"y"
