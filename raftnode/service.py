"""The member as the HTTP gateway sees it: :class:`KVService` over raft.

Writes are proposed through the log (a follower forwards them to the leader over the peer
stream and waits for its own apply, as etcd's followers do with MsgProp). Reads are
linearizable through ReadIndex unless serializable. Membership and leadership requests are
served by the leader; a follower relays them to the leader's client URL.

Lease expiry is the leader's: it keeps each lease's deadline on its own clock, proposes a
revoke when one is due, and on election extends every deadline by an election timeout so a
failover does not expire live leases (etcd's ``Promote``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import orjson

from raftnode.api.service import (
    Health,
    Member,
    ResponseHeader,
    SnapshotStream,
    StatusInfo,
)
from raftnode.cowsnapshot import fork_serialize
from raftnode.driver import Driver, ErrNoLeader, ErrTimeout
from raftnode.ids import member_id
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
from raftnode.raft.types import ConfChange, ConfChangeType, Role
from raftnode.statemachine import MemberInfo, StateMachine, encode_cc_context, encode_update

log = logging.getLogger("raftnode.service")

SNAPSHOT_CHUNK = 256 * 1024


def _err(message: str, code: GrpcCode) -> EtcdError:
    return EtcdError(message, code)


class RaftService:
    """KVService of one raft member (see raftnode.api.service)."""

    def __init__(self, driver: Driver, sm: StateMachine, *, cluster_id: int, member_id: int,
                 token: str, election_seconds: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.driver = driver
        self.sm = sm
        self.cluster_id = cluster_id
        self.member_id = member_id
        self.token = token
        self.election_seconds = election_seconds
        self._clock = clock
        self._expiry: dict[int, float] = {}
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._lease_loop())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    # -- KV -----------------------------------------------------------------------------------

    def header(self) -> ResponseHeader:
        return ResponseHeader(self.cluster_id, self.member_id, self.sm.store.revision,
                              self.driver.term)

    def has_leader(self) -> bool:
        return bool(self.driver.lead)

    @property
    def election_timeout(self) -> float:
        return self.election_seconds

    async def write(self, req: WriteRequest) -> Response:
        self._refuse_learner()
        resp = await self.driver.propose(req)
        if isinstance(resp, LeaseGrantResponse):
            self._expiry[resp.ID] = self._clock() + resp.TTL
            if self.driver.role != Role.LEADER:
                # the leader's clock decides expiry, and its lease loop would only notice
                # this grant later (and then allow an election timeout more): start the
                # lease there now, before the client learns of it, as etcd's leader does
                # on applying the grant (bounded; if it fails, the loop's late start stays)
                with contextlib.suppress(EtcdError, TimeoutError):
                    await asyncio.wait_for(
                        self._to_leader("/v3/lease/keepalive", {"ID": resp.ID}),
                        self.election_seconds)
        elif isinstance(req, LeaseRevokeRequest):
            self._expiry.pop(req.ID, None)
        return resp

    async def read(self, req: RangeRequest | TxnRequest, *, serializable: bool
                   ) -> RangeResponse | TxnResponse:
        if isinstance(req, TxnRequest) and not _has_range(req):
            # etcd calls a txn with no range in it "serializable" (vacuously) and answers
            # its compares from a follower's possibly stale state; a compare-only txn is a
            # read of the current state, so it gets a ReadIndex like any other read here
            serializable = False
        if not serializable:
            self._refuse_learner()
            await self.driver.read_barrier()
        if isinstance(req, RangeRequest):
            return self.sm.store.range(req)
        return self.sm.store.txn(req)

    def _refuse_learner(self) -> None:
        me = self.sm.members.get(self.member_id)
        if me is not None and me.is_learner:
            raise _err("etcdserver: rpc not supported for learner", GrpcCode.UNAVAILABLE)

    # -- leases -------------------------------------------------------------------------------

    def on_became_leader(self) -> None:
        """Extend every lease by an election timeout: a failover must not expire them."""
        now = self._clock()
        for lid in self.sm.store.lease_ids():
            lease = self.sm.store.lease(lid)
            if lease is not None:
                self._expiry[lid] = now + lease.TTL + self.election_seconds

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            if self.driver.role != Role.LEADER:
                continue
            now = self._clock()
            live = set(self.sm.store.lease_ids())
            for lid in list(self._expiry):
                if lid not in live:
                    del self._expiry[lid]
            for lid in live - set(self._expiry):  # granted via another leader's term
                lease = self.sm.store.lease(lid)
                if lease is not None:
                    self._expiry[lid] = now + lease.TTL + self.election_seconds
            due = sorted(lid for lid, t in self._expiry.items() if t <= now)
            for lid in due:
                try:
                    await self.driver.propose(LeaseRevokeRequest(lid))
                    self._expiry.pop(lid, None)
                except EtcdError as e:
                    log.info("lease %x revoke on expiry not done yet: %s", lid, e.message)

    async def lease_time_to_live(self, req: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        # the attached keys come from this member's store: bring it up to date first (etcd's
        # leader waits for its applied index; a follower here must see the same state)
        await self.driver.read_barrier()
        r = self.sm.store.lease_time_to_live(req)
        if r.TTL < 0:
            return r
        if self.driver.role != Role.LEADER:
            body = await self._to_leader("/v3/lease/timetolive", {"ID": req.ID})
            remaining = int(body.get("TTL", r.TTL))
        else:
            expiry = self._expiry.get(req.ID, self._clock() + r.grantedTTL)
            remaining = max(0, math.floor(expiry - self._clock()))
        return LeaseTimeToLiveResponse(r.revision, r.ID, remaining, r.grantedTTL, r.keys)

    async def lease_leases(self) -> LeaseLeasesResponse:
        await self.driver.read_barrier()  # linearizable (etcd reads its local lessor)
        return self.sm.store.lease_leases()

    async def lease_keepalive(self, lease_id: int) -> int:
        if self.driver.role != Role.LEADER:
            body = await self._to_leader("/v3/lease/keepalive", {"ID": lease_id})
            res = body.get("result", body)
            return int(res.get("TTL", 0))
        # etcd's waitAppliedIndex: a grant committed (and already applied by the follower
        # that relayed this renewal) may not be applied here yet
        await self.driver.wait_applied(self.driver.rn.status().commit)
        # etcd's Renew: a lease whose TTL ran out is not renewed (that would tell its holder
        # it keeps keys, a lock, that the pending revoke deletes a moment later); the
        # renewal waits for the revoke and answers not found, or, if leadership moves
        # first, goes to the new leader (which extended every lease)
        give_up = self._clock() + self.driver.request_timeout
        while (due := self._expiry.get(lease_id)) is not None and due <= self._clock():
            if self.sm.store.lease(lease_id) is None:
                return 0
            if self.driver.role != Role.LEADER:
                return await self.lease_keepalive(lease_id)
            if self._clock() > give_up:
                raise ErrTimeout("etcdserver: request timed out (lease revoke pending)")
            await asyncio.sleep(0.05)
        lease = self.sm.store.lease(lease_id)
        if lease is None:
            return 0
        self._expiry[lease_id] = self._clock() + lease.TTL
        return lease.TTL

    # -- maintenance --------------------------------------------------------------------------

    async def status(self) -> StatusInfo:
        st = self.driver.rn.status()
        size = self.sm.store.approx_size()
        errors = () if self.driver.lead else ("etcdserver: no leader",)
        me = self.sm.members.get(self.member_id)
        return StatusInfo(dbSize=size, leader=self.driver.lead, raftIndex=st.commit,
                          raftTerm=st.term, raftAppliedIndex=self.driver.applied,
                          errors=errors, dbSizeInUse=size,
                          isLearner=bool(me and me.is_learner))

    async def health(self) -> Health:
        if not self.driver.lead:
            return Health(False, "RAFT NO LEADER")
        return Health(True)

    async def hash(self) -> int:
        return self.sm.store.hash()

    async def hash_kv(self, revision: int) -> HashKVResponse:
        return self.sm.store.hash_kv(revision)

    async def snapshot(self) -> SnapshotStream:
        revision = self.sm.store.revision  # the state the fork below captures
        data = await fork_serialize(self.sm.snapshot_parts).result()  # no loop stall

        async def chunks() -> AsyncIterator[bytes]:
            for part in data.parts:
                view = memoryview(part)
                for i in range(0, len(view), SNAPSHOT_CHUNK):
                    yield bytes(view[i:i + SNAPSHOT_CHUNK])

        return SnapshotStream(data.size(), chunks(), revision)

    async def transfer_leadership(self, target_id: int) -> None:
        if self.driver.role != Role.LEADER:
            raise _err("etcdserver: not leader", GrpcCode.FAILED_PRECONDITION)
        m = self.sm.members.get(target_id)
        if m is None or m.is_learner:
            raise _err("etcdserver: bad leader transferee", GrpcCode.FAILED_PRECONDITION)
        if target_id == self.member_id:
            return
        await self.driver.transfer(target_id)

    # -- members ------------------------------------------------------------------------------

    @staticmethod
    def _member(m: MemberInfo) -> Member:
        return Member(m.id, m.name, m.peer_urls, m.client_urls, m.is_learner)

    def members(self) -> list[Member]:
        return [self._member(m) for m in self.sm.member_list()]

    async def member_list(self, *, linearizable: bool = False) -> list[Member]:
        if linearizable:
            await self.driver.read_barrier()
        return self.members()

    def _check_urls(self, peer_urls: list[str], *, exclude: int = 0) -> None:
        if not peer_urls or not all(u.startswith(("http://", "https://")) for u in peer_urls):
            raise _err("etcdserver: given member URLs are invalid", GrpcCode.INVALID_ARGUMENT)
        used = {u for m in self.sm.members.values() if m.id != exclude for u in m.peer_urls}
        if used & set(peer_urls):
            raise _err("etcdserver: Peer URLs already exists", GrpcCode.FAILED_PRECONDITION)

    async def member_add(self, peer_urls: list[str], is_learner: bool
                         ) -> tuple[Member, list[Member]]:
        if self.driver.role != Role.LEADER:
            body = await self._to_leader("/v3/cluster/member/add",
                                         {"peerURLs": peer_urls, "isLearner": is_learner})
            await self.driver.read_barrier()  # answer with the change applied here too
            return _member_from_json(body["member"]), self.members()
        self._check_urls(peer_urls)
        if is_learner and sum(m.is_learner for m in self.sm.members.values()) >= 1:
            raise _err("etcdserver: too many learner members in cluster",
                       GrpcCode.FAILED_PRECONDITION)
        new_id = member_id(peer_urls, self.token, added_at_unix=int(time.time()))
        if new_id in self.sm.members or new_id in self.sm.removed:
            raise _err("etcdserver: member ID already exist", GrpcCode.FAILED_PRECONDITION)
        kind = ConfChangeType.ADD_LEARNER if is_learner else ConfChangeType.ADD_NODE
        await self._conf_change(kind, new_id, peer_urls)
        return Member(new_id, "", tuple(peer_urls), (), is_learner), self.members()

    async def member_remove(self, member_id: int) -> list[Member]:
        if self.driver.role != Role.LEADER:
            await self._to_leader("/v3/cluster/member/remove", {"ID": str(member_id)})
            await self.driver.read_barrier()
            return self.members()
        if member_id not in self.sm.members:
            raise _err("etcdserver: member not found", GrpcCode.NOT_FOUND)
        await self._conf_change(ConfChangeType.REMOVE_NODE, member_id, [])
        return self.members()

    async def member_update(self, member_id: int, peer_urls: list[str]) -> list[Member]:
        if member_id not in self.sm.members:
            raise _err("etcdserver: member not found", GrpcCode.NOT_FOUND)
        self._check_urls(peer_urls, exclude=member_id)
        rid = self.driver.next_request_id()
        await self.driver.propose_data(rid, encode_update(rid, member_id, peer_urls))
        return self.members()

    async def member_promote(self, member_id: int) -> list[Member]:
        if self.driver.role != Role.LEADER:
            await self._to_leader("/v3/cluster/member/promote", {"ID": str(member_id)})
            await self.driver.read_barrier()
            return self.members()
        m = self.sm.members.get(member_id)
        if m is None:
            raise _err("etcdserver: member not found", GrpcCode.NOT_FOUND)
        if not m.is_learner:
            raise _err("etcdserver: can only promote a learner member",
                       GrpcCode.FAILED_PRECONDITION)
        pr = self.driver.rn.status().progress.get(member_id)
        commit = self.driver.rn.status().commit
        if pr is None or pr.match < commit * 0.9:  # etcd's isLearnerReady
            raise _err("etcdserver: can only promote a learner member which is in sync with "
                       "leader", GrpcCode.FAILED_PRECONDITION)
        await self._conf_change(ConfChangeType.PROMOTE_LEARNER, member_id, list(m.peer_urls))
        return self.members()

    async def _conf_change(self, kind: ConfChangeType, node_id: int, peer_urls: list[str]
                           ) -> None:
        rid = self.driver.next_request_id()
        cc = ConfChange(kind, node_id, encode_cc_context(peer_urls, "", rid))
        await self.driver.propose_conf_change(cc, rid)

    # -- relaying to the leader ---------------------------------------------------------------

    async def _to_leader(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST a JSON request to the leader's client URL (membership, lease renewals)."""
        await self.driver.wait_leader()
        leader = self.sm.members.get(self.driver.lead)
        if leader is None or not leader.client_urls:
            raise ErrNoLeader("etcdserver: leader has not published its client URL yet")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.driver.request_timeout))
        url = leader.client_urls[0].rstrip("/") + path
        try:
            async with self._session.post(url, data=orjson.dumps(body)) as r:
                text = await r.read()
        except (aiohttp.ClientError, TimeoutError) as e:
            raise ErrTimeout(f"etcdserver: request timed out (leader unreachable: {e})") from e
        lines = [ln for ln in text.splitlines() if ln.strip()]
        try:
            obj: dict[str, Any] = orjson.loads(lines[0]) if lines else {}
        except orjson.JSONDecodeError as e:
            raise _err(f"etcdserver: bad reply from leader: {e}", GrpcCode.UNAVAILABLE) from e
        if r.status != 200 or "error" in obj:
            # the leader's own error, passed on as it is: unary bodies carry
            # {"error": msg, "code", "message"}, stream lines {"error": {"grpc_code", ...}}
            err = obj.get("error", obj)
            src: dict[str, Any] = err if isinstance(err, dict) else obj
            code = src.get("code", src.get("grpc_code"))
            msg = src.get("message", err)
            try:
                grpc = GrpcCode(int(code)) if code is not None else GrpcCode.UNKNOWN
            except (TypeError, ValueError):
                grpc = GrpcCode.UNKNOWN
            raise _err(str(msg), grpc)
        return obj


def _has_range(t: TxnRequest) -> bool:
    return any(isinstance(op, RangeRequest) or (isinstance(op, TxnRequest) and _has_range(op))
               for op in (*t.success, *t.failure))


def _member_from_json(d: dict[str, Any]) -> Member:
    return Member(int(d.get("ID", 0)), str(d.get("name", "")), tuple(d.get("peerURLs") or ()),
                  tuple(d.get("clientURLs") or ()), bool(d.get("isLearner", False)))

