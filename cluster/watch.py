"""Watch as an async iterator that survives member failures without gaps or duplicates.

The watch remembers the next revision it owes the caller (last delivered event's
mod_revision + 1, or the creation revision + 1). When its stream breaks (member killed,
stream ended, member lost its leader) it reopens on another member from exactly that
revision; etcd replays history from there, so nothing is skipped, and events below it are
dropped, so nothing repeats. If that history was compacted meanwhile, the server cancels
the watch with the compact revision and the iterator raises `CompactedError`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from cluster.codec import num, put_opt
from cluster.errors import (
    ClusterError,
    CompactedError,
    EtcdError,
    ProtocolError,
    Unavailable,
    Unsupported,
    WatchCanceled,
    error_from_body,
    is_retryable_elsewhere,
)
from cluster.types import Event, ResponseHeader

if TYPE_CHECKING:
    from cluster.transport import Transport

Json = dict[str, Any]

# Ask etcd to cancel the watch when its member loses the leader (clientv3's WithRequireLeader,
# carried as gRPC metadata through the gateway): an isolated member would otherwise stay silent.
REQUIRE_LEADER = {"Grpc-Metadata-hasleader": "true"}


@dataclass(slots=True, frozen=True)
class WatchBatch:
    """One WatchResponse: events of one or more revisions, or a progress notification."""

    header: ResponseHeader
    events: tuple[Event, ...]
    endpoint: str


class _StreamBroken(Exception):
    pass


class Watch:
    """`async for ev in client.watch(...)`; `await w.close()` (or `async with`) to stop."""

    def __init__(self, transport: Transport, create: Json, *, start_revision: int = 0,
                 reconnect_timeout: float = 30.0, liveness: float = 2.0) -> None:
        self._t = transport
        self._create = create
        self.next_revision = start_revision  # 0 until the first creation fixes it
        self.reconnect_timeout = reconnect_timeout
        self.liveness = liveness
        self.reconnects = 0
        self.endpoint: str | None = None
        self._closed = False
        self._resp: aiohttp.ClientResponse | None = None
        self._created = asyncio.Event()

    async def __aenter__(self) -> Watch:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        if self._resp is not None:
            self._resp.close()

    async def wait_created(self, timeout: float = 5.0) -> None:
        """Wait until the server confirmed the watch (events after this point are seen)."""
        await asyncio.wait_for(self._created.wait(), timeout)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._events()

    async def _events(self) -> AsyncIterator[Event]:
        async for batch in self.batches():
            for ev in batch.events:
                yield ev

    async def batches(self) -> AsyncIterator[WatchBatch]:
        """Responses carrying events, in revision order, each revision exactly once."""
        failed_since: float | None = None
        loop = asyncio.get_running_loop()
        backoff = 0.05
        while not self._closed:
            for ep in self._t.order():
                if self._closed:
                    return
                try:
                    async for batch in self._stream(ep):
                        failed_since, backoff = None, 0.05
                        yield batch
                    if self._closed:
                        return
                except (_StreamBroken, Unavailable) as e:
                    if self._closed:
                        return
                    self.reconnects += 1
                    last = e
                    now = loop.time()
                    failed_since = failed_since or now
                    if now - failed_since > self.reconnect_timeout:
                        raise Unavailable(f"watch: no member served it for "
                                          f"{self.reconnect_timeout}s: {last}") from e
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def _probe(self, ep: str, resp: aiohttp.ClientResponse) -> None:
        """A silent stream may be a hung member: ask it for its status now and then, and
        cut the stream (so the watch moves elsewhere) when it does not answer in time."""
        while True:
            await asyncio.sleep(self.liveness)
            try:
                await self._t.call("/v3/maintenance/status", {}, write=False, endpoint=ep,
                                   timeout=self.liveness)
            except ClusterError:
                resp.close()
                return

    def _request(self) -> Json:
        create = dict(self._create)
        put_opt(create, "start_revision", self.next_revision)
        return {"create_request": create}

    async def _stream(self, ep: str) -> AsyncIterator[WatchBatch]:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self._t.connect_timeout)
        try:
            async with self._t.session.post(ep + "/v3/watch", json=self._request(),
                                            timeout=timeout, headers=REQUIRE_LEADER) as resp:
                self._resp = resp
                self.endpoint = ep
                if resp.status != 200:
                    raise await _refusal(ep, resp)
                probe = asyncio.create_task(self._probe(ep, resp))
                try:
                    async for line in _lines(resp):
                        batch = self._handle(ep, line)
                        if batch is not None:
                            yield batch
                finally:
                    probe.cancel()
        except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as e:
            raise Unavailable(f"{ep}: cannot connect: {e}") from e
        except (aiohttp.ClientError, ConnectionError) as e:
            raise _StreamBroken(f"{ep}: {e!r}") from e
        finally:
            self._resp = None
        raise _StreamBroken(f"{ep}: stream ended")

    def _handle(self, ep: str, line: bytes) -> WatchBatch | None:
        msg = _loads(line)
        if not isinstance(msg, dict):
            raise ProtocolError(f"{ep}: watch sent non-JSON {line[:200]!r}")
        if "error" in msg:
            err = error_from_body(0, msg, "")
            if isinstance(err, CompactedError):
                raise err
            raise _StreamBroken(f"{ep}: stream error: {err.message}")
        res = msg.get("result")
        if not isinstance(res, dict):
            raise ProtocolError(f"{ep}: watch message without result: {line[:200]!r}")
        header = ResponseHeader.decode(res.get("header"))
        if res.get("canceled"):
            compact = num(res.get("compact_revision"))
            if compact:
                raise CompactedError(11, "etcdserver: mvcc: required revision has been "
                                     "compacted", compact_revision=compact)
            reason = str(res.get("cancel_reason", ""))
            if reason in ("etcdserver: no leader", "") or "leader" in reason:
                raise _StreamBroken(f"{ep}: watch canceled: {reason or 'no reason'}")
            raise WatchCanceled(reason)
        if res.get("created"):
            if self.next_revision == 0:
                self.next_revision = header.revision + 1
            self._created.set()
            return None
        events = tuple(Event.decode(e) for e in res.get("events") or ())
        fresh = tuple(ev for ev in events if ev.kv.mod_revision >= self.next_revision)
        if not fresh:
            return None
        revs = [ev.kv.mod_revision for ev in fresh]
        assert revs == sorted(revs), f"watch events out of order from {ep}: {revs}"
        self.next_revision = revs[-1] + 1
        return WatchBatch(header, fresh, ep)


async def _refusal(ep: str, resp: aiohttp.ClientResponse) -> Exception:
    """Why a member refused to open the watch: move on to another member when it is this
    member's trouble (unavailable, no leader), raise when every member would say the same."""
    raw = await resp.read()
    body = _loads(raw)
    if resp.status in (404, 405, 501) and not isinstance(body, dict):
        return Unsupported(f"{ep}/v3/watch: route not offered by this member")
    err = error_from_body(resp.status, body, raw.decode("utf-8", "replace"))
    if is_retryable_elsewhere(err) or resp.status in (408, 429, 500, 502, 503, 504):
        return _StreamBroken(f"{ep}: {err.message}")
    return err


def _loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None


async def _lines(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """Newline-delimited JSON messages, however the chunks fall."""
    buf = b""
    async for chunk in resp.content.iter_any():
        buf += chunk
        while True:
            i = buf.find(b"\n")
            if i < 0:
                break
            line, buf = buf[:i], buf[i + 1:]
            if line.strip():
                yield line
    if buf.strip():
        yield buf


__all__ = ["ClusterError", "EtcdError", "Watch", "WatchBatch"]
