"""msgpack encoding of state machine requests, for raft log entries.

Each request is a short array ``[tag, field, ...]`` with fields in declaration order and
trailing defaults dropped, so a plain put costs a few dozen bytes. Decoding checks types:
a corrupt or foreign entry raises :class:`RequestDecodeError` rather than applying junk.
"""

from __future__ import annotations

from dataclasses import fields
from enum import IntEnum
from typing import Any, cast

import msgpack

from raftnode.mvcc.errors import RequestDecodeError
from raftnode.mvcc.messages import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseLeasesRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    OpRequest,
    PutRequest,
    RangeRequest,
    Request,
    SortOrder,
    SortTarget,
    TxnRequest,
)

_TAGS: dict[type, int] = {
    PutRequest: 1, DeleteRangeRequest: 2, TxnRequest: 3, RangeRequest: 4, CompactionRequest: 5,
    LeaseGrantRequest: 6, LeaseRevokeRequest: 7, LeaseTimeToLiveRequest: 8,
    LeaseLeasesRequest: 9,
}
_CLASSES = {tag: cls for cls, tag in _TAGS.items()}
_FIELDS: dict[type, tuple[str, ...]] = {cls: tuple(f.name for f in fields(cls)) for cls in _TAGS}
_DEFAULTS: dict[type, tuple[Any, ...]] = {
    cls: tuple(f.default for f in fields(cls)) for cls in _TAGS}

# field name -> expected python type(s) after msgpack decoding
_TYPES: dict[str, type | tuple[type, ...]] = {
    "key": bytes, "range_end": bytes, "value": bytes, "limit": int, "revision": int,
    "lease": int, "min_mod_revision": int, "max_mod_revision": int, "min_create_revision": int,
    "max_create_revision": int, "serializable": bool, "keys_only": bool, "count_only": bool,
    "prev_kv": bool, "ignore_value": bool, "ignore_lease": bool, "physical": bool,
    "TTL": int, "ID": int, "keys": bool, "sort_order": int, "sort_target": int,
}
_ENUMS = {"sort_order": SortOrder, "sort_target": SortTarget}


def _to_wire(req: Request | Compare) -> list[Any]:
    if type(req) is PutRequest and not (req.lease or req.prev_kv or req.ignore_value
                                        or req.ignore_lease):
        # the common put, without the generic loop: the same array the loop below makes
        return [1, req.key, req.value] if req.value else [1, req.key]
    if isinstance(req, TxnRequest):
        return [3, [_compare_to_wire(c) for c in req.compare],
                [_to_wire(op) for op in req.success], [_to_wire(op) for op in req.failure]]
    cls = type(req)
    vals = [getattr(req, name) for name in _FIELDS[cls]]
    defaults = _DEFAULTS[cls]
    n = len(vals)
    while n and vals[n - 1] == defaults[n - 1]:
        n -= 1
    return [_TAGS[cls], *(int(v) if isinstance(v, IntEnum) else v for v in vals[:n])]


def _compare_to_wire(c: Compare) -> list[Any]:
    return [c.key, int(c.target), int(c.result), c.value, c.range_end]


def encode_request(req: Request) -> bytes:
    """Request -> msgpack bytes (for a raft log entry)."""
    out: bytes = msgpack.packb(_to_wire(req), use_bin_type=True)
    return out


def decode_request(data: bytes) -> Request:
    """msgpack bytes -> request; :class:`RequestDecodeError` if they are not one."""
    try:
        obj = msgpack.unpackb(data, raw=False)
    except Exception as e:
        raise RequestDecodeError(f"undecodable request entry: {e}") from e
    return _from_wire(obj, depth=0)


def _from_wire(obj: Any, depth: int) -> Request:
    if type(obj) is list and 2 <= len(obj) <= 3 and type(obj[0]) is int and obj[0] == 1:
        # the common put ([1, key] or [1, key, value]); anything else checks field by field
        key = obj[1]
        value = obj[2] if len(obj) == 3 else b""
        if type(key) is bytes and type(value) is bytes:
            return PutRequest(key, value)
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], int):
        raise RequestDecodeError(f"request entry is not a tagged array: {obj!r:.80}")
    cls = _CLASSES.get(obj[0])
    if cls is None:
        raise RequestDecodeError(f"unknown request tag {obj[0]}")
    if cls is TxnRequest:
        if len(obj) != 4 or depth > 64:
            raise RequestDecodeError("malformed txn entry")
        return TxnRequest(tuple(_compare_from_wire(c) for c in obj[1]),
                          tuple(_op(o, depth) for o in obj[2]),
                          tuple(_op(o, depth) for o in obj[3]))
    names = _FIELDS[cls]
    vals = obj[1:]
    if len(vals) > len(names):
        raise RequestDecodeError(f"too many fields for {cls.__name__}")
    kw: dict[str, Any] = {}
    for name, v in zip(names, vals):
        want = _TYPES[name]
        if not isinstance(v, want) or (want is int and isinstance(v, bool)):
            raise RequestDecodeError(f"{cls.__name__}.{name}: bad type {type(v).__name__}")
        if name in _ENUMS:
            try:
                v = _ENUMS[name](cast(int, v))
            except ValueError as e:
                raise RequestDecodeError(f"{cls.__name__}.{name}: {e}") from e
        kw[name] = v
    try:
        req: Request = cls(**kw)
    except Exception as e:
        raise RequestDecodeError(f"bad {cls.__name__}: {e}") from e
    return req


def _op(obj: Any, depth: int) -> OpRequest:
    req = _from_wire(obj, depth + 1)
    if not isinstance(req, RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest):
        raise RequestDecodeError(f"{type(req).__name__} is not a txn op")
    return req


def _compare_from_wire(obj: Any) -> Compare:
    try:
        key, target, result, value, range_end = obj
        t, r = CompareTarget(target), CompareResult(result)
    except Exception as e:
        raise RequestDecodeError(f"malformed compare: {obj!r:.80}") from e
    ok_value = isinstance(value, bytes) if t is CompareTarget.VALUE else (
        isinstance(value, int) and not isinstance(value, bool))
    if not (isinstance(key, bytes) and isinstance(range_end, bytes) and ok_value):
        raise RequestDecodeError(f"malformed compare: {obj!r:.80}")
    return Compare(key, t, r, value, range_end)
