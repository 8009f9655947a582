"""A blocking facade over `Client` for scripts and REPLs: one private event loop in a thread.

Every coroutine method of `Client` is available with the same name and arguments and
blocks until done; `watch()` returns a plain iterator. Not for use inside a running loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Generator, Sequence
from concurrent.futures import Future
from typing import Any, TypeVar

from cluster.client import Client
from cluster.types import Event

T = TypeVar("T")


class SyncClient:
    def __init__(self, endpoints: str | Sequence[str], **opts: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="cluster-sync",
                                        daemon=True)
        self._thread.start()
        self._client = Client(endpoints, **opts)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        fut: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return fut.result(timeout)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        attr = getattr(self._client, name)
        if not asyncio.iscoroutinefunction(attr):
            raise AttributeError(f"SyncClient has no blocking form of {name!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            return self.run(attr(*args, **kwargs))
        return call

    def watch(self, *args: Any, **kwargs: Any) -> Generator[Event, None, None]:
        """Blocking iterator of events; closing the generator closes the watch."""
        w = self._client.watch(*args, **kwargs)
        it = w.__aiter__()
        try:
            while True:
                try:
                    yield self.run(it.__anext__())  # type: ignore[arg-type]
                except StopAsyncIteration:
                    return
        finally:
            self.run(w.close())

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self.run(self._client.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
