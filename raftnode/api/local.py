"""A single member with no replication: requests go straight to an MVCC store.

This is what the API tests drive and a real single-member mode. The raft node replaces
it with a service that proposes writes through the log; the HTTP layer is the same.
Lease expiry needs a clock, so it lives here (as it lives in the leader in a cluster):
:meth:`LocalService.expire_leases` revokes what is due; :meth:`start` runs it periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable

from raftnode.api.service import (
    Health,
    Member,
    ResponseHeader,
    SnapshotStream,
    StatusInfo,
)
from raftnode.ids import cluster_id, member_id
from raftnode.mvcc.errors import EtcdError, GrpcCode
from raftnode.mvcc.messages import (
    HashKVResponse,
    LeaseGrantResponse,
    LeaseLeasesResponse,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    RangeRequest,
    RangeResponse,
    Response,
    TxnRequest,
    TxnResponse,
    WriteRequest,
)
from raftnode.mvcc.store import MVCCStore

SNAPSHOT_CHUNK = 64 * 1024


class ErrNotCapable(EtcdError):
    message = "etcdserver: not capable"
    code = GrpcCode.FAILED_PRECONDITION


class ErrMemberNotFound(EtcdError):
    message = "etcdserver: member not found"
    code = GrpcCode.NOT_FOUND


class ErrBadLeaderTransferee(EtcdError):
    message = "etcdserver: bad leader transferee"
    code = GrpcCode.FAILED_PRECONDITION


class ErrNotLearner(EtcdError):
    message = "etcdserver: can only promote a learner member"
    code = GrpcCode.FAILED_PRECONDITION


class LocalService:
    """:class:`raftnode.api.service.KVService` over a local store, one voting member."""

    def __init__(self, store: MVCCStore | None = None, *, name: str = "default",
                 peer_urls: tuple[str, ...] = ("http://localhost:2380",),
                 client_urls: tuple[str, ...] = (), cluster_token: str = "etcd-cluster",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store if store is not None else MVCCStore(min_lease_ttl=2)
        self._clock = clock
        mid = member_id(peer_urls, cluster_token)
        self._member = Member(mid, name, tuple(peer_urls), tuple(client_urls), False)
        self._cluster_id = cluster_id([mid])
        self._expiry: dict[int, float] = {}
        self._task: asyncio.Task[None] | None = None
        self._applied = 0

    def set_client_urls(self, urls: tuple[str, ...]) -> None:
        m = self._member
        self._member = Member(m.ID, m.name, m.peerURLs, urls, m.isLearner)

    # ---------------------------------------------------------------- KV

    def header(self) -> ResponseHeader:
        return ResponseHeader(self._cluster_id, self._member.ID, self.store.revision, 1)

    def has_leader(self) -> bool:
        return True  # the only member leads itself

    @property
    def election_timeout(self) -> float:
        return 1.0  # etcd's default; never waited on (there is always a leader)

    async def write(self, req: WriteRequest) -> Response:
        resp = self.store.apply(req)
        self._applied += 1
        if isinstance(resp, LeaseGrantResponse):
            self._expiry[resp.ID] = self._clock() + resp.TTL
        elif isinstance(req, LeaseRevokeRequest):
            self._expiry.pop(req.ID, None)
        return resp

    async def read(self, req: RangeRequest | TxnRequest, *, serializable: bool
                   ) -> RangeResponse | TxnResponse:
        if isinstance(req, RangeRequest):
            return self.store.range(req)
        return self.store.txn(req)

    # ------------------------------------------------------------ leases

    async def lease_time_to_live(self, req: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        r = self.store.lease_time_to_live(req)
        if r.TTL < 0:
            return r
        remaining = ttl_remaining(self._expiry.get(req.ID, 0.0), self._clock())
        return LeaseTimeToLiveResponse(r.revision, r.ID, remaining, r.grantedTTL, r.keys)

    async def lease_leases(self) -> LeaseLeasesResponse:
        return self.store.lease_leases()

    async def lease_keepalive(self, lease_id: int) -> int:
        if self._expiry.get(lease_id, math.inf) <= self._clock():
            self.expire_leases()  # etcd's Renew: a lease whose TTL ran out is not renewed
        lease = self.store.lease(lease_id)
        if lease is None:
            return 0
        self._expiry[lease_id] = self._clock() + lease.TTL
        return lease.TTL

    def expire_leases(self) -> list[int]:
        """Revoke every lease whose time is up (what a leader proposes); return their IDs."""
        now = self._clock()
        due = sorted(lid for lid, t in self._expiry.items() if t <= now)
        for lid in due:
            del self._expiry[lid]
            if self.store.lease(lid) is not None:
                self.store.lease_revoke(LeaseRevokeRequest(lid))
        return due

    async def _expiry_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            self.expire_leases()

    def start(self, interval: float = 0.1) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._expiry_loop(interval))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # ------------------------------------------------------- maintenance

    async def status(self) -> StatusInfo:
        size = self.store.approx_size()
        return StatusInfo(dbSize=size, leader=self._member.ID, raftIndex=self._applied + 1,
                          raftTerm=1, raftAppliedIndex=self._applied + 1, dbSizeInUse=size)

    async def health(self) -> Health:
        return Health(True)

    async def hash(self) -> int:
        return self.store.hash()

    async def hash_kv(self, revision: int) -> HashKVResponse:
        return self.store.hash_kv(revision)

    async def snapshot(self) -> SnapshotStream:
        data = self.store.snapshot()

        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(data), SNAPSHOT_CHUNK):
                yield data[i:i + SNAPSHOT_CHUNK]

        return SnapshotStream(len(data), chunks(), self.store.revision)

    async def transfer_leadership(self, target_id: int) -> None:
        if target_id != self._member.ID:
            raise ErrBadLeaderTransferee()

    # ------------------------------------------------------------ members

    async def member_list(self, *, linearizable: bool = False) -> list[Member]:
        return [self._member]

    async def member_add(self, peer_urls: list[str], is_learner: bool
                         ) -> tuple[Member, list[Member]]:
        raise ErrNotCapable("etcdserver: not capable (a single member without raft cannot "
                            "add members)")

    async def member_remove(self, member_id: int) -> list[Member]:
        if member_id != self._member.ID:
            raise ErrMemberNotFound()
        raise ErrNotCapable("etcdserver: not capable (cannot remove the only member)")

    async def member_update(self, member_id: int, peer_urls: list[str]) -> list[Member]:
        if member_id != self._member.ID:
            raise ErrMemberNotFound()
        m = self._member
        self._member = Member(m.ID, m.name, tuple(peer_urls), m.clientURLs, m.isLearner)
        return [self._member]

    async def member_promote(self, member_id: int) -> list[Member]:
        if member_id != self._member.ID:
            raise ErrMemberNotFound()
        raise ErrNotLearner()


def ttl_remaining(expiry: float, now: float) -> int:
    """Whole seconds left, truncated like etcd's ``int64(Remaining().Seconds())``."""
    return max(0, math.floor(expiry - now))
