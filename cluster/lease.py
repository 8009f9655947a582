"""Keeping a lease alive from a background task.

Each refresh is one `POST /v3/lease/keepalive` carrying one request: the gateway answers it
and ends the response, so no stream has to survive member failures. Refreshing every TTL/3
leaves two tries before expiry; a refresh answered with TTL 0 means the lease is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from cluster.errors import ClusterError, LeaseNotFound


class KeepAlive:
    """`async with client.keep_alive(lease_id, ttl):` keeps the lease while the block runs."""

    def __init__(self, refresh: Callable[[int], Awaitable[int]], lease_id: int, ttl: int,
                 *, interval: float | None = None) -> None:
        assert ttl > 0, ttl
        self.lease_id = lease_id
        self.ttl = ttl
        self.interval = interval if interval is not None else max(ttl / 3, 0.1)
        self.refreshes = 0
        self.error: BaseException | None = None
        self._refresh = refresh
        self._task: asyncio.Task[None] | None = None
        self.lost = asyncio.Event()  # set when the lease is gone or refreshing failed

    def start(self) -> KeepAlive:
        assert self._task is None, "keep-alive already started"
        self._task = asyncio.create_task(self._run(), name=f"keepalive-{self.lease_id:x}")
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def __aenter__(self) -> KeepAlive:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        good_until = loop.time() + self.ttl
        while True:
            try:
                ttl = await self._refresh(self.lease_id)
            except LeaseNotFound as e:
                self.error = e
                self.lost.set()
                return
            except ClusterError as e:  # transient: keep trying until the lease must be gone
                self.error = e
                if loop.time() >= good_until:
                    self.lost.set()
                    return
                await asyncio.sleep(min(self.interval, 0.5))
                continue
            if ttl <= 0:
                self.error = LeaseNotFound(5, "etcdserver: requested lease not found",
                                           http_status=404)
                self.lost.set()
                return
            self.refreshes += 1
            self.ttl = ttl
            good_until = loop.time() + ttl
            await asyncio.sleep(self.interval)
