"""Typed failures of the client: every way a request can end other than with an answer.

The hierarchy separates what the caller may safely retry from what it may not:
`Unavailable` means no member received the request; `IndeterminateError` means a request
may have been applied and its outcome is unknown (Jepsen's "info" result), so retrying a
non-idempotent write after it could apply it twice.
"""

from __future__ import annotations

from typing import Any


class ClusterError(Exception):
    """Base class of every error raised by `cluster`."""


class Unavailable(ClusterError):
    """No endpoint could be reached; the request surely did not reach the cluster."""

    def __init__(self, message: str, *, attempts: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.attempts = attempts


class Timeout(ClusterError):
    """The overall deadline of a request passed (for a read: nothing was applied)."""


class IndeterminateError(ClusterError):
    """A write was sent and the connection failed before an answer: it may or may not apply.

    Never retried automatically. A checker must treat the operation as concurrent with
    everything after it (it may take effect at any later time, or never).
    """

    def __init__(self, message: str, *, endpoint: str, path: str) -> None:
        super().__init__(message)
        self.endpoint = endpoint
        self.path = path


class ProtocolError(ClusterError):
    """A member answered with something that is not the etcd JSON gateway format."""


class SnapshotIntegrityError(ProtocolError):
    """A snapshot stream ended early or its trailing SHA-256 does not match its data."""


class Unsupported(ClusterError):
    """The member does not offer this route (e.g. an etcd without raftnode's extensions)."""


class EtcdError(ClusterError):
    """An error answer of the etcd gateway: `{"error", "code", "message"}` with HTTP status."""

    def __init__(self, code: int, message: str, *, http_status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.http_status = http_status

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code}, message={self.message!r})"


class CompactedError(EtcdError):
    """The requested revision was compacted away (range at old revision, or watch cancel)."""

    def __init__(self, code: int, message: str, *, http_status: int = 0,
                 compact_revision: int = 0) -> None:
        super().__init__(code, message, http_status=http_status)
        self.compact_revision = compact_revision


class FutureRevisionError(EtcdError):
    """The requested revision is higher than the store's current revision."""


class LeaseNotFound(EtcdError):
    """The lease does not exist (never granted, revoked or expired)."""


class MemberNotFound(EtcdError):
    """No member with that ID."""


class NotLeader(EtcdError):
    """The request must go to the leader (e.g. move-leader)."""


class NoLeader(EtcdError):
    """The member currently knows no leader; another member (or a later try) may do better."""


class WatchCanceled(ClusterError):
    """The server canceled a watch for a reason other than compaction."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason or "watch canceled by server")
        self.reason = reason


# gRPC codes (the "code" field of the gateway's error body).
UNAVAILABLE = 14
DEADLINE_EXCEEDED = 4

_BY_MESSAGE: dict[str, type[EtcdError]] = {
    "etcdserver: mvcc: required revision has been compacted": CompactedError,
    "etcdserver: mvcc: required revision is a future revision": FutureRevisionError,
    "etcdserver: requested lease not found": LeaseNotFound,
    "etcdserver: member not found": MemberNotFound,
    "etcdserver: not leader": NotLeader,
    "etcdserver: no leader": NoLeader,
}


def error_from_body(http_status: int, body: Any, text: str) -> EtcdError:
    """Map an error answer to its typed exception; tolerant of the 3.4/3.5 and 3.6 bodies."""
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict):  # stream error chunk: {"error": {"grpc_code"|"code", ...}}
            body = err
            err = None
        message = str(body.get("message") or err or text or f"HTTP {http_status}")
        raw_code = body.get("code", body.get("grpc_code", 0))
        try:
            code = int(raw_code)
        except (TypeError, ValueError):
            code = 0
    else:
        message, code = (text.strip() or f"HTTP {http_status}"), 0
    cls = _BY_MESSAGE.get(message, EtcdError)
    return cls(code, message, http_status=http_status)


def is_retryable_elsewhere(err: EtcdError) -> bool:
    """An answer that says this member cannot serve now but nothing was applied."""
    return err.code == UNAVAILABLE or isinstance(err, NoLeader)


# Rejections of a write that happen before it is proposed to raft: safe to retry elsewhere.
_REJECTED_BEFORE_PROPOSAL = frozenset({
    "etcdserver: not capable",
    "etcdserver: rpc not supported for learner",
    "etcdserver: too many requests",
    "etcdserver: no leader",  # only raised by the require-leader check, before proposing
    "etcdserver: unhealthy cluster",  # member add/remove refused by strict-reconfig-check
})


def write_outcome_unknown(err: EtcdError) -> bool:
    """A write answered with an Unavailable/DeadlineExceeded error may still commit later.

    etcd answers `request timed out`, `leader changed` and the like after the proposal was
    handed to raft: the entry can still be committed by the next leader.
    """
    return (err.code in (UNAVAILABLE, DEADLINE_EXCEEDED)
            and err.message not in _REJECTED_BEFORE_PROPOSAL)
