"""``POST /v3/watch``: one HTTP exchange = one etcd watch stream.

Two coroutines per connection (not per watcher): the handler writes, a reader task parses
request objects as they arrive and applies them to the :class:`WatchStream`. The response
is chunked; every message is written by its own ``write`` call, so it is exactly one HTTP
chunk (etcd3gw parses chunk by chunk), and goes to the socket at once.

The stream outlives the request body (etcd keeps sending after the client's EOF). It ends
when the client disconnects (noticed on a failed write or by polling the transport), or
after a bad request object: as gRPC ends a stream on error, the error is sent as
grpc-gateway's stream error chunk and the response ends. A bad *first* object is refused
with an ordinary HTTP error, before any chunk.

A stream opened with clientv3's require-leader metadata (``Grpc-Metadata-Hasleader: true``)
is refused with 503 ``etcdserver: no leader`` when the member knows no leader, and ended
with that stream error once the member has been without one for three election timeouts
(etcd's monitorLeader), so a watcher on a cut-off member moves to one that sees new events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson
from aiohttp import web

from raftnode.api import codec as api
from raftnode.api.errors import from_exception, stream_error_chunk
from raftnode.api.service import KVService, ResponseHeader
from raftnode.mvcc.errors import EtcdError, GrpcCode
from raftnode.watch.codec import ObjectSplitter, WatchCancel, WatchRequest, encode, parse_request
from raftnode.watch.hub import WatchCreate, WatchHub, WatchStream

log = logging.getLogger("raftnode.watch")

NO_LEADER = "etcdserver: no leader"

#: how often an idle stream checks that its client is still connected (seconds)
POLL_INTERVAL = 0.5

#: clientv3's WithRequireLeader, as grpc-gateway passes gRPC metadata (``hasleader=true``)
REQUIRE_LEADER_HEADER = "Grpc-Metadata-Hasleader"
#: etcd's monitorLeader ends such streams after this many election timeouts without a leader
NO_LEADER_TIMEOUTS = 3


def apply(stream: WatchStream, req: WatchRequest | None) -> None:
    if req is None:
        return
    if isinstance(req, WatchCreate):
        stream.create(req)
    elif isinstance(req, WatchCancel):
        stream.cancel(req.watch_id)
    else:
        stream.request_progress()


class _Headers:
    """Encoded response headers, recomputed only when the member's header changes."""

    __slots__ = ("_bytes", "_key", "_service")

    def __init__(self, service: KVService) -> None:
        self._service = service
        self._key: tuple[ResponseHeader, int] | None = None
        self._bytes = b""

    def get(self, revision: int) -> bytes:
        key = (self._service.header(), revision)
        if key != self._key:
            self._key = key
            self._bytes = orjson.dumps(api.header_json(key[0], revision))
        return self._bytes


async def _read_rest(request: web.Request, splitter: ObjectSplitter,
                     stream: WatchStream) -> None:
    """Apply request objects as they arrive; return at body EOF, raise on a bad one."""
    content = request.content
    while True:
        chunk = await content.readany()
        if not chunk:
            splitter.finish()
            return
        for raw in splitter.feed(chunk):
            apply(stream, parse_request(raw))
            while stream.control_full and not stream.closed:
                # the client sends requests faster than it reads answers: stop reading
                await asyncio.sleep(0.01)


def _wake_and_retrieve(wake: asyncio.Event) -> Callable[[asyncio.Task[None]], None]:
    def done(t: asyncio.Task[None]) -> None:
        if not t.cancelled():
            t.exception()  # retrieved here; the writer re-raises it if still running
        wake.set()
    return done


def _gone(request: web.Request) -> bool:
    t = request.transport
    return t is None or t.is_closing()


async def serve(request: web.Request, hub: WatchHub, service: KVService, *,
                max_object_bytes: int) -> web.StreamResponse:
    """The watch handler (see the module docstring)."""
    require_leader = request.headers.get(REQUIRE_LEADER_HEADER, "").lower() == "true"
    if require_leader and not service.has_leader():
        # etcd's stream interceptor refuses before the handler runs: 503, a stream error body
        refused = web.Response(status=503, content_type="application/json",
                               body=stream_error_chunk(NO_LEADER, GrpcCode.UNAVAILABLE))
        refused.force_close()
        return refused
    splitter = ObjectSplitter(max_object_bytes)
    first: list[bytes] = []
    eof = False
    try:
        while not first:
            chunk = await request.content.readany()
            if not chunk:
                splitter.finish()
                eof = True
                break
            first = splitter.feed(chunk)
        first_req = parse_request(first[0]) if first else None
    except EtcdError as e:
        refused = from_exception(e)
        refused.force_close()
        return refused

    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    stream = hub.open_stream(wake.set)
    headers = _Headers(service)
    reader: asyncio.Task[None] | None = None
    try:
        apply(stream, first_req)
        for raw in first[1:]:
            apply(stream, parse_request(raw))
        if not eof:
            reader = loop.create_task(_read_rest(request, splitter, stream))
            reader.add_done_callback(_wake_and_retrieve(wake))
        progress_interval = hub.progress_interval
        next_tick = loop.time() + progress_interval
        leaderless_since: float | None = None
        while True:
            wake.clear()  # before draining, so no wake-up between drain and wait is lost
            hub.check()
            while not stream.closed and (msg := stream.next_message()) is not None:
                await resp.write(encode(msg, headers.get(msg.revision)))
            if reader is not None and reader.done():
                exc = None if reader.cancelled() else reader.exception()
                reader = None  # body EOF: keep streaming, as etcd does
                if exc is not None:
                    raise exc
            if stream.closed or _gone(request):
                break
            now = loop.time()
            if require_leader:
                # a member cut off from the leader must not keep a watcher silently waiting
                # for events the majority goes on producing: end the stream, as etcd does
                if service.has_leader():
                    leaderless_since = None
                elif leaderless_since is None:
                    leaderless_since = now
                elif now - leaderless_since >= NO_LEADER_TIMEOUTS * service.election_timeout:
                    await resp.write(stream_error_chunk(NO_LEADER, GrpcCode.UNAVAILABLE) + b"\n")
                    break
            if now >= next_tick:
                next_tick = now + progress_interval
                stream.tick()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), min(next_tick - now, POLL_INTERVAL))
    except EtcdError as e:  # a bad request object after the stream started
        with contextlib.suppress(ConnectionError):
            await resp.write(stream_error_chunk(e.message, e.code) + b"\n")
    except ConnectionError:
        pass  # the client went away
    except Exception as e:
        log.error("internal error in a watch stream: %s", e, exc_info=e)
        with contextlib.suppress(ConnectionError):
            await resp.write(stream_error_chunk(f"raftnode: internal error: {e}",
                                                GrpcCode.UNKNOWN) + b"\n")
    finally:
        if reader is not None:
            reader.cancel()
        stream.close()
    with contextlib.suppress(ConnectionError):
        await resp.write_eof()
    return resp
