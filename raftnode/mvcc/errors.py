"""Typed errors of the state machine, each carrying etcd's exact message and gRPC code.

The API layer turns ``code`` into an HTTP status; nothing else needs to know about HTTP.
"""

from __future__ import annotations

from enum import IntEnum


class GrpcCode(IntEnum):
    """gRPC status codes (google.golang.org/grpc/codes)."""

    OK = 0
    CANCELED = 1
    UNKNOWN = 2
    INVALID_ARGUMENT = 3
    DEADLINE_EXCEEDED = 4
    NOT_FOUND = 5
    ALREADY_EXISTS = 6
    PERMISSION_DENIED = 7
    RESOURCE_EXHAUSTED = 8
    FAILED_PRECONDITION = 9
    ABORTED = 10
    OUT_OF_RANGE = 11
    UNIMPLEMENTED = 12
    INTERNAL = 13
    UNAVAILABLE = 14
    DATA_LOSS = 15
    UNAUTHENTICATED = 16


class EtcdError(Exception):
    """An error a client sees: etcd's message text plus its gRPC code."""

    message: str = "etcdserver: unknown error"
    code: GrpcCode = GrpcCode.UNKNOWN

    def __init__(self, message: str | None = None, code: GrpcCode | None = None) -> None:
        if message is not None:
            self.message = message
        if code is not None:
            self.code = code
        super().__init__(self.message)


def _error(name: str, message: str, code: GrpcCode) -> type[EtcdError]:
    return type(name, (EtcdError,), {"message": message, "code": code, "__doc__": message})


_IA, _OOR, _NF, _FP = (GrpcCode.INVALID_ARGUMENT, GrpcCode.OUT_OF_RANGE, GrpcCode.NOT_FOUND,
                       GrpcCode.FAILED_PRECONDITION)

ErrEmptyKey = _error("ErrEmptyKey", "etcdserver: key is not provided", _IA)
ErrKeyNotFound = _error("ErrKeyNotFound", "etcdserver: key not found", _IA)
ErrValueProvided = _error("ErrValueProvided", "etcdserver: value is provided", _IA)
ErrLeaseProvided = _error("ErrLeaseProvided", "etcdserver: lease is provided", _IA)
ErrTooManyOps = _error("ErrTooManyOps", "etcdserver: too many operations in txn request", _IA)
ErrDuplicateKey = _error("ErrDuplicateKey", "etcdserver: duplicate key given in txn request", _IA)
ErrInvalidSortOption = _error("ErrInvalidSortOption", "etcdserver: invalid sort option", _IA)
ErrCompacted = _error("ErrCompacted", "etcdserver: mvcc: required revision has been compacted",
                      _OOR)
ErrFutureRev = _error("ErrFutureRev", "etcdserver: mvcc: required revision is a future revision",
                      _OOR)
ErrLeaseNotFound = _error("ErrLeaseNotFound", "etcdserver: requested lease not found", _NF)
ErrLeaseExists = _error("ErrLeaseExists", "etcdserver: lease already exists", _FP)
ErrLeaseTTLTooLarge = _error("ErrLeaseTTLTooLarge", "etcdserver: too large lease TTL", _OOR)
ErrRequestTooLarge = _error("ErrRequestTooLarge", "etcdserver: request is too large", _IA)


class InvalidRequest(EtcdError):
    """A request that could not be decoded (bad JSON, base64, types, enum names...)."""

    code = GrpcCode.INVALID_ARGUMENT


class SnapshotError(Exception):
    """A store snapshot that cannot be restored (corrupt, truncated, wrong format)."""


class RequestDecodeError(Exception):
    """A replicated request (msgpack) that cannot be decoded: a corrupt or foreign log entry."""
