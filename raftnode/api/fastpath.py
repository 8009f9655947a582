"""A lean HTTP/1.1 front for the gateway's unary routes, in front of aiohttp.

Why: under put load the leader spent more CPU in aiohttp's generic per-request machinery
(request and response objects, header multidicts, router, a stream reader and writer and a
task per request) than in the raft core and the store together (docs/bench.md).

How: every client connection starts on :class:`FastConnection`. It serves the requests it
fully understands (``POST`` to a unary route, HTTP/1.1, a ``Content-Length`` body within
the limit, well-formed plain header fields) with the gateway's own handler
(:meth:`raftnode.api.server.Gateway.answer`) and the same status line, headers and body
bytes aiohttp would send. At the first request it does not (any other route or method,
chunked or compressed bodies, ``Expect``, ``Upgrade``, ``Connection: close``, HTTP/1.0,
an oversize body, anything malformed) it hands the connection, buffered bytes included,
to aiohttp's own protocol for good: every edge case keeps aiohttp's behaviour.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Literal, cast

from aiohttp import web
from aiohttp.http import SERVER_SOFTWARE
from aiohttp.log import access_logger
from aiohttp.tcp_helpers import tcp_keepalive, tcp_nodelay
from aiohttp.web_log import AccessLogger
from aiohttp.web_protocol import RequestHandler

#: (route, JSON body, path for logs) -> (HTTP status, JSON answer); routes are opaque here
Answer = Callable[[Any, bytes, str], Awaitable[tuple[int, bytes]]]
#: what a head resolves to: (route, path, body length), or None for "aiohttp's"
Head = tuple[Any, str, int] | None

MAX_HEAD = 8190  # aiohttp's max_line_size / max_field_size: larger heads are aiohttp's
MAX_FIELDS = 64
PIPELINE_BYTES = 256 * 1024  # buffered beyond this while busy: stop reading (backpressure)
HEAD_CACHE = 256  # distinct heads remembered (a client repeats its head for same-size bodies)
HEAD_CACHE_BYTES = 1024  # longer heads are parsed every time
#: header fields whose meaning the fast path does not implement: aiohttp serves those
HANDOFF_FIELDS = frozenset({b"transfer-encoding", b"content-encoding", b"expect", b"upgrade",
                            b"connection"})
_KEEPALIVE_DEFAULT: float = inspect.signature(RequestHandler.__init__).parameters[
    "keepalive_timeout"].default
_FIELD = re.compile(rb"([!#$%&'*+.^_`|~0-9A-Za-z-]+):[ \t]*"
                    rb"((?:[\x21-\x7e]+(?:[ \t]+[\x21-\x7e]+)*)?)[ \t]*").fullmatch
_HEAD = (b"Content-Type: application/json\r\nContent-Length: %d\r\nDate: %s\r\nServer: "
         + SERVER_SOFTWARE.encode() + b"\r\n\r\n")
_STATUS = {s.value: b"HTTP/1.1 %d %s\r\n" % (s.value, s.phrase.encode()) for s in HTTPStatus}

_date_second = 0
_date = b""


def http_date() -> bytes:
    """The ``Date`` value (RFC 9110's IMF-fixdate, as aiohttp sends it), formatted once a second."""
    global _date_second, _date
    now = int(time.time())
    if now != _date_second:
        _date_second, _date = now, formatdate(now, usegmt=True).encode()
    return _date


def response_bytes(status: int, body: bytes) -> bytes:
    """A complete JSON response, byte for byte what aiohttp writes for
    ``web.Response(body=body, status=status, content_type="application/json")``."""
    line = _STATUS.get(status) or b"HTTP/1.1 %d \r\n" % status
    return b"".join((line, _HEAD % (len(body), http_date()), body))


class FastServer:
    """Stands in for aiohttp's :class:`web.Server` (whose protocol factory it replaces):
    connections start fast, and what they hand off lands in ``inner`` as usual."""

    def __init__(self, inner: web.Server, routes: dict[bytes, Any], answer: Answer,
                 max_body: int, keepalive_timeout: float,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.inner = inner
        self.routes = routes
        self.answer = answer
        self.max_body = max_body
        self.keepalive_timeout = keepalive_timeout
        self.loop = loop
        self.heads: dict[bytes, Head] = {}  # parse_head's answers, by head bytes
        self.conns: set[FastConnection] = set()
        self.fast_requests = 0
        self.handoffs = 0

    def __call__(self) -> FastConnection:
        return FastConnection(self)

    def parse_head(self, head: bytes) -> Head:
        """A request head (up to, without, its blank line): what to serve, or None."""
        lines = head.split(b"\r\n")
        first = lines[0]
        if first[:5] != b"POST " or first[-9:] != b" HTTP/1.1" or len(lines) > MAX_FIELDS:
            return None
        path = first[5:-9]
        route = self.routes.get(path)
        if route is None:
            return None
        length = -1
        for line in lines[1:]:
            m = _FIELD(line)
            if m is None:
                return None
            name = m[1].lower()
            if name == b"content-length":
                value = m[2]
                if length >= 0 or not value.isdigit():
                    return None
                length = int(value)
            elif name in HANDOFF_FIELDS and not (
                    name == b"connection" and m[2].lower() == b"keep-alive"):
                return None
        if length < 0 or length > self.max_body:
            return None
        return route, path.decode("ascii"), length

    def __getattr__(self, name: str) -> Any:  # request_handler, request_factory, ...
        return getattr(self.inner, name)

    @property
    def requests_count(self) -> int:
        return int(self.inner.requests_count) + self.fast_requests

    @property
    def connections(self) -> list[Any]:
        return [*self.inner.connections, *self.conns]

    def pre_shutdown(self) -> None:
        """Idle connections close now, busy ones after their answer (as aiohttp's do)."""
        for c in list(self.conns):
            c.close_when_idle()
        self.inner.pre_shutdown()

    async def shutdown(self, timeout: float | None = None) -> None:
        """Let requests in flight finish within ``timeout``, then cancel them."""
        tasks = [c.task for c in self.conns if c.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        for c in list(self.conns):
            c.abort()
        await self.inner.shutdown(timeout)


class FastConnection(asyncio.Protocol):
    """One client connection: requests are served one at a time, answers in order."""

    __slots__ = ("_buf", "_closing", "_idle", "_last", "_pending", "_read_paused", "_srv",
                 "_transport", "_write_paused", "task")

    def __init__(self, srv: FastServer) -> None:
        self._srv = srv
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        # the parsed head of a request whose body is still arriving: route, path, body span
        self._pending: tuple[Any, str, int, int] | None = None
        self.task: asyncio.Task[None] | None = None
        self._closing = False
        self._read_paused = False
        self._write_paused = False
        self._last = 0.0
        self._idle: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------ asyncio protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t = self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass
        tcp_nodelay(t, True)  # as aiohttp's protocol sets up a connection
        tcp_keepalive(t)
        self._srv.conns.add(self)
        loop = self._srv.loop
        self._last = loop.time()
        if self._srv.keepalive_timeout > 0:
            self._idle = loop.call_at(self._last + self._srv.keepalive_timeout, self._on_idle)

    def connection_lost(self, exc: BaseException | None) -> None:
        # a request in flight runs on (its write may already be proposed); its answer is dropped
        self._transport = None
        self._buf.clear()
        self._pending = None
        self._srv.conns.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None

    def data_received(self, data: bytes) -> None:
        self._buf += data
        if self.task is None and not self._write_paused:
            self._next()
        elif len(self._buf) > PIPELINE_BYTES and not self._read_paused \
                and self._transport is not None:
            self._transport.pause_reading()
            self._read_paused = True

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.task is None:
            self._next()

    # ------------------------------------------------------------------ requests

    def _next(self) -> None:
        """Start the next buffered request once it is complete; hand off what is not ours."""
        t = self._transport
        if t is None or self._closing:
            return
        if self._read_paused:
            self._read_paused = False
            t.resume_reading()
        pending = self._pending
        if pending is None:
            if not self._buf:
                return
            parsed = self._parse()
            if parsed is None:
                return  # the head is still arriving
            if parsed is False:
                self._handoff(t)
                return
            pending = self._pending = parsed
        route, path, start, end = pending
        if len(self._buf) < end:
            return  # the body is still arriving
        body = bytes(self._buf[start:end])
        del self._buf[:end]
        self._pending = None
        srv = self._srv
        srv.fast_requests += 1
        self.task = srv.loop.create_task(self._serve(route, path, body))

    def _parse(self) -> tuple[Any, str, int, int] | Literal[False] | None:
        """The head at the start of the buffer: (route, path, body start, body end) if we
        serve it, ``False`` to hand off, ``None`` if it is incomplete."""
        buf = self._buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return False if len(buf) > MAX_HEAD else None
        if end > MAX_HEAD:
            return False
        head = bytes(buf[:end])
        heads = self._srv.heads
        try:
            parsed = heads[head]
        except KeyError:
            parsed = self._srv.parse_head(head)
            if end <= HEAD_CACHE_BYTES:
                if len(heads) >= HEAD_CACHE:
                    heads.clear()
                heads[head] = parsed
        if parsed is None:
            return False
        route, path, length = parsed
        return route, path, end + 4, end + 4 + length

    async def _serve(self, route: Any, path: str, body: bytes) -> None:
        try:
            status, payload = await self._srv.answer(route, body, path)
        except BaseException as e:  # cancelled (shutdown), or the service lost a connection
            self.task = None
            if self._transport is not None:
                self._transport.close()  # no answer: the client sees the connection end
            if isinstance(e, ConnectionError):
                return
            raise
        self.task = None
        t = self._transport
        if t is None:
            return  # the client left; the request itself took effect
        t.write(response_bytes(status, payload))
        self._last = self._srv.loop.time()
        if self._closing:
            t.close()
        elif not self._write_paused:
            self._next()

    def _handoff(self, t: asyncio.Transport) -> None:
        """Give the connection and everything buffered to aiohttp's protocol for good."""
        srv = self._srv
        srv.handoffs += 1
        srv.conns.discard(self)
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        self._transport = None
        data = bytes(self._buf)
        self._buf.clear()
        proto = srv.inner()
        t.set_protocol(proto)
        proto.connection_made(t)
        if data:
            proto.data_received(data)

    # ------------------------------------------------------------ idle and shutdown

    def _on_idle(self) -> None:
        """aiohttp's keep-alive timeout: a connection with no request in flight for that
        long (a half-sent one counts as none) is closed."""
        self._idle = None
        t = self._transport
        if t is None:
            return
        loop = self._srv.loop
        due = self._last + self._srv.keepalive_timeout
        if self.task is None and loop.time() >= due:
            t.close()
            return
        self._idle = loop.call_at(max(due, loop.time() + 1.0), self._on_idle)

    def close_when_idle(self) -> None:
        self._closing = True
        if self.task is None and self._transport is not None:
            self._transport.close()

    def abort(self) -> None:
        if self.task is not None:
            self.task.cancel()
        if self._transport is not None:
            self._transport.close()


def install(app: web.Application, routes: dict[bytes, Any], answer: Answer,
            max_body: int) -> None:
    """Serve ``routes`` (exact paths, ``POST``) through :class:`FastServer` when ``app``
    runs, unless something must see every request: middlewares, response signals or an
    enabled access log (then aiohttp serves everything, as before).

    aiohttp builds a runner's server with ``app._make_handler``; this wraps it on this
    one instance (not a public aiohttp API: a runner of our own would be the clean hook,
    but the member's runner is built outside this package)."""
    make = app._make_handler

    def make_handler(*, loop: asyncio.AbstractEventLoop | None = None,
                     **kwargs: Any) -> web.Server | FastServer:
        inner: web.Server = make(loop=loop, **kwargs)  # this freezes the app
        access_log = kwargs.get("access_log", access_logger)
        logs = bool(access_log) and kwargs.get("access_log_class", AccessLogger)(
            access_log, kwargs.get("access_log_format", AccessLogger.LOG_FORMAT)).enabled
        if app.middlewares or app.on_response_prepare or logs:
            return inner
        return FastServer(inner, routes, answer, max_body,
                          kwargs.get("keepalive_timeout", _KEEPALIVE_DEFAULT),
                          loop or asyncio.get_running_loop())

    object.__setattr__(app, "_make_handler", make_handler)
