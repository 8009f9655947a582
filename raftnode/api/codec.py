"""JSON <-> internal messages, with the etcd gateway's conventions.

Input (grpc-gateway/jsonpb rules): proto or lowerCamelCase field names, unknown fields
ignored, bytes as base64 (standard or URL-safe, padding optional), int64 as a JSON number
or a decimal string, enums by name or number, ``null`` as unset. Anything else is an
:class:`InvalidRequest` (HTTP 400) naming the field.

Output: proto field names, bytes base64, 64-bit ints as decimal strings, enums by name,
zero values omitted, keys in proto field order.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from enum import IntEnum
from typing import Any, TypeVar

import orjson

from raftnode.api.service import Member, ResponseHeader, StatusInfo
from raftnode.mvcc.errors import ErrInvalidSortOption, ErrKeyNotFound, InvalidRequest
from raftnode.mvcc.messages import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    HashKVResponse,
    KeyValue,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseLeasesResponse,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    OpRequest,
    OpResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)

Json = dict[str, Any]
E = TypeVar("E", bound=IntEnum)

_INT64_MIN, _INT64_MAX, _UINT64_MAX = -(1 << 63), (1 << 63) - 1, (1 << 64) - 1
_MAX_TXN_DEPTH = 32

# ------------------------------------------------------------------- input


def parse_body(body: bytes) -> Json:
    """The request message: a JSON object; an empty body (or ``null``) is an empty one."""
    if not body.strip():
        return {}
    try:
        obj = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise InvalidRequest(f"invalid JSON in request body: {e}") from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise InvalidRequest(f"request body must be a JSON object, not {_kind(obj)}")
    return obj


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(v), "null")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


_CAMEL: dict[str, str] = {}


def _get(d: Json, name: str) -> Any:
    v = d.get(name)
    if v is None:
        alt = _CAMEL.get(name)
        if alt is None:
            alt = _CAMEL[name] = _camel(name)
        if alt != name:
            v = d.get(alt)
    return v


def _bytes(d: Json, name: str) -> bytes:
    v = _get(d, name)
    if v is None:
        return b""
    if not isinstance(v, str):
        raise InvalidRequest(f'field "{name}": expected a base64 string, got {_kind(v)}')
    if "-" in v or "_" in v:
        v = v.replace("-", "+").replace("_", "/")
    if len(v) % 4:
        v += "=" * (-len(v) % 4)
    try:
        return binascii.a2b_base64(v, strict_mode=True)
    except (binascii.Error, ValueError):
        raise InvalidRequest(f'field "{name}": illegal base64 data') from None


def _int(d: Json, name: str, lo: int = _INT64_MIN, hi: int = _INT64_MAX) -> int:
    v = _get(d, name)
    if v is None:
        return 0
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise InvalidRequest(f'field "{name}": expected an integer, got {_kind(v)}')
    if isinstance(v, str):
        s = v[1:] if v[:1] == "-" else v
        if not s.isdigit() or not s.isascii():
            raise InvalidRequest(f'field "{name}": invalid integer {v!r:.40}')
        v = int(v)
    if not lo <= v <= hi:
        raise InvalidRequest(f'field "{name}": {v} is out of range')
    return v


def _uint(d: Json, name: str) -> int:
    return _int(d, name, 0, _UINT64_MAX)


def _nonneg(d: Json, name: str) -> int:
    v = _int(d, name)
    if v < 0:
        raise InvalidRequest(f'field "{name}": must not be negative')
    return v


def _bool(d: Json, name: str) -> bool:
    v = _get(d, name)
    if v is None:
        return False
    if not isinstance(v, bool):
        raise InvalidRequest(f'field "{name}": expected true or false, got {_kind(v)}')
    return v


def _enum(d: Json, name: str, enum: type[E], bad: Callable[[], Exception] | None = None) -> E:
    v = _get(d, name)
    if v is None:
        return enum(0)
    try:
        if isinstance(v, str):
            return enum[v]
        if isinstance(v, int) and not isinstance(v, bool):
            return enum(v)
    except (KeyError, ValueError):
        pass
    if bad is not None:
        raise bad()
    names = "|".join(m.name for m in enum)
    raise InvalidRequest(f'field "{name}": unknown {enum.__name__} {v!r:.40} (one of {names})')


def _obj(d: Json, name: str) -> Json | None:
    v = _get(d, name)
    if v is None:
        return None
    if not isinstance(v, dict):
        raise InvalidRequest(f'field "{name}": expected an object, got {_kind(v)}')
    return v


def _list(d: Json, name: str) -> list[Any]:
    v = _get(d, name)
    if v is None:
        return []
    if not isinstance(v, list):
        raise InvalidRequest(f'field "{name}": expected an array, got {_kind(v)}')
    return v


def _objs(d: Json, name: str) -> list[Json]:
    out = _list(d, name)
    for item in out:
        if not isinstance(item, dict):
            raise InvalidRequest(f'field "{name}": expected objects, got {_kind(item)}')
    return out


def _strs(d: Json, name: str) -> list[str]:
    out = _list(d, name)
    for item in out:
        if not isinstance(item, str):
            raise InvalidRequest(f'field "{name}": expected strings, got {_kind(item)}')
    return out


# the field readers, shared with the watch stream's request parser (raftnode.watch.codec)
field_bytes, field_int, field_bool, field_obj, field_list, field_enum = (
    _bytes, _int, _bool, _obj, _list, _enum)


def _bad_sort() -> Exception:
    return ErrInvalidSortOption()


def range_request(d: Json) -> RangeRequest:
    return RangeRequest(
        _bytes(d, "key"), _bytes(d, "range_end"), _nonneg(d, "limit"), _int(d, "revision"),
        _enum(d, "sort_order", SortOrder, _bad_sort), _enum(d, "sort_target", SortTarget, _bad_sort),
        _bool(d, "serializable"), _bool(d, "keys_only"), _bool(d, "count_only"),
        _int(d, "min_mod_revision"), _int(d, "max_mod_revision"),
        _int(d, "min_create_revision"), _int(d, "max_create_revision"))


_PLAIN_PUT = frozenset({"key", "value"})


def put_request(d: Json) -> PutRequest:
    if _PLAIN_PUT.issuperset(d):  # the common body: no option, no camelCase alias to look up
        return PutRequest(_bytes(d, "key"), _bytes(d, "value"))
    return PutRequest(_bytes(d, "key"), _bytes(d, "value"), _int(d, "lease"), _bool(d, "prev_kv"),
                      _bool(d, "ignore_value"), _bool(d, "ignore_lease"))


def delete_range_request(d: Json) -> DeleteRangeRequest:
    return DeleteRangeRequest(_bytes(d, "key"), _bytes(d, "range_end"), _bool(d, "prev_kv"))


_UNION = {CompareTarget.VERSION: "version", CompareTarget.CREATE: "create_revision",
          CompareTarget.MOD: "mod_revision", CompareTarget.LEASE: "lease"}


def _compare(d: Json) -> Compare:
    target = _enum(d, "target", CompareTarget)
    value: int | bytes = (_bytes(d, "value") if target is CompareTarget.VALUE
                          else _int(d, _UNION[target]))
    return Compare(_bytes(d, "key"), target, _enum(d, "result", CompareResult), value,
                   _bytes(d, "range_end"))


_OPS: dict[str, Callable[[Json, int], OpRequest]] = {
    "request_range": lambda d, _: range_request(d),
    "request_put": lambda d, _: put_request(d),
    "request_delete_range": lambda d, _: delete_range_request(d),
    "request_txn": lambda d, depth: _txn(d, depth + 1),
}


def _op(d: Json, depth: int) -> OpRequest:
    found: OpRequest | None = None
    for name, parse in _OPS.items():
        sub = _obj(d, name)
        if sub is not None:
            if found is not None:
                raise InvalidRequest("request op: more than one of request_range|request_put|"
                                     "request_delete_range|request_txn is set")
            found = parse(sub, depth)
    if found is None:
        raise ErrKeyNotFound()  # etcd's answer to an empty RequestOp
    return found


def _txn(d: Json, depth: int = 0) -> TxnRequest:
    if depth > _MAX_TXN_DEPTH:
        raise InvalidRequest(f"txn nested deeper than {_MAX_TXN_DEPTH}")
    return TxnRequest(tuple(_compare(c) for c in _objs(d, "compare")),
                      tuple(_op(o, depth) for o in _objs(d, "success")),
                      tuple(_op(o, depth) for o in _objs(d, "failure")))


def txn_request(d: Json) -> TxnRequest:
    return _txn(d)


def compaction_request(d: Json) -> CompactionRequest:
    return CompactionRequest(_int(d, "revision"), _bool(d, "physical"))


def lease_grant_request(d: Json) -> LeaseGrantRequest:
    return LeaseGrantRequest(_int(d, "TTL"), _int(d, "ID"))


def lease_revoke_request(d: Json) -> LeaseRevokeRequest:
    return LeaseRevokeRequest(_int(d, "ID"))


def lease_ttl_request(d: Json) -> LeaseTimeToLiveRequest:
    return LeaseTimeToLiveRequest(_int(d, "ID"), _bool(d, "keys"))


def lease_id(d: Json) -> int:
    return _int(d, "ID")


def member_id(d: Json) -> int:
    return _uint(d, "ID")


def peer_urls(d: Json) -> list[str]:
    return _strs(d, "peerURLs")


def is_learner(d: Json) -> bool:
    return _bool(d, "isLearner")


def linearizable(d: Json) -> bool:
    return _bool(d, "linearizable")


def revision(d: Json) -> int:
    return _int(d, "revision")


def target_id(d: Json) -> int:
    return _uint(d, "targetID")


def is_read_only(t: TxnRequest) -> bool:
    """A txn with nothing but ranges (nested ones included) needs no consensus round."""
    return all(isinstance(op, RangeRequest) or (isinstance(op, TxnRequest) and is_read_only(op))
               for op in (*t.success, *t.failure))


def is_serializable(t: TxnRequest) -> bool:
    """etcd's isTxnSerializable: every range in it asks for a serializable read."""
    return all(op.serializable if isinstance(op, RangeRequest) else
               isinstance(op, TxnRequest) and is_serializable(op)
               for op in (*t.success, *t.failure))


# ------------------------------------------------------------------ output


def b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def header_json(h: ResponseHeader, revision: int | None = None) -> Json:
    """The top-level header; ``revision`` overrides the member's current one."""
    rev = h.revision if revision is None else revision
    out: Json = {}
    if h.cluster_id:
        out["cluster_id"] = str(h.cluster_id)
    if h.member_id:
        out["member_id"] = str(h.member_id)
    if rev:
        out["revision"] = str(rev)
    if h.raft_term:
        out["raft_term"] = str(h.raft_term)
    return out


def kv_json(kv: KeyValue) -> Json:
    out: Json = {"key": b64(kv.key)} if kv.key else {}
    if kv.create_revision:
        out["create_revision"] = str(kv.create_revision)
    if kv.mod_revision:
        out["mod_revision"] = str(kv.mod_revision)
    if kv.version:
        out["version"] = str(kv.version)
    if kv.value:
        out["value"] = b64(kv.value)
    if kv.lease:
        out["lease"] = str(kv.lease)
    return out


def range_json(r: RangeResponse, header: Json) -> Json:
    out: Json = {"header": header}
    if r.kvs:
        out["kvs"] = [kv_json(kv) for kv in r.kvs]
    if r.more:
        out["more"] = True
    if r.count:
        out["count"] = str(r.count)
    return out


def put_json(r: PutResponse, header: Json) -> Json:
    out: Json = {"header": header}
    if r.prev_kv is not None:
        out["prev_kv"] = kv_json(r.prev_kv)
    return out


def delete_range_json(r: DeleteRangeResponse, header: Json) -> Json:
    out: Json = {"header": header}
    if r.deleted:
        out["deleted"] = str(r.deleted)
    if r.prev_kvs:
        out["prev_kvs"] = [kv_json(kv) for kv in r.prev_kvs]
    return out


def _inner(r: OpResponse) -> Json:
    header: Json = {"revision": str(r.revision)} if r.revision else {}
    if isinstance(r, RangeResponse):
        return {"response_range": range_json(r, header)}
    if isinstance(r, PutResponse):
        return {"response_put": put_json(r, header)}
    if isinstance(r, DeleteRangeResponse):
        return {"response_delete_range": delete_range_json(r, header)}
    return {"response_txn": txn_json(r, {})}  # etcd leaves a nested txn's header empty


def txn_json(r: TxnResponse, header: Json) -> Json:
    out: Json = {"header": header}
    if r.succeeded:
        out["succeeded"] = True
    if r.responses:
        out["responses"] = [_inner(x) for x in r.responses]
    return out


def lease_grant_json(r: LeaseGrantResponse, header: Json) -> Json:
    out: Json = {"header": header}
    if r.ID:
        out["ID"] = str(r.ID)
    if r.TTL:
        out["TTL"] = str(r.TTL)
    return out


def lease_ttl_json(r: LeaseTimeToLiveResponse, header: Json) -> Json:
    out: Json = {"header": header}
    if r.ID:
        out["ID"] = str(r.ID)
    if r.TTL:
        out["TTL"] = str(r.TTL)
    if r.grantedTTL:
        out["grantedTTL"] = str(r.grantedTTL)
    if r.keys:
        out["keys"] = [b64(k) for k in r.keys]
    return out


def lease_leases_json(r: LeaseLeasesResponse, header: Json) -> Json:
    out: Json = {"header": header}
    if r.leases:
        out["leases"] = [{"ID": str(i)} for i in r.leases]
    return out


def keepalive_json(lease: int, ttl: int, header: Json) -> Json:
    out: Json = {"header": header}
    if lease:
        out["ID"] = str(lease)
    if ttl:
        out["TTL"] = str(ttl)
    return out


def member_json(m: Member) -> Json:
    out: Json = {}
    if m.ID:
        out["ID"] = str(m.ID)
    if m.name:
        out["name"] = m.name
    if m.peerURLs:
        out["peerURLs"] = list(m.peerURLs)
    if m.clientURLs:
        out["clientURLs"] = list(m.clientURLs)
    if m.isLearner:
        out["isLearner"] = True
    return out


def members_json(members: list[Member], header: Json) -> Json:
    out: Json = {"header": header}
    if members:
        out["members"] = [member_json(m) for m in members]
    return out


def status_json(s: StatusInfo, header: Json) -> Json:
    out: Json = {"header": header}
    if s.version:
        out["version"] = s.version
    for name in ("dbSize", "leader", "raftIndex", "raftTerm", "raftAppliedIndex"):
        v = getattr(s, name)
        if v:
            out[name] = str(v)
    if s.errors:
        out["errors"] = list(s.errors)
    if s.dbSizeInUse:
        out["dbSizeInUse"] = str(s.dbSizeInUse)
    if s.isLearner:
        out["isLearner"] = True
    return out


def hash_json(h: int, header: Json) -> Json:
    out: Json = {"header": header}
    if h:
        out["hash"] = h
    return out


def hash_kv_json(r: HashKVResponse, header: Json) -> Json:
    out: Json = {"header": header}
    if r.hash:
        out["hash"] = r.hash
    if r.compact_revision:
        out["compact_revision"] = str(r.compact_revision)
    if r.hash_revision:
        out["hash_revision"] = str(r.hash_revision)
    return out


def snapshot_chunk_json(remaining: int, blob: bytes, header: Json) -> Json:
    out: Json = {"header": header}
    if remaining:
        out["remaining_bytes"] = str(remaining)
    if blob:
        out["blob"] = b64(blob)
    return out


def dumps(obj: Json) -> bytes:
    return orjson.dumps(obj)
