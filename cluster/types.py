"""Typed results decoded from the gateway's JSON (bytes as bytes, int64 as int)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cluster.codec import num, unb64

Json = dict[str, Any]


@dataclass(slots=True, frozen=True)
class ResponseHeader:
    cluster_id: int = 0
    member_id: int = 0
    revision: int = 0
    raft_term: int = 0

    @classmethod
    def decode(cls, d: Json | None) -> ResponseHeader:
        d = d or {}
        return cls(num(d.get("cluster_id")), num(d.get("member_id")),
                   num(d.get("revision")), num(d.get("raft_term")))


@dataclass(slots=True, frozen=True)
class KeyValue:
    key: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""
    lease: int = 0

    @classmethod
    def decode(cls, d: Json) -> KeyValue:
        return cls(unb64(d.get("key")), num(d.get("create_revision")),
                   num(d.get("mod_revision")), num(d.get("version")),
                   unb64(d.get("value")), num(d.get("lease")))


def _kv_or_none(d: Json | None) -> KeyValue | None:
    return KeyValue.decode(d) if d else None


@dataclass(slots=True, frozen=True)
class RangeResult:
    header: ResponseHeader
    kvs: tuple[KeyValue, ...] = ()
    more: bool = False
    count: int = 0

    @classmethod
    def decode(cls, d: Json) -> RangeResult:
        return cls(ResponseHeader.decode(d.get("header")),
                   tuple(KeyValue.decode(kv) for kv in d.get("kvs") or ()),
                   bool(d.get("more", False)), num(d.get("count")))


@dataclass(slots=True, frozen=True)
class PutResult:
    header: ResponseHeader
    prev_kv: KeyValue | None = None

    @classmethod
    def decode(cls, d: Json) -> PutResult:
        return cls(ResponseHeader.decode(d.get("header")), _kv_or_none(d.get("prev_kv")))


@dataclass(slots=True, frozen=True)
class DeleteResult:
    header: ResponseHeader
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()

    @classmethod
    def decode(cls, d: Json) -> DeleteResult:
        return cls(ResponseHeader.decode(d.get("header")), num(d.get("deleted")),
                   tuple(KeyValue.decode(kv) for kv in d.get("prev_kvs") or ()))


@dataclass(slots=True, frozen=True)
class TxnResult:
    header: ResponseHeader
    succeeded: bool = False
    responses: tuple[RangeResult | PutResult | DeleteResult | TxnResult, ...] = ()

    @classmethod
    def decode(cls, d: Json) -> TxnResult:
        out: list[RangeResult | PutResult | DeleteResult | TxnResult] = []
        for op in d.get("responses") or ():
            if "response_range" in op:
                out.append(RangeResult.decode(op["response_range"]))
            elif "response_put" in op:
                out.append(PutResult.decode(op["response_put"]))
            elif "response_delete_range" in op:
                out.append(DeleteResult.decode(op["response_delete_range"]))
            elif "response_txn" in op:
                out.append(TxnResult.decode(op["response_txn"]))
            else:
                raise ValueError(f"unknown txn response op {sorted(op)}")
        return cls(ResponseHeader.decode(d.get("header")), bool(d.get("succeeded", False)),
                   tuple(out))


@dataclass(slots=True, frozen=True)
class Event:
    type: str  # "PUT" or "DELETE"
    kv: KeyValue
    prev_kv: KeyValue | None = None

    @classmethod
    def decode(cls, d: Json) -> Event:
        return cls(str(d.get("type") or "PUT"), KeyValue.decode(d.get("kv") or {}),
                   _kv_or_none(d.get("prev_kv")))


@dataclass(slots=True, frozen=True)
class LeaseGrant:
    header: ResponseHeader
    id: int
    ttl: int

    @classmethod
    def decode(cls, d: Json) -> LeaseGrant:
        return cls(ResponseHeader.decode(d.get("header")), num(d.get("ID")), num(d.get("TTL")))


@dataclass(slots=True, frozen=True)
class LeaseTimeToLive:
    header: ResponseHeader
    id: int
    ttl: int  # remaining seconds; -1 when the lease does not exist (not an error in etcd)
    granted_ttl: int = 0
    keys: tuple[bytes, ...] = ()

    @classmethod
    def decode(cls, d: Json) -> LeaseTimeToLive:
        return cls(ResponseHeader.decode(d.get("header")), num(d.get("ID")), num(d.get("TTL")),
                   num(d.get("grantedTTL")), tuple(unb64(k) for k in d.get("keys") or ()))


@dataclass(slots=True, frozen=True)
class Member:
    id: int
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False

    @classmethod
    def decode(cls, d: Json) -> Member:
        return cls(num(d.get("ID")), str(d.get("name", "")), tuple(d.get("peerURLs") or ()),
                   tuple(d.get("clientURLs") or ()), bool(d.get("isLearner", False)))

    @property
    def started(self) -> bool:
        """etcd reports an added member as unstarted until it has published its name."""
        return bool(self.name)


@dataclass(slots=True, frozen=True)
class MemberListResult:
    header: ResponseHeader
    members: tuple[Member, ...]
    member: Member | None = None  # the new member, for member add

    @classmethod
    def decode(cls, d: Json) -> MemberListResult:
        m = d.get("member")
        return cls(ResponseHeader.decode(d.get("header")),
                   tuple(Member.decode(x) for x in d.get("members") or ()),
                   Member.decode(m) if m else None)


@dataclass(slots=True, frozen=True)
class Status:
    endpoint: str
    header: ResponseHeader
    version: str = ""
    db_size: int = 0
    leader: int = 0
    raft_index: int = 0
    raft_term: int = 0
    raft_applied_index: int = 0
    errors: tuple[str, ...] = ()
    db_size_in_use: int = 0
    is_learner: bool = False
    raw: Json = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def decode(cls, endpoint: str, d: Json) -> Status:
        return cls(endpoint, ResponseHeader.decode(d.get("header")), str(d.get("version", "")),
                   num(d.get("dbSize")), num(d.get("leader")), num(d.get("raftIndex")),
                   num(d.get("raftTerm")), num(d.get("raftAppliedIndex")),
                   tuple(d.get("errors") or ()), num(d.get("dbSizeInUse")),
                   bool(d.get("isLearner", False)), d)

    @property
    def is_leader(self) -> bool:
        return self.leader != 0 and self.leader == self.header.member_id


@dataclass(slots=True, frozen=True)
class HashResult:
    header: ResponseHeader
    hash: int
    compact_revision: int = 0

    @classmethod
    def decode(cls, d: Json) -> HashResult:
        return cls(ResponseHeader.decode(d.get("header")), num(d.get("hash")),
                   num(d.get("compact_revision")))


@dataclass(slots=True, frozen=True)
class Health:
    endpoint: str
    healthy: bool
    took: float
    error: str = ""
