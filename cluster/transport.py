"""HTTP to members: endpoint choice, deadlines, and the retry rule that keeps writes honest.

Reads are retried on another member after any failure. A write is retried elsewhere only
when its first attempt surely did not reach a member (the connection was never made, or the
member rejected it before proposing). After the request was sent, a lost connection or a
timeout makes the outcome unknown: `IndeterminateError`, never a silent retry.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from cluster.errors import (
    ClusterError,
    EtcdError,
    IndeterminateError,
    ProtocolError,
    Timeout,
    Unavailable,
    Unsupported,
    error_from_body,
    is_retryable_elsewhere,
    write_outcome_unknown,
)

Json = dict[str, Any]

# Failures that prove the request never left this client: safe to retry any request.
_NOT_SENT: tuple[type[BaseException], ...] = (
    aiohttp.ClientConnectorError,
    aiohttp.ConnectionTimeoutError,
)
# Failures after the request may have been sent.
_MAYBE_SENT: tuple[type[BaseException], ...] = (
    aiohttp.ServerDisconnectedError,
    aiohttp.ClientOSError,
    aiohttp.ClientPayloadError,
    aiohttp.ClientConnectionError,
)


def normalize_endpoint(ep: str) -> str:
    """etcdctl accepts `host:port`; the gateway needs a URL."""
    ep = ep.strip().rstrip("/")
    if not ep:
        raise ValueError("empty endpoint")
    return ep if "://" in ep else f"http://{ep}"


def parse_endpoints(spec: str | Sequence[str]) -> list[str]:
    parts = spec.split(",") if isinstance(spec, str) else list(spec)
    eps = [normalize_endpoint(p) for p in parts if p.strip()]
    if not eps:
        raise ValueError("no endpoints given")
    return list(dict.fromkeys(eps))


@dataclass(slots=True)
class Deadline:
    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()


class Transport:
    """A pool of HTTP connections to the members, with endpoint rotation and typed failures."""

    def __init__(self, endpoints: str | Sequence[str], *, timeout: float = 5.0,
                 connect_timeout: float = 1.0, read_attempt_timeout: float | None = None,
                 headers: dict[str, str] | None = None) -> None:
        self.endpoints = parse_endpoints(endpoints)
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        # A read gives up on a silent member after this long and asks the next one; a write
        # never does (its outcome would be unknown), it keeps the whole deadline.
        self.read_attempt_timeout = read_attempt_timeout or max(timeout / 2, connect_timeout)
        self.headers = dict(headers or {})
        self._preferred = 0
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                json_serialize=lambda o: orjson.dumps(o).decode(), headers=self.headers)
        return self._session

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def order(self) -> list[str]:
        """The preferred (last good) endpoint first, then the others in list order."""
        n = len(self.endpoints)
        return [self.endpoints[(self._preferred + i) % n] for i in range(n)]

    def prefer(self, endpoint: str) -> None:
        if endpoint in self.endpoints:
            self._preferred = self.endpoints.index(endpoint)

    def _client_timeout(self, deadline: Deadline, *, write: bool) -> aiohttp.ClientTimeout:
        left = deadline.remaining()
        if left <= 0:
            raise Timeout("deadline exceeded before the request was sent")
        total = left if write else min(left, self.read_attempt_timeout)
        return aiohttp.ClientTimeout(total=total, sock_connect=min(self.connect_timeout, left))

    async def call(self, path: str, body: Json | None = None, *, write: bool,
                   endpoint: str | None = None, timeout: float | None = None) -> tuple[str, Json]:
        """POST a gateway request; return (endpoint that answered, decoded JSON body).

        With `endpoint`, only that member is asked, once (status of one member, move-leader).
        """
        deadline = Deadline.after(self.timeout if timeout is None else timeout)
        targets = [normalize_endpoint(endpoint)] if endpoint else self.order()
        attempts: list[str] = []
        last: BaseException | None = None
        backoff = 0.05
        while True:
            for ep in targets:
                try:
                    result = await self._once(ep, path, body, write=write, deadline=deadline)
                except _Retry as r:
                    attempts.append(str(r.cause))
                    last = r.cause
                    continue
                if endpoint is None:
                    self.prefer(ep)
                return ep, result
            # A whole round failed without an answer: wait a little (an election may be on).
            # A call aimed at one member reports its failure at once (status of a dead one).
            if endpoint is not None or deadline.remaining() <= backoff:
                break
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 0.5)
        if isinstance(last, EtcdError):
            raise last
        if isinstance(last, Timeout):
            raise Timeout(f"{path}: deadline exceeded; tried {'; '.join(attempts[-3:])}")
        raise Unavailable(f"{path}: no endpoint reachable; tried {'; '.join(attempts[-3:])}",
                          attempts=tuple(attempts))

    async def _once(self, ep: str, path: str, body: Json | None, *, write: bool,
                    deadline: Deadline) -> Json:
        url = ep + path
        try:
            ct = self._client_timeout(deadline, write=write)
        except Timeout as e:
            raise _Retry(e) from e
        try:
            async with self.session.post(url, json=body or {}, timeout=ct) as resp:
                raw = await resp.read()
                status = resp.status
        except _NOT_SENT as e:
            raise _Retry(Unavailable(f"{ep}: cannot connect: {e}")) from e
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            if write:
                raise IndeterminateError(f"{path} sent to {ep} timed out without an answer",
                                         endpoint=ep, path=path) from e
            raise _Retry(Timeout(f"{ep}: timed out")) from e
        except _MAYBE_SENT as e:
            if write:
                raise IndeterminateError(
                    f"{path} sent to {ep}, connection lost before the answer: {e!r}",
                    endpoint=ep, path=path) from e
            raise _Retry(Unavailable(f"{ep}: connection lost: {e!r}")) from e
        return self._decode(ep, path, status, raw, write=write)

    def _decode(self, ep: str, path: str, status: int, raw: bytes, *, write: bool) -> Json:
        try:
            data = orjson.loads(raw) if raw.strip() else {}
        except orjson.JSONDecodeError:
            data = None
        if status == 200:
            if not isinstance(data, dict):
                raise ProtocolError(f"{ep}{path}: answer is not a JSON object: {raw[:200]!r}")
            return data
        if status in (404, 405) and not isinstance(data, dict):
            raise Unsupported(f"{ep}{path}: route not offered by this member (HTTP {status})")
        err = error_from_body(status, data, raw.decode("utf-8", "replace"))
        if write and write_outcome_unknown(err):
            raise IndeterminateError(f"{path} on {ep}: {err.message}", endpoint=ep,
                                     path=path) from err
        if is_retryable_elsewhere(err) or (not write and status == 503):
            raise _Retry(err)
        raise err

    @asynccontextmanager
    async def stream(self, ep: str, path: str, body: Json,
                     timeout: aiohttp.ClientTimeout) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open a streaming POST (watch, snapshot); error answers raise typed errors."""
        try:
            async with self.session.post(ep + path, json=body, timeout=timeout) as resp:
                if resp.status != 200:
                    raw = await resp.read()
                    self._decode(ep, path, resp.status, raw, write=False)
                yield resp
        except _NOT_SENT as e:
            raise Unavailable(f"{ep}: cannot connect: {e}") from e

    async def request(self, method: str, url: str, *, data: bytes | None = None,
                      timeout: float | None = None) -> tuple[int, bytes]:
        """A plain HTTP request to one URL (metrics, health, failpoints): no retry."""
        ct = aiohttp.ClientTimeout(total=self.timeout if timeout is None else timeout,
                                   sock_connect=self.connect_timeout)
        try:
            async with self.session.request(method, url, data=data, timeout=ct) as resp:
                return resp.status, await resp.read()
        except _NOT_SENT as e:
            raise Unavailable(f"{url}: cannot connect: {e}") from e
        except (TimeoutError, aiohttp.ServerTimeoutError) as e:
            raise Timeout(f"{url}: timed out") from e
        except _MAYBE_SENT as e:
            raise Unavailable(f"{url}: connection lost: {e!r}") from e


class _Retry(Exception):  # internal control flow, never escapes Transport
    """This attempt failed in a way that is safe to retry on another member."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause


__all__ = ["ClusterError", "Deadline", "Transport", "normalize_endpoint", "parse_endpoints"]
