"""What the HTTP gateway needs from a member: a small Protocol and its value types.

The node implements :class:`KVService` over raft; :class:`raftnode.api.local.LocalService`
implements it over a bare store (one member, no replication). Failures are raised as
:class:`raftnode.mvcc.errors.EtcdError` (etcd's message and gRPC code).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

from raftnode.mvcc.messages import (
    HashKVResponse,
    LeaseLeasesResponse,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    RangeRequest,
    RangeResponse,
    Response,
    TxnRequest,
    TxnResponse,
    WriteRequest,
)

#: the etcd version we answer as (etcd3gw and Patroni pick the /v3/ API from it)
ETCD_VERSION = "3.5.0"
ETCD_CLUSTER_VERSION = "3.5.0"


@dataclass(slots=True, frozen=True)
class ResponseHeader:
    cluster_id: int
    member_id: int
    revision: int
    raft_term: int


@dataclass(slots=True, frozen=True)
class Member:
    ID: int
    name: str = ""
    peerURLs: tuple[str, ...] = ()
    clientURLs: tuple[str, ...] = ()
    isLearner: bool = False


@dataclass(slots=True, frozen=True)
class StatusInfo:
    version: str = ETCD_VERSION
    dbSize: int = 0
    leader: int = 0
    raftIndex: int = 0
    raftTerm: int = 0
    raftAppliedIndex: int = 0
    errors: tuple[str, ...] = ()
    dbSizeInUse: int = 0
    isLearner: bool = False


@dataclass(slots=True, frozen=True)
class Health:
    healthy: bool
    reason: str = ""


@dataclass(slots=True)
class SnapshotStream:
    """A consistent snapshot: its total size and its bytes, in chunks."""

    size: int
    chunks: AsyncIterator[bytes]
    revision: int = 0
    extra: dict[str, str] = field(default_factory=dict)


class KVService(Protocol):
    """A member as the gateway sees it."""

    def header(self) -> ResponseHeader:
        """cluster_id, member_id, current revision and raft term, for response headers."""
        ...

    def has_leader(self) -> bool:
        """Whether this member knows a leader now: watches opened with clientv3's
        require-leader metadata are refused without one, and end when it stays away."""
        ...

    @property
    def election_timeout(self) -> float:
        """Seconds; how long a member may be without a leader before such watches end."""
        ...

    async def write(self, req: WriteRequest) -> Response:
        """Put / delete_range / txn / compaction / lease grant|revoke, through consensus."""
        ...

    async def read(self, req: RangeRequest | TxnRequest, *, serializable: bool
                   ) -> RangeResponse | TxnResponse:
        """A range or a read-only txn; linearizable (ReadIndex) unless ``serializable``."""
        ...

    async def lease_time_to_live(self, req: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        """``TTL`` = remaining seconds by the leader's clock, -1 for an unknown lease."""
        ...

    async def lease_leases(self) -> LeaseLeasesResponse: ...

    async def lease_keepalive(self, lease_id: int) -> int:
        """Renew a lease; return its granted TTL, or 0 if it does not exist."""
        ...

    async def status(self) -> StatusInfo: ...

    async def health(self) -> Health: ...

    async def hash(self) -> int:
        """A hash of the whole state, comparable between members at the same applied index."""
        ...

    async def hash_kv(self, revision: int) -> HashKVResponse: ...

    async def member_list(self, *, linearizable: bool = False) -> list[Member]: ...

    async def member_add(self, peer_urls: list[str], is_learner: bool
                         ) -> tuple[Member, list[Member]]: ...

    async def member_remove(self, member_id: int) -> list[Member]: ...

    async def member_update(self, member_id: int, peer_urls: list[str]) -> list[Member]: ...

    async def member_promote(self, member_id: int) -> list[Member]: ...

    async def snapshot(self) -> SnapshotStream: ...

    async def transfer_leadership(self, target_id: int) -> None: ...
