"""Structural request checks done before a request is proposed (etcd's v3rpc/key.go).

They need no state, so a member rejects bad requests without a trip through raft.
State-dependent checks (lease exists, key exists for ``ignore_*``, revisions) happen
at apply time in the store.
"""

from __future__ import annotations

from raftnode.mvcc.errors import (
    ErrDuplicateKey,
    ErrEmptyKey,
    ErrInvalidSortOption,
    ErrLeaseProvided,
    ErrTooManyOps,
    ErrValueProvided,
    InvalidRequest,
)
from raftnode.mvcc.messages import (
    CompactionRequest,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseRevokeRequest,
    OpRequest,
    PutRequest,
    RangeRequest,
    Request,
    SortOrder,
    SortTarget,
    TxnRequest,
)

DEFAULT_MAX_TXN_OPS = 128


def check_request(req: Request, max_txn_ops: int = DEFAULT_MAX_TXN_OPS) -> None:
    """Raise the etcd error a malformed request gets; return None if it may be proposed."""
    if isinstance(req, PutRequest):
        _check_put(req)
    elif isinstance(req, RangeRequest):
        _check_range(req)
    elif isinstance(req, DeleteRangeRequest):
        if not req.key:
            raise ErrEmptyKey()
    elif isinstance(req, TxnRequest):
        _check_txn(req, max_txn_ops)
        _check_intervals(req.success)
        _check_intervals(req.failure)
    elif isinstance(req, CompactionRequest | LeaseGrantRequest | LeaseRevokeRequest):
        pass


def _check_put(req: PutRequest) -> None:
    if not req.key:
        raise ErrEmptyKey()
    if req.ignore_value and req.value:
        raise ErrValueProvided()
    if req.ignore_lease and req.lease:
        raise ErrLeaseProvided()


def _check_range(req: RangeRequest) -> None:
    if not req.key:
        raise ErrEmptyKey()
    if req.sort_order not in SortOrder._value2member_map_ or \
            req.sort_target not in SortTarget._value2member_map_:
        raise ErrInvalidSortOption()
    if req.limit < 0:
        raise InvalidRequest("etcdserver: limit must not be negative")


def _check_txn(req: TxnRequest, max_ops: int) -> None:
    if max(len(req.compare), len(req.success), len(req.failure)) > max_ops:
        raise ErrTooManyOps()
    for c in req.compare:
        if not c.key:
            raise ErrEmptyKey()
    for op in req.success:
        _check_op(op, max_ops)
    for op in req.failure:
        _check_op(op, max_ops)


def _check_op(op: OpRequest, max_ops: int) -> None:
    if isinstance(op, TxnRequest):
        _check_txn(op, max_ops)
    elif isinstance(op, PutRequest):
        _check_put(op)
    elif isinstance(op, RangeRequest):
        _check_range(op)
    elif isinstance(op, DeleteRangeRequest):
        if not op.key:
            raise ErrEmptyKey()
    else:  # pragma: no cover - the codec never builds other ops
        raise InvalidRequest("etcdserver: key not found")


_Interval = tuple[bytes, bytes]  # [start, end)


def _interval(key: bytes, range_end: bytes) -> _Interval:
    """As etcd builds it: ``range_end`` taken literally, so a ``"\\0"`` (to the end)
    delete is an empty interval that conflicts with nothing (checked against etcd 3.4)."""
    return (key, range_end) if range_end else (key, key + b"\x00")


def _hits(dels: list[_Interval], key: bytes) -> bool:
    return any(lo <= key < hi for lo, hi in dels)


def _check_intervals(ops: tuple[OpRequest, ...]) -> tuple[set[bytes], list[_Interval]]:
    """etcd's checkIntervals: no key put twice, nor put and deleted, in one branch
    (nested txns included; a then/else pair may put the same key: only one runs)."""
    dels = [_interval(op.key, op.range_end) for op in ops if isinstance(op, DeleteRangeRequest)]
    puts: set[bytes] = set()
    for op in ops:
        if not isinstance(op, TxnRequest):
            continue
        puts_then, dels_then = _check_intervals(op.success)
        puts_else, dels_else = _check_intervals(op.failure)
        for k in puts_then:
            if k in puts or _hits(dels, k):
                raise ErrDuplicateKey()
            puts.add(k)
        for k in puts_else:
            if (k in puts and k not in puts_then) or _hits(dels, k):
                raise ErrDuplicateKey()
            puts.add(k)
        dels.extend(dels_then)
        dels.extend(dels_else)
    for op in ops:
        if isinstance(op, PutRequest):
            if op.key in puts or _hits(dels, op.key):
                raise ErrDuplicateKey()
            puts.add(op.key)
    return puts, dels
