"""The etcd v3 JSON gateway over aiohttp: routes, body limits, error bodies.

``create_app(service)`` returns a plain :class:`aiohttp.web.Application`; the node adds
``/metrics`` and ``/debug/failpoints`` to it before starting. Every handler turns
:class:`EtcdError` into etcd's error body and any other exception into a 500 with the
same body and one log line: nothing a client sends can take the member down.

The unary routes (``kv/put``, ``kv/range``...) are also served, byte for byte alike, by
:mod:`raftnode.api.fastpath` in front of aiohttp: the hot path of a busy leader, where
aiohttp's per-request machinery cost more CPU than raft and the store together.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from raftnode.api import codec, fastpath
from raftnode.api.codec import Json
from raftnode.api.errors import (
    error_body,
    error_response,
    from_exception,
    http_status,
    stream_error_chunk,
)
from raftnode.api.service import ETCD_CLUSTER_VERSION, ETCD_VERSION, KVService
from raftnode.mvcc.codec import encode_request
from raftnode.mvcc.errors import (
    ErrRequestTooLarge,
    EtcdError,
    GrpcCode,
    InvalidRequest,
)
from raftnode.mvcc.messages import (
    DeleteRangeResponse,
    LeaseGrantResponse,
    PutResponse,
    Response,
    TxnResponse,
    WriteRequest,
)
from raftnode.mvcc.validate import DEFAULT_MAX_TXN_OPS, check_request
from raftnode.watch import stream as watch_stream
from raftnode.watch.hub import WatchHub

log = logging.getLogger("raftnode.api")

DEFAULT_MAX_REQUEST_BYTES = int(1.5 * 1024 * 1024)
JSON = "application/json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Unary = Callable[[Json, int], Awaitable[Json]]


class _TooLarge(Exception):
    pass


async def _read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise _TooLarge()
    content = request.content
    if content.is_eof():  # the whole body came with the head (small requests): one call
        body = content.read_nowait()
        if len(body) > limit:
            raise _TooLarge()
        return body
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.readany()
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise _TooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def _internal(e: BaseException, request: web.Request) -> web.Response:
    log.error("internal error serving %s: %s", request.path, e, exc_info=e)
    return error_response(f"raftnode: internal error: {type(e).__name__}: {e}", GrpcCode.UNKNOWN)


def _too_large() -> web.Response:
    resp = error_response(ErrRequestTooLarge.message, ErrRequestTooLarge.code)
    resp.force_close()  # the unread rest of the body is not worth draining
    return resp


class Gateway:
    """Handlers bound to one service; see :func:`create_app`."""

    def __init__(self, service: KVService, max_request_bytes: int, max_txn_ops: int,
                 watch_hub: WatchHub | None = None) -> None:
        self.service = service
        self.watch_hub = watch_hub
        self.max_request_bytes = max_request_bytes
        self.max_txn_ops = max_txn_ops
        # a JSON body may carry base64 of up to max_request_bytes of binary request
        self.max_body_bytes = max_request_bytes * 4 // 3 + 64 * 1024

    async def answer(self, fn: Unary, body: bytes, path: str) -> tuple[int, bytes]:
        """A unary route's HTTP status and JSON body for a request body. Both HTTP paths
        (aiohttp's and :mod:`raftnode.api.fastpath`) answer through here, so they agree."""
        try:
            out = await fn(codec.parse_body(body), len(body))
            return 200, orjson.dumps(out)
        except EtcdError as e:
            return http_status(e.code), error_body(e.message, e.code)
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as e:
            log.error("internal error serving %s: %s", path, e, exc_info=e)
            return 500, error_body(f"raftnode: internal error: {type(e).__name__}: {e}",
                                   GrpcCode.UNKNOWN)

    def unary(self, fn: Unary) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                body = await _read_body(request, self.max_body_bytes)
            except _TooLarge:
                return _too_large()
            except (asyncio.CancelledError, web.HTTPException, ConnectionError):
                raise
            except Exception as e:
                return _internal(e, request)
            status, payload = await self.answer(fn, body, request.path)
            return web.Response(body=payload, status=status, content_type=JSON)
        return handler

    def _hdr(self, revision: int | None = None) -> Json:
        return codec.header_json(self.service.header(), revision)

    def _write(self, req: WriteRequest, body_size: int) -> Awaitable[Response]:
        """Check, then propose (a plain function: one coroutine frame less per write)."""
        check_request(req, self.max_txn_ops)
        # etcd limits the binary request, not its JSON (base64 inflates bytes by 4/3)
        if body_size > self.max_request_bytes and \
                len(encode_request(req)) > self.max_request_bytes:
            raise ErrRequestTooLarge()
        return self.service.write(req)

    # ----------------------------------------------------------------- KV

    async def range(self, d: Json, size: int) -> Json:
        req = codec.range_request(d)
        check_request(req, self.max_txn_ops)
        r = await self.service.read(req, serializable=req.serializable)
        assert not isinstance(r, TxnResponse)
        return codec.range_json(r, self._hdr(r.revision))

    async def put(self, d: Json, size: int) -> Json:
        r = await self._write(codec.put_request(d), size)
        assert isinstance(r, PutResponse)
        return codec.put_json(r, self._hdr(r.revision))

    async def delete_range(self, d: Json, size: int) -> Json:
        r = await self._write(codec.delete_range_request(d), size)
        assert isinstance(r, DeleteRangeResponse)
        return codec.delete_range_json(r, self._hdr(r.revision))

    async def txn(self, d: Json, size: int) -> Json:
        req = codec.txn_request(d)
        r: Response
        if codec.is_read_only(req):
            check_request(req, self.max_txn_ops)
            r = await self.service.read(req, serializable=codec.is_serializable(req))
        else:
            r = await self._write(req, size)
        assert isinstance(r, TxnResponse)
        return codec.txn_json(r, self._hdr(r.revision))

    async def compaction(self, d: Json, size: int) -> Json:
        r = await self._write(codec.compaction_request(d), size)
        return {"header": self._hdr(r.revision)}

    # -------------------------------------------------------------- lease

    async def lease_grant(self, d: Json, size: int) -> Json:
        r = await self._write(codec.lease_grant_request(d), size)
        assert isinstance(r, LeaseGrantResponse)
        return codec.lease_grant_json(r, self._hdr(r.revision))

    async def lease_revoke(self, d: Json, size: int) -> Json:
        r = await self._write(codec.lease_revoke_request(d), size)
        return {"header": self._hdr(r.revision)}

    async def lease_ttl(self, d: Json, size: int) -> Json:
        r = await self.service.lease_time_to_live(codec.lease_ttl_request(d))
        return codec.lease_ttl_json(r, self._hdr(r.revision))

    async def lease_leases(self, d: Json, size: int) -> Json:
        r = await self.service.lease_leases()
        return codec.lease_leases_json(r, self._hdr(r.revision))

    async def lease_keepalive(self, request: web.Request) -> web.StreamResponse:
        """One ``{"result":...}`` line (its own HTTP chunk) per request object in the body,
        then the response ends, as etcd does when the client closes its side."""
        try:
            body = await _read_body(request, self.max_body_bytes)
            ids = [codec.lease_id(d) for d in _json_stream(body)]
        except EtcdError as e:
            return from_exception(e)
        except _TooLarge:
            return _too_large()
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as e:
            return _internal(e, request)
        resp = web.StreamResponse(headers={"Content-Type": JSON})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for lid in ids:
            try:
                ttl = await self.service.lease_keepalive(lid)
                line = orjson.dumps({"result": codec.keepalive_json(lid, ttl, self._hdr())})
            except EtcdError as e:
                line = stream_error_chunk(e.message, e.code)
            except (asyncio.CancelledError, ConnectionError):
                raise
            except Exception as e:
                log.error("internal error in lease keepalive: %s", e, exc_info=e)
                line = stream_error_chunk(f"raftnode: internal error: {e}", GrpcCode.UNKNOWN)
            await resp.write(line + b"\n")
        await resp.write_eof()
        return resp

    async def watch(self, request: web.Request) -> web.StreamResponse:
        """The watch stream (raftnode.watch.stream), served from this member's hub."""
        if self.watch_hub is None:
            return error_response("raftnode: watch is not enabled on this member",
                                  GrpcCode.UNIMPLEMENTED)
        return await watch_stream.serve(request, self.watch_hub, self.service,
                                        max_object_bytes=self.max_body_bytes)

    # -------------------------------------------------------- maintenance

    async def status(self, d: Json, size: int) -> Json:
        s = await self.service.status()
        return codec.status_json(s, self._hdr())

    async def hash(self, d: Json, size: int) -> Json:
        h = await self.service.hash()
        return codec.hash_json(h, self._hdr())

    async def hash_kv(self, d: Json, size: int) -> Json:
        r = await self.service.hash_kv(codec.revision(d))
        return codec.hash_kv_json(r, self._hdr(r.revision))

    async def transfer_leadership(self, d: Json, size: int) -> Json:
        await self.service.transfer_leadership(codec.target_id(d))
        return {"header": self._hdr()}

    async def snapshot(self, request: web.Request) -> web.StreamResponse:
        """etcd's stream: ``{"result":{"header","remaining_bytes","blob"}}`` lines; the
        data is followed by its SHA-256 (32 bytes), as etcd appends to the db."""
        try:
            await _read_body(request, self.max_body_bytes)
            snap = await self.service.snapshot()
        except EtcdError as e:
            return from_exception(e)
        except _TooLarge:
            return _too_large()
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as e:
            return _internal(e, request)
        resp = web.StreamResponse(headers={"Content-Type": JSON})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        header = self._hdr(snap.revision or None)
        remaining = snap.size + 32
        digest = hashlib.sha256()
        try:
            async for chunk in snap.chunks:
                digest.update(chunk)
                remaining -= len(chunk)
                await resp.write(orjson.dumps(
                    {"result": codec.snapshot_chunk_json(remaining, chunk, header)}) + b"\n")
            assert remaining == 32, "snapshot stream shorter or longer than announced"
            await resp.write(orjson.dumps(
                {"result": codec.snapshot_chunk_json(0, digest.digest(), header)}) + b"\n")
        except EtcdError as e:
            await resp.write(stream_error_chunk(e.message, e.code) + b"\n")
        except (asyncio.CancelledError, ConnectionError):
            raise
        except Exception as e:
            log.error("internal error streaming a snapshot: %s", e, exc_info=e)
            await resp.write(stream_error_chunk(f"raftnode: internal error: {e}",
                                                GrpcCode.UNKNOWN) + b"\n")
        await resp.write_eof()
        return resp

    # ------------------------------------------------------------ cluster

    def _cluster_hdr(self) -> Json:
        return codec.header_json(self.service.header(), 0)

    async def member_list(self, d: Json, size: int) -> Json:
        ms = await self.service.member_list(linearizable=codec.linearizable(d))
        return codec.members_json(ms, self._cluster_hdr())

    async def member_add(self, d: Json, size: int) -> Json:
        m, ms = await self.service.member_add(codec.peer_urls(d), codec.is_learner(d))
        out = {"header": self._cluster_hdr(), "member": codec.member_json(m)}
        out.update(codec.members_json(ms, out["header"]))
        return out

    async def member_remove(self, d: Json, size: int) -> Json:
        ms = await self.service.member_remove(codec.member_id(d))
        return codec.members_json(ms, self._cluster_hdr())

    async def member_update(self, d: Json, size: int) -> Json:
        ms = await self.service.member_update(codec.member_id(d), codec.peer_urls(d))
        return codec.members_json(ms, self._cluster_hdr())

    async def member_promote(self, d: Json, size: int) -> Json:
        ms = await self.service.member_promote(codec.member_id(d))
        return codec.members_json(ms, self._cluster_hdr())

    # ------------------------------------------------------------- plain

    async def version(self, request: web.Request) -> web.StreamResponse:
        return web.Response(body=orjson.dumps(
            {"etcdserver": ETCD_VERSION, "etcdcluster": ETCD_CLUSTER_VERSION}), content_type=JSON)

    async def health(self, request: web.Request) -> web.StreamResponse:
        try:
            h = await self.service.health()
        except Exception as e:
            return web.Response(body=orjson.dumps({"health": "false", "reason": str(e)}),
                                status=503, content_type=JSON)
        return web.Response(body=orjson.dumps({"health": "true" if h.healthy else "false",
                                               "reason": h.reason}),
                            status=200 if h.healthy else 503, content_type=JSON)


def _json_stream(body: bytes) -> list[Json]:
    """A body of concatenated JSON objects (grpc-gateway's streaming request form)."""
    try:
        text = body.decode()
    except UnicodeDecodeError:
        raise InvalidRequest("request body is not UTF-8") from None
    dec = json.JSONDecoder()
    out: list[Json] = []
    pos, n = 0, len(text)
    while True:
        while pos < n and text[pos] in " \t\r\n":
            pos += 1
        if pos >= n:
            return out
        try:
            obj, pos = dec.raw_decode(text, pos)
        except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
            raise InvalidRequest(f"invalid JSON in request body: {e}") from None
        if obj is None:
            obj = {}
        if not isinstance(obj, dict):
            raise InvalidRequest("request body must be JSON objects")
        out.append(obj)


def create_app(service: KVService, *, max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
               max_txn_ops: int = DEFAULT_MAX_TXN_OPS, watch_hub: WatchHub | None = None,
               **app_kwargs: Any) -> web.Application:
    """The gateway as an aiohttp app. Add more routes (``/metrics``...) before it starts.
    ``watch_hub`` serves ``/v3/watch`` (without one the route answers Unimplemented)."""
    gw = Gateway(service, max_request_bytes, max_txn_ops, watch_hub)
    app = web.Application(client_max_size=gw.max_body_bytes + 1, **app_kwargs)
    unary: dict[str, Unary] = {
        "kv/range": gw.range, "kv/put": gw.put, "kv/deleterange": gw.delete_range,
        "kv/txn": gw.txn, "kv/compaction": gw.compaction,
        "lease/grant": gw.lease_grant, "lease/revoke": gw.lease_revoke,
        "kv/lease/revoke": gw.lease_revoke, "lease/timetolive": gw.lease_ttl,
        "kv/lease/timetolive": gw.lease_ttl, "lease/leases": gw.lease_leases,
        "kv/lease/leases": gw.lease_leases,
        "maintenance/status": gw.status, "maintenance/hash": gw.hash,
        "maintenance/hashkv": gw.hash_kv,
        "maintenance/transfer-leadership": gw.transfer_leadership,
        "cluster/member/list": gw.member_list, "cluster/member/add": gw.member_add,
        "cluster/member/remove": gw.member_remove, "cluster/member/update": gw.member_update,
        "cluster/member/promote": gw.member_promote,
    }
    streams: dict[str, Handler] = {
        "lease/keepalive": gw.lease_keepalive, "maintenance/snapshot": gw.snapshot,
        "watch": gw.watch,
    }
    fast: dict[bytes, Unary] = {}
    for prefix in ("/v3/", "/v3beta/"):
        for path, fn in unary.items():
            app.router.add_post(prefix + path, gw.unary(fn))
            fast[(prefix + path).encode()] = fn
        for path, h in streams.items():
            app.router.add_post(prefix + path, h)
    if watch_hub is not None:
        hub = watch_hub

        async def end_watches(app: web.Application) -> None:
            hub.close_streams()  # long-lived streams must not hold up the shutdown
        app.on_shutdown.append(end_watches)
    app.router.add_get("/version", gw.version)
    app.router.add_get("/health", gw.health)
    fastpath.install(app, fast, gw.answer, gw.max_body_bytes)
    return app


__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "Gateway", "create_app", "http_status"]
