"""Helpers for the member-parts tests: real aiohttp servers on pre-bound free ports."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import web

from raftnode.failpoints import Failpoints
from raftnode.metrics import Metrics
from raftnode.transport import Transport, TransportOptions

FAST = TransportOptions(probe_interval=0.02, backoff_min=0.01, backoff_max=0.1)


def bound_socket(port: int = 0) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    return s


def url_of(s: socket.socket) -> str:
    return f"http://127.0.0.1:{s.getsockname()[1]}"


async def until(pred: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Wait for a condition (a liveness bound, not a timing assertion)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not pred():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        await asyncio.sleep(0.01)


@dataclass
class Node:
    mid: int
    sock: socket.socket
    transport: Transport
    runner: web.AppRunner
    metrics: Metrics
    got: list[tuple[int, bytes]] = field(default_factory=list)
    batches: list[int] = field(default_factory=list)
    snapshots: list[tuple[int, bytes, bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return url_of(self.sock)

    async def stop(self) -> None:
        await self.transport.close()
        await self.runner.cleanup()


async def start_node(cluster: int, mid: int, peers: dict[int, list[str]], sock: socket.socket,
                     *, failpoints: Failpoints | None = None,
                     options: TransportOptions = FAST) -> Node:
    metrics = Metrics()
    node: Node

    def on_messages(frm: int, batch: list[bytes]) -> None:
        node.batches.append(len(batch))
        node.got.extend((frm, p) for p in batch)

    async def on_snapshot(frm: int, meta: bytes, chunks: AsyncIterator[bytes]) -> None:
        parts = [c async for c in chunks]  # install only after a clean end of stream
        node.snapshots.append((frm, meta, b"".join(parts)))

    t = Transport(cluster, mid, dict(peers), on_messages, on_snapshot, metrics=metrics,
                  failpoints=failpoints or Failpoints(), options=options)
    app = web.Application()
    t.add_routes(app)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.SockSite(runner, sock).start()
    node = Node(mid, sock, t, runner, metrics)
    await t.start()
    return node
