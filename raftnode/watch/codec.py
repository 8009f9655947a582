"""The watch stream's JSON: request objects in, ``{"result": ...}`` lines out.

Requests: the body is a stream of concatenated JSON objects (grpc-gateway decodes it with
a ``json.Decoder`` loop); :class:`ObjectSplitter` cuts complete objects out of whatever
chunks arrive, so a create request is served as soon as its closing brace is read.
Fields follow the gateway's input rules (see raftnode.api.codec).

Responses: built by concatenating pre-encoded parts, because one change fans out to many
watchers: a batch's events are encoded once (with and without ``prev_kv``) and shared.
Key order is the proto field order; zero values are omitted.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

from raftnode.api import codec as api
from raftnode.api.codec import Json
from raftnode.mvcc.errors import InvalidRequest
from raftnode.mvcc.messages import Event, EventType
from raftnode.watch.hub import Batch, FilterType, WatchCreate, WatchResponse

_WS = frozenset(b" \t\r\n")


class ObjectSplitter:
    """Incremental splitter of a byte stream into top-level JSON objects.

    Tracks only braces, strings and escapes (UTF-8 continuation bytes are >= 0x80, so
    they never look like structure). Anything at the top level but whitespace and
    objects is an :class:`InvalidRequest`, as is one object larger than ``limit``."""

    __slots__ = ("_buf", "_depth", "_esc", "_in_str", "_pos", "_start", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._buf = bytearray()
        self._pos = 0        # next byte to scan
        self._start = -1     # start of the current object, -1 between objects
        self._depth = 0
        self._in_str = False
        self._esc = False

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf
        buf += data
        out: list[bytes] = []
        i, n = self._pos, len(buf)
        depth, in_str, esc, start = self._depth, self._in_str, self._esc, self._start
        while i < n:
            c = buf[i]
            if start < 0:
                if c == 0x7B:  # {
                    start, depth = i, 1
                elif c not in _WS:
                    raise InvalidRequest("invalid JSON in request body: expected an object "
                                         f"at byte {i}, got {chr(c)!r}")
            elif in_str:
                if esc:
                    esc = False
                elif c == 0x5C:  # backslash
                    esc = True
                elif c == 0x22:  # "
                    in_str = False
            elif c == 0x22:
                in_str = True
            elif c == 0x7B or c == 0x5B:
                depth += 1
            elif c == 0x7D or c == 0x5D:
                depth -= 1
                if depth == 0:
                    if i + 1 - start > self.limit:
                        raise InvalidRequest(f"request object larger than {self.limit} bytes")
                    out.append(bytes(buf[start:i + 1]))
                    start = -1
            i += 1
        if start < 0:
            del buf[:]
            i = 0
        elif start > 0:
            del buf[:start]
            i -= start
            start = 0
        if start == 0 and len(buf) > self.limit:
            raise InvalidRequest(f"request object larger than {self.limit} bytes")
        self._pos, self._depth, self._in_str, self._esc, self._start = i, depth, in_str, esc, start
        return out

    def finish(self) -> None:
        """The body ended: a partial object left over is an error."""
        if self._start >= 0:
            raise InvalidRequest("invalid JSON in request body: unexpected end of input "
                                 "inside an object")


@dataclass(slots=True, frozen=True)
class WatchCancel:
    watch_id: int


@dataclass(slots=True, frozen=True)
class WatchProgress:
    pass


WatchRequest = WatchCreate | WatchCancel | WatchProgress


def _filters(d: Json) -> frozenset[FilterType]:
    return frozenset(api.field_enum({"filters": v}, "filters", FilterType)
                     for v in api.field_list(d, "filters"))


def create_request(d: Json) -> WatchCreate:
    return WatchCreate(
        key=api.field_bytes(d, "key"), range_end=api.field_bytes(d, "range_end"),
        start_revision=api.field_int(d, "start_revision"),
        progress_notify=api.field_bool(d, "progress_notify"), filters=_filters(d),
        prev_kv=api.field_bool(d, "prev_kv"), watch_id=api.field_int(d, "watch_id"))


def parse_request(raw: bytes) -> WatchRequest | None:
    """One request object; ``None`` for an empty one (etcd ignores it)."""
    try:
        d = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"invalid JSON in request body: {e}") from None
    if not isinstance(d, dict):
        raise InvalidRequest("request body must be JSON objects")
    found: list[WatchRequest] = []
    c = api.field_obj(d, "create_request")
    if c is not None:
        found.append(create_request(c))
    x = api.field_obj(d, "cancel_request")
    if x is not None:
        found.append(WatchCancel(api.field_int(x, "watch_id")))
    if api.field_obj(d, "progress_request") is not None:
        found.append(WatchProgress())
    if len(found) > 1:
        raise InvalidRequest("watch request: more than one of create_request|cancel_request|"
                             "progress_request is set")
    return found[0] if found else None


# ----------------------------------------------------------------- output


def event_json(ev: Event, prev_kv: bool) -> Json:
    out: Json = {"type": "DELETE"} if ev.type is EventType.DELETE else {}
    out["kv"] = api.kv_json(ev.kv)
    if prev_kv and ev.prev_kv is not None:
        out["prev_kv"] = api.kv_json(ev.prev_kv)
    return out


def batch_json(batch: Batch, prev_kv: bool) -> bytes:
    """The ``events`` array of a batch, encoded once per form and cached on the batch."""
    slot = 1 if prev_kv else 0
    cached = batch.json[slot]
    if cached is None:
        cached = batch.json[slot] = orjson.dumps([event_json(e, prev_kv) for e in batch.events])
    return cached


def encode(resp: WatchResponse, header: bytes) -> bytes:
    """One stream line: ``{"result":{...}}\\n`` (the caller writes it as its own chunk)."""
    parts = [b'{"result":{"header":', header]
    if resp.watch_id:
        parts.append(b',"watch_id":"%d"' % resp.watch_id)
    if resp.created:
        parts.append(b',"created":true')
    if resp.canceled:
        parts.append(b',"canceled":true')
    if resp.compact_revision:
        parts.append(b',"compact_revision":"%d"' % resp.compact_revision)
    if resp.cancel_reason:
        parts.append(b',"cancel_reason":' + orjson.dumps(resp.cancel_reason))
    if resp.events is not None:
        parts.append(b',"events":' + batch_json(resp.events, resp.prev_kv))
    parts.append(b"}}\n")
    return b"".join(parts)
