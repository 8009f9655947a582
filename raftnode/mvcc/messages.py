"""Requests, responses and records of the state machine, mirroring etcd's protobufs.

Keys and values are ``bytes``, revisions and IDs plain ``int``s; field names follow
etcd's proto names. Responses carry the header ``revision`` only: cluster/member/term
fields belong to the member that answers, so the API layer adds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum


class SortOrder(IntEnum):
    NONE = 0
    ASCEND = 1
    DESCEND = 2


class SortTarget(IntEnum):
    KEY = 0
    VERSION = 1
    CREATE = 2
    MOD = 3
    VALUE = 4


class CompareResult(IntEnum):
    EQUAL = 0
    GREATER = 1
    LESS = 2
    NOT_EQUAL = 3


class CompareTarget(IntEnum):
    """Note: not the same numbering as SortTarget (etcd's protos differ)."""

    VERSION = 0
    CREATE = 1
    MOD = 2
    VALUE = 3
    LEASE = 4


class EventType(IntEnum):
    PUT = 0
    DELETE = 1


@dataclass(slots=True, frozen=True)
class KeyValue:
    """One version of a key. A tombstone (deletion) has ``version == 0``."""

    key: bytes
    create_revision: int = 0
    mod_revision: int = 0
    version: int = 0
    value: bytes = b""
    lease: int = 0


@dataclass(slots=True, frozen=True)
class Event:
    """One change, as a watcher sees it. DELETE events carry ``kv = {key, mod_revision}``."""

    type: EventType
    kv: KeyValue
    prev_kv: KeyValue | None = None


# ---------------------------------------------------------------- KV requests

@dataclass(slots=True, frozen=True)
class RangeRequest:
    key: bytes
    range_end: bytes = b""
    limit: int = 0
    revision: int = 0
    sort_order: SortOrder = SortOrder.NONE
    sort_target: SortTarget = SortTarget.KEY
    serializable: bool = False
    keys_only: bool = False
    count_only: bool = False
    min_mod_revision: int = 0
    max_mod_revision: int = 0
    min_create_revision: int = 0
    max_create_revision: int = 0


@dataclass(slots=True, frozen=True)
class PutRequest:
    key: bytes
    value: bytes = b""
    lease: int = 0
    prev_kv: bool = False
    ignore_value: bool = False
    ignore_lease: bool = False


@dataclass(slots=True, frozen=True)
class DeleteRangeRequest:
    key: bytes
    range_end: bytes = b""
    prev_kv: bool = False


@dataclass(slots=True, frozen=True)
class Compare:
    """``value`` is read according to ``target``: an int for all but VALUE (bytes)."""

    key: bytes
    target: CompareTarget = CompareTarget.VERSION
    result: CompareResult = CompareResult.EQUAL
    value: int | bytes = 0
    range_end: bytes = b""



@dataclass(slots=True, frozen=True)
class TxnRequest:
    compare: tuple[Compare, ...] = ()
    success: tuple[RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest, ...] = ()
    failure: tuple[RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest, ...] = ()


@dataclass(slots=True, frozen=True)
class CompactionRequest:
    revision: int
    physical: bool = False


# ------------------------------------------------------------- lease requests

@dataclass(slots=True, frozen=True)
class LeaseGrantRequest:
    """``ID == 0`` lets the store pick one (deterministically, so every member agrees)."""

    TTL: int
    ID: int = 0


@dataclass(slots=True, frozen=True)
class LeaseRevokeRequest:
    ID: int


@dataclass(slots=True, frozen=True)
class LeaseTimeToLiveRequest:
    ID: int
    keys: bool = False


@dataclass(slots=True, frozen=True)
class LeaseLeasesRequest:
    pass


# ------------------------------------------------------------------ responses

@dataclass(slots=True, frozen=True)
class RangeResponse:
    revision: int
    kvs: tuple[KeyValue, ...] = ()
    more: bool = False
    count: int = 0


@dataclass(slots=True, frozen=True)
class PutResponse:
    revision: int
    prev_kv: KeyValue | None = None


@dataclass(slots=True, frozen=True)
class DeleteRangeResponse:
    revision: int
    deleted: int = 0
    prev_kvs: tuple[KeyValue, ...] = ()


@dataclass(slots=True, frozen=True)
class TxnResponse:
    revision: int
    succeeded: bool = False
    responses: tuple[RangeResponse | PutResponse | DeleteRangeResponse | TxnResponse, ...] = ()


@dataclass(slots=True, frozen=True)
class CompactionResponse:
    revision: int


@dataclass(slots=True, frozen=True)
class LeaseGrantResponse:
    revision: int
    ID: int
    TTL: int


@dataclass(slots=True, frozen=True)
class LeaseRevokeResponse:
    revision: int


@dataclass(slots=True, frozen=True)
class LeaseTimeToLiveResponse:
    """``TTL`` is the granted TTL from the store (-1 if unknown); the member that answers
    replaces it with the remaining seconds from its own clock."""

    revision: int
    ID: int
    TTL: int
    grantedTTL: int = 0
    keys: tuple[bytes, ...] = ()


@dataclass(slots=True, frozen=True)
class LeaseLeasesResponse:
    revision: int
    leases: tuple[int, ...] = ()


@dataclass(slots=True, frozen=True)
class HashKVResponse:
    revision: int
    hash: int
    compact_revision: int
    hash_revision: int


@dataclass(slots=True, frozen=True)
class Lease:
    """A lease as replicated state: its ID, granted TTL and attached keys.

    Expiry time is not state: the leader owns the clock and proposes revokes.
    """

    ID: int
    TTL: int
    keys: set[bytes] = field(default_factory=set)


WriteRequest = (PutRequest | DeleteRangeRequest | TxnRequest | CompactionRequest
                | LeaseGrantRequest | LeaseRevokeRequest)
ReadRequest = RangeRequest | LeaseTimeToLiveRequest | LeaseLeasesRequest
Request = WriteRequest | ReadRequest
OpRequest = RangeRequest | PutRequest | DeleteRangeRequest | TxnRequest
OpResponse = RangeResponse | PutResponse | DeleteRangeResponse | TxnResponse
Response = (RangeResponse | PutResponse | DeleteRangeResponse | TxnResponse | CompactionResponse
            | LeaseGrantResponse | LeaseRevokeResponse | LeaseTimeToLiveResponse
            | LeaseLeasesResponse)
