"""The asyncio client for etcd's v3 JSON gateway (and raftnode, which speaks the same).

    async with Client(["http://127.0.0.1:2379", ...]) as c:
        await c.put("k", "v")
        r = await c.get("k", prefix=True)

Every method raises a subclass of `ClusterError`; see `cluster.errors` for which failures
may be retried and which leave a write's outcome unknown (`IndeterminateError`).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from cluster import metrics
from cluster.codec import Bytesish, b64, num, put_opt, unb64
from cluster.errors import (
    ClusterError,
    EtcdError,
    LeaseNotFound,
    NoLeader,
    ProtocolError,
    SnapshotIntegrityError,
    Unavailable,
    Unsupported,
    error_from_body,
)
from cluster.lease import KeepAlive
from cluster.transport import Transport, normalize_endpoint
from cluster.txn import Txn, delete, get, key_range, put
from cluster.types import (
    DeleteResult,
    HashResult,
    Health,
    KeyValue,
    LeaseGrant,
    LeaseTimeToLive,
    MemberListResult,
    PutResult,
    RangeResult,
    ResponseHeader,
    Status,
    TxnResult,
)
from cluster.watch import Watch

Json = dict[str, Any]
SHA256_SIZE = 32  # a snapshot stream ends with the SHA-256 of its data, as etcd's does


class Client:
    """A client of a cluster given by its members' client URLs."""

    def __init__(self, endpoints: str | Sequence[str], *, timeout: float = 5.0,
                 connect_timeout: float = 1.0, read_attempt_timeout: float | None = None,
                 watch_liveness: float = 2.0) -> None:
        """timeout: deadline of one call, retries included; connect_timeout: per connection
        attempt; read_attempt_timeout: how long a read waits on one member before asking
        another (default timeout/2); watch_liveness: how often a watch checks that its
        member still answers (a hung member sends no events and no error)."""
        self.transport = Transport(endpoints, timeout=timeout, connect_timeout=connect_timeout,
                                   read_attempt_timeout=read_attempt_timeout)
        self.watch_liveness = watch_liveness

    @property
    def endpoints(self) -> list[str]:
        return list(self.transport.endpoints)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transport.close()

    async def _call(self, path: str, body: Json, *, write: bool,
                    endpoint: str | None = None) -> Json:
        return (await self.transport.call(path, body, write=write, endpoint=endpoint))[1]

    # ---- kv -------------------------------------------------------------------------------

    async def get(self, key: Bytesish, range_end: Bytesish | None = None, **opts: Any) -> \
            RangeResult:
        """Range read; opts as `cluster.txn.get` (prefix, from_key, revision, limit, ...)."""
        body = get(key, range_end, **opts).wire["request_range"]
        return RangeResult.decode(await self._call("/v3/kv/range", body, write=False))

    async def get_one(self, key: Bytesish, **opts: Any) -> KeyValue | None:
        r = await self.get(key, **opts)
        return r.kvs[0] if r.kvs else None

    async def put(self, key: Bytesish, value: Bytesish, **opts: Any) -> PutResult:
        """Write one key; opts: lease, prev_kv, ignore_value, ignore_lease."""
        body = put(key, value, **opts).wire["request_put"]
        return PutResult.decode(await self._call("/v3/kv/put", body, write=True))

    async def delete(self, key: Bytesish, range_end: Bytesish | None = None, *,
                     prefix: bool = False, from_key: bool = False,
                     prev_kv: bool = False) -> DeleteResult:
        body = delete(key, range_end, prefix=prefix, from_key=from_key,
                      prev_kv=prev_kv).wire["request_delete_range"]
        return DeleteResult.decode(await self._call("/v3/kv/deleterange", body, write=True))

    async def compact(self, revision: int, *, physical: bool = False) -> ResponseHeader:
        body: Json = {"revision": revision}
        put_opt(body, "physical", physical)
        d = await self._call("/v3/kv/compaction", body, write=True)
        return ResponseHeader.decode(d.get("header"))

    def txn(self) -> BoundTxn:
        """`await c.txn().when(...).then(...).otherwise(...).commit()`."""
        return BoundTxn(self)

    async def commit(self, txn: Txn) -> TxnResult:
        d = await self._call("/v3/kv/txn", txn.wire(), write=not txn.is_read_only())
        return TxnResult.decode(d)

    # ---- leases ---------------------------------------------------------------------------

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> LeaseGrant:
        body: Json = {"TTL": ttl}
        put_opt(body, "ID", lease_id)
        return LeaseGrant.decode(await self._call("/v3/lease/grant", body, write=True))

    async def lease_revoke(self, lease_id: int) -> ResponseHeader:
        d = await self._call("/v3/lease/revoke", {"ID": lease_id}, write=True)
        return ResponseHeader.decode(d.get("header"))

    async def lease_time_to_live(self, lease_id: int, *, keys: bool = False) -> LeaseTimeToLive:
        body: Json = {"ID": lease_id}
        put_opt(body, "keys", keys)
        d = await self._call("/v3/lease/timetolive", body, write=False)
        return LeaseTimeToLive.decode(d)

    async def lease_leases(self) -> list[int]:
        d = await self._call("/v3/lease/leases", {}, write=False)
        return [num(x.get("ID")) for x in d.get("leases") or ()]

    async def lease_keepalive_once(self, lease_id: int) -> int:
        """Refresh once; returns the TTL, raises LeaseNotFound when the lease is gone.

        A refresh is idempotent, so it is retried like a read.
        """
        d = await self._call("/v3/lease/keepalive", {"ID": lease_id}, write=False)
        res = d.get("result")
        if not isinstance(res, dict):
            if "error" in d:
                raise error_from_body(200, d, "")
            raise ProtocolError(f"keepalive answer without result: {d}")
        ttl = num(res.get("TTL"))
        if ttl <= 0:
            raise LeaseNotFound(5, "etcdserver: requested lease not found", http_status=404)
        return ttl

    def keep_alive(self, lease_id: int, ttl: int, *, interval: float | None = None) -> KeepAlive:
        """A background refresher; use as `async with` or call `.start()` / `await .stop()`."""
        return KeepAlive(self.lease_keepalive_once, lease_id, ttl, interval=interval)

    # ---- watch ----------------------------------------------------------------------------

    def watch(self, key: Bytesish, range_end: Bytesish | None = None, *, prefix: bool = False,
              from_key: bool = False, start_revision: int = 0, prev_kv: bool = False,
              filters: Sequence[str] = (), progress_notify: bool = False,
              reconnect_timeout: float = 30.0) -> Watch:
        """An async iterator of events from start_revision (0 = from now), resumed across
        member failures; raises CompactedError if the history it needs was compacted."""
        create = key_range(key, range_end, prefix=prefix, from_key=from_key)
        put_opt(create, "prev_kv", prev_kv)
        put_opt(create, "progress_notify", progress_notify)
        bad = set(filters) - {"NOPUT", "NODELETE"}
        if bad:
            raise ValueError(f"unknown watch filters {sorted(bad)}")
        put_opt(create, "filters", list(filters))
        return Watch(self.transport, create, start_revision=start_revision,
                     reconnect_timeout=reconnect_timeout, liveness=self.watch_liveness)

    # ---- members --------------------------------------------------------------------------

    async def member_list(self, *, linearizable: bool = False) -> MemberListResult:
        """Members as the answering member knows them; ``linearizable`` (etcd 3.5+) makes it
        confirm with the leader first, so a change acknowledged anywhere is visible."""
        body = {"linearizable": True} if linearizable else {}
        return MemberListResult.decode(await self._call("/v3/cluster/member/list", body,
                                                        write=False))

    async def member_add(self, peer_urls: Sequence[str], *,
                         is_learner: bool = False) -> MemberListResult:
        body: Json = {"peerURLs": list(peer_urls)}
        put_opt(body, "isLearner", is_learner)
        return MemberListResult.decode(await self._call("/v3/cluster/member/add", body,
                                                        write=True))

    async def member_remove(self, member_id: int) -> MemberListResult:
        return MemberListResult.decode(await self._call(
            "/v3/cluster/member/remove", {"ID": str(member_id)}, write=True))

    async def member_update(self, member_id: int, peer_urls: Sequence[str]) -> MemberListResult:
        return MemberListResult.decode(await self._call(
            "/v3/cluster/member/update", {"ID": str(member_id), "peerURLs": list(peer_urls)},
            write=True))

    async def member_promote(self, member_id: int) -> MemberListResult:
        return MemberListResult.decode(await self._call(
            "/v3/cluster/member/promote", {"ID": str(member_id)}, write=True))

    # ---- maintenance ----------------------------------------------------------------------

    async def status(self, endpoint: str | None = None) -> Status:
        """Status of one member (the given endpoint, else whichever answers first)."""
        ep, d = await self.transport.call("/v3/maintenance/status", {}, write=False,
                                          endpoint=endpoint)
        return Status.decode(ep, d)

    async def statuses(self) -> list[Status | ClusterError]:
        """Status of every endpoint, in endpoint order; a failure stands in for its member."""
        res = await asyncio.gather(*(self.status(ep) for ep in self.endpoints),
                                   return_exceptions=True)
        out: list[Status | ClusterError] = []
        for r in res:
            if isinstance(r, BaseException) and not isinstance(r, ClusterError):
                raise r
            out.append(r)
        return out

    async def leader(self) -> Status:
        """The status of the member that the members say is leader (leader discovery)."""
        seen: dict[int, Status] = {}
        leader_ids: set[int] = set()
        for st in await self.statuses():
            if isinstance(st, Status):
                seen[st.header.member_id] = st
                if st.leader:
                    leader_ids.add(st.leader)
        for lid in leader_ids:
            if lid in seen:
                return seen[lid]
        if leader_ids:
            raise Unavailable(f"leader {', '.join(f'{i:x}' for i in leader_ids)} "
                              "is not among the endpoints")
        raise NoLeader(14, "etcdserver: no leader", http_status=503)

    async def health(self, endpoint: str) -> Health:
        """etcdctl's health check: a serializable-free linearizable read must succeed."""
        t0 = time.monotonic()
        try:
            await self.transport.call("/v3/kv/range", {"key": b64("health")}, write=False,
                                      endpoint=endpoint)
        except Unavailable as e:
            return Health(normalize_endpoint(endpoint), False, time.monotonic() - t0, str(e))
        except EtcdError as e:
            return Health(normalize_endpoint(endpoint), False, time.monotonic() - t0, e.message)
        except ClusterError as e:
            return Health(normalize_endpoint(endpoint), False, time.monotonic() - t0, str(e))
        return Health(normalize_endpoint(endpoint), True, time.monotonic() - t0)

    async def hash(self, endpoint: str) -> HashResult:
        d = await self._call("/v3/maintenance/hash", {}, write=False, endpoint=endpoint)
        return HashResult.decode(d)

    async def hashkv(self, endpoint: str, revision: int = 0) -> HashResult:
        """HashKV; etcd 3.4's gateway lacks this route (it was mapped onto /hash): Unsupported."""
        body: Json = {}
        put_opt(body, "revision", revision)
        d = await self._call("/v3/maintenance/hashkv", body, write=False, endpoint=endpoint)
        return HashResult.decode(d)

    async def move_leader(self, target_id: int) -> Status:
        """Transfer leadership; the request must reach the current leader, so find it first.

        Returns the status of the old leader as it was before the transfer.
        """
        lead = await self.leader()
        await self._call("/v3/maintenance/transfer-leadership", {"targetID": str(target_id)},
                         write=True, endpoint=lead.endpoint)
        return lead

    async def snapshot(self, path: str | os.PathLike[str], *,
                       endpoint: str | None = None) -> int:
        """Stream a backend snapshot into path (atomically: temp file, fsync, rename).

        The file is the data followed by its SHA-256 (32 bytes), as etcd streams and
        ``etcdutl snapshot restore`` expects; the digest is checked before the rename, so a
        stream cut short or damaged in transit never becomes a backup
        (SnapshotIntegrityError, nothing at ``path``).
        """
        ep = normalize_endpoint(endpoint) if endpoint else (await self.status()).endpoint
        dest = Path(path)
        tmp = dest.with_name(dest.name + ".part")
        check = _SnapshotCheck()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.transport.connect_timeout,
                                        sock_read=self.transport.timeout)
        try:
            async with self.transport.stream(ep, "/v3/maintenance/snapshot", {},
                                             timeout) as resp:
                with open(tmp, "wb") as f:
                    buf = b""
                    async for chunk in resp.content.iter_any():
                        buf += chunk
                        *lines, buf = buf.split(b"\n")
                        for line in lines:
                            check.write(f, line)
                    check.write(f, buf)
                    check.verify(ep)
                    f.flush()
                    os.fsync(f.fileno())
            os.replace(tmp, dest)
        except aiohttp.ClientError as e:
            tmp.unlink(missing_ok=True)
            raise Unavailable(f"{ep}: snapshot stream broken: {e!r}") from e
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return check.size

    # ---- raftnode extensions: metrics and failpoints -------------------------------------

    async def metrics(self, endpoint: str) -> list[metrics.Sample]:
        status, raw = await self.transport.request("GET", normalize_endpoint(endpoint)
                                                   + "/metrics")
        if status != 200:
            raise Unsupported(f"{endpoint}/metrics: HTTP {status}")
        return metrics.parse(raw.decode("utf-8", "replace"))

    async def failpoint_set(self, endpoint: str, name: str, term: str) -> None:
        """Arm a gofail failpoint (`sleep(500)`, `panic`, `return("EIO")`, `off`, ...)."""
        await self._failpoint("PUT", endpoint, name, term.encode())

    async def failpoint_get(self, endpoint: str, name: str) -> str:
        return (await self._failpoint("GET", endpoint, name)).decode().strip()

    async def failpoint_list(self, endpoint: str) -> dict[str, str]:
        """Armed failpoints of one member: name -> term."""
        text = (await self._failpoint("GET", endpoint, "")).decode()
        out: dict[str, str] = {}
        for line in text.splitlines():
            name, sep, term = line.partition("=")
            if sep and term.strip():  # gofail lists every failpoint; unarmed ones as "name="
                out[name.strip()] = term.strip()
        return out

    async def failpoint_clear(self, endpoint: str, name: str) -> None:
        await self._failpoint("DELETE", endpoint, name)

    async def _failpoint(self, method: str, endpoint: str, name: str,
                         data: bytes | None = None) -> bytes:
        if "/" in name:
            raise ValueError(f"bad failpoint name {name!r}")
        url = f"{normalize_endpoint(endpoint)}/debug/failpoints/{name}"
        status, raw = await self.transport.request(method, url, data=data)
        if status in (200, 204):
            return raw
        text = raw.decode("utf-8", "replace").strip()
        if status == 404 and not name:  # the listing itself is missing: no failpoints here
            raise Unsupported(f"{endpoint}: failpoints are not enabled on this member")
        if status == 404:
            # a failpoint that is off or unknown is a 404 too (gofail: "failpoint is
            # disabled"); only a member without the listing lacks failpoints altogether
            await self._failpoint("GET", endpoint, "")
        raise EtcdError(0, f"failpoint {name}: HTTP {status}: {text}", http_status=status)


class _SnapshotCheck:
    """Writes a snapshot stream's blobs and checks it as they pass: every message counts
    down ``remaining_bytes`` to 0 (omitted), and the last 32 bytes are the SHA-256 of the
    rest. Hashes all but a 32-byte tail, so nothing is read back."""

    __slots__ = ("digest", "remaining", "size", "tail")

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.tail = b""
        self.size = 0
        self.remaining: int | None = None

    def write(self, f: Any, line: bytes) -> None:
        if not line.strip():
            return
        msg = orjson.loads(line)
        if "error" in msg:
            raise error_from_body(0, msg, "")
        result = msg.get("result") or {}
        blob = unb64(result.get("blob"))
        self.remaining = int(result.get("remaining_bytes") or 0)
        f.write(blob)
        self.size += len(blob)
        tail = self.tail + blob
        if len(tail) > SHA256_SIZE:
            self.digest.update(tail[:-SHA256_SIZE])
            tail = tail[-SHA256_SIZE:]
        self.tail = tail

    def verify(self, ep: str) -> None:
        if self.remaining is None or self.remaining:
            raise SnapshotIntegrityError(
                f"{ep}: snapshot stream ended early ({self.size} bytes received, "
                f"{self.remaining if self.remaining is not None else 'unknown'} announced "
                "still to come)")
        if len(self.tail) < SHA256_SIZE or self.digest.digest() != self.tail:
            raise SnapshotIntegrityError(
                f"{ep}: snapshot SHA-256 mismatch ({self.size} bytes received): "
                "damaged in transit; nothing was saved")


class BoundTxn(Txn):
    """A Txn that knows its client, so the builder chain can end in `.commit()`."""

    __slots__ = ("_client",)

    def __init__(self, client: Client) -> None:
        super().__init__()
        self._client = client

    async def commit(self) -> TxnResult:
        return await self._client.commit(self)
