"""Peer transport over aiohttp: one outbound websocket stream per peer, plus snapshots.

Payload-agnostic: the driver hands in encoded raft messages as `bytes` and gets
them back in `on_messages(sender, batch)`. Each member dials every peer for its
own outbound traffic; whatever is queued when the writer wakes goes out as one
frame (one network write). Snapshots travel on separate streamed POSTs, so a big
snapshot never sits in front of heartbeats. See docs/transport.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import time
from collections import deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field

import aiohttp
import crc32c
from aiohttp import WSMsgType, web

from raftnode.failpoints import FAILPOINTS, Failpoints
from raftnode.ids import fmt_id
from raftnode.logs import get_logger
from raftnode.metrics import Metrics
from raftnode.transport import faults
from raftnode.transport.frames import (
    CHUNK_HEADER,
    HDR_CLUSTER,
    HDR_FROM,
    HDR_TO,
    KIND_MSGS,
    KIND_PROBE,
    KIND_PROBE_ACK,
    MAX_CHUNK,
    Frame,
    FrameError,
    check_chunk,
    chunk,
    decode,
    encode_msgs,
    encode_probe,
    trailer,
)

OnMessages = Callable[[int, list[bytes]], None]
OnSnapshot = Callable[[int, bytes, AsyncIterator[bytes]], Awaitable[None]]
SnapshotData = bytes | Iterable[bytes | bytearray | memoryview] | AsyncIterable[bytes]

STREAM_PATH = "/raft/stream"
SNAPSHOT_PATH = "/raft/snapshot"
HDR_REASON = "X-Raftnode-Reject-Reason"
# websocket close codes (4000-4999 are application-defined)
CLOSE_MALFORMED, CLOSE_CLUSTER, CLOSE_SENDER, CLOSE_REPLACED = 4400, 4412, 4403, 4409

log = get_logger("transport")


class PeerRejected(Exception):
    """A peer refused our stream or snapshot (wrong cluster, unknown member, ...)."""


@dataclass(slots=True)
class TransportOptions:
    """Tunables; the defaults suit a LAN cluster with etcd's 100 ms heartbeat."""

    max_queue: int = 4096  # messages per peer before dropping (raft tolerates loss)
    max_batch_bytes: int = 4 << 20  # per frame; a larger single message goes alone
    max_frame_bytes: int = 64 << 20  # receiver's websocket message limit
    probe_interval: float = 1.0  # seconds between RTT probes per peer
    stream_timeout: float = 5.0  # no probe ack for this long: the stream is dead (half-open TCP)
    backoff_min: float = 0.05
    backoff_max: float = 1.0
    dial_timeout: float = 2.0
    snapshot_chunk: int = 1 << 20


@dataclass(frozen=True, slots=True)
class SnapshotResult:
    """Outcome of send_snapshot, to report to raft (ReportSnapshot success/failure)."""

    ok: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.ok


@dataclass(slots=True)
class PeerStatus:
    """What this member knows about its outbound stream to one peer."""

    urls: tuple[str, ...]
    connected: bool = False
    last_error: str | None = None
    dropped: int = 0
    frames_sent: int = 0
    messages_sent: int = 0
    connects: int = 0


@dataclass(slots=True)
class _Peer:
    pid: int
    status: PeerStatus
    queue: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    ws: aiohttp.ClientWebSocketResponse | None = None
    broken: bool = False
    probes: dict[int, float] = field(default_factory=dict)
    last_ack: float = 0.0


class Transport:
    """Moves opaque raft message bytes between members. Use from the event loop thread."""

    def __init__(self, cluster_id: int, member_id: int, peers: Mapping[int, Iterable[str]],
                 on_messages: OnMessages, on_snapshot: OnSnapshot | None = None, *,
                 metrics: Metrics | None = None, failpoints: Failpoints = FAILPOINTS,
                 options: TransportOptions | None = None,
                 on_unreachable: Callable[[int], None] | None = None) -> None:
        assert member_id not in peers, "a member is not its own peer"
        self.cluster_id = cluster_id
        self.member_id = member_id
        self.on_messages = on_messages
        self.on_snapshot = on_snapshot
        self.on_unreachable = on_unreachable
        self.metrics = metrics or Metrics()
        self.failpoints = failpoints
        self.opts = options or TransportOptions()
        self._peers: dict[int, _Peer] = {}
        self._inbound: dict[int, web.WebSocketResponse] = {}
        self._snap_inflight: set[int] = set()
        self._session: aiohttp.ClientSession | None = None
        self._snap_session: aiohttp.ClientSession | None = None
        self._nonce = itertools.count(1)
        self._started = False
        self._local = fmt_id(member_id)
        self._hdrs = {HDR_CLUSTER: fmt_id(cluster_id), HDR_FROM: self._local}
        for pid, urls in peers.items():
            self._peers[pid] = _Peer(pid, PeerStatus(_urls(urls)))

    # ---- lifecycle -------------------------------------------------------------------

    def add_routes(self, app: web.Application) -> None:
        """Mount the peer endpoints on the app that listens on --listen-peer-urls."""
        app.router.add_get(STREAM_PATH, self._handle_stream)
        app.router.add_post(SNAPSHOT_PATH, self._handle_snapshot)

    async def start(self) -> None:
        """Open client sessions and start one writer task per peer."""
        assert not self._started
        self._started = True
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.opts.dial_timeout)
        self._session = aiohttp.ClientSession(timeout=timeout)
        # a separate pool: snapshot POSTs never queue behind or in front of streams
        self._snap_session = aiohttp.ClientSession(timeout=timeout)
        for peer in self._peers.values():
            self._spawn(peer)

    async def close(self) -> None:
        """Stop writers, close inbound streams and sessions. Idempotent."""
        for peer in list(self._peers.values()):
            await self._stop(peer)
        for ws in list(self._inbound.values()):
            await ws.close()
        self._inbound.clear()
        for s in (self._session, self._snap_session):
            if s is not None:
                await s.close()
        self._session = self._snap_session = None

    # ---- membership ------------------------------------------------------------------

    def add_peer(self, pid: int, urls: Iterable[str]) -> None:
        if pid == self.member_id or pid in self._peers:
            raise ValueError(f"peer {fmt_id(pid)} already known")
        peer = _Peer(pid, PeerStatus(_urls(urls)))
        self._peers[pid] = peer
        if self._started:
            self._spawn(peer)

    async def remove_peer(self, pid: int) -> None:
        """Forget a member: stop sending to it and refuse its streams from now on."""
        peer = self._peers.pop(pid, None)
        if peer is not None:
            await self._stop(peer)
        ws = self._inbound.pop(pid, None)
        if ws is not None:
            await ws.close(code=CLOSE_SENDER, message=b"member removed")

    def update_peer(self, pid: int, urls: Iterable[str]) -> None:
        """New peer URLs (member update): the stream reconnects to them."""
        peer = self._peers[pid]
        peer.status.urls = _urls(urls)
        if peer.ws is not None:
            peer.broken = True
            peer.wake.set()

    def peers(self) -> dict[int, tuple[str, ...]]:
        return {pid: p.status.urls for pid, p in self._peers.items()}

    def status(self, pid: int) -> PeerStatus:
        return self._peers[pid].status

    # ---- sending ---------------------------------------------------------------------

    def send(self, to: int, payload: bytes) -> bool:
        """Queue one message; never blocks. False if dropped (unknown peer or full queue)."""
        peer = self._peers.get(to)
        if peer is None:
            return False
        if len(peer.queue) >= self.opts.max_queue:
            peer.status.dropped += 1
            self.metrics.send_queue_dropped.labels(To=fmt_id(to)).inc()
            return False
        peer.queue.append(payload)
        peer.wake.set()
        return True

    async def send_snapshot(self, to: int, meta: bytes, data: SnapshotData) -> SnapshotResult:
        """Stream a snapshot to `to` on its own request; chunked and CRC-32C checked."""
        peer = self._peers.get(to)
        if peer is None or self._snap_session is None:
            return SnapshotResult(False, f"unknown peer {fmt_id(to)}" if peer is None
                                  else "transport not started")
        if not 0 < len(meta) <= MAX_CHUNK:
            raise ValueError(f"snapshot metadata must be 1..{MAX_CHUNK} bytes")
        if self.failpoints.active("peerBlackhole"):
            value = await self.failpoints.async_eval("peerBlackhole")
            if faults.targets(value, to):
                self.metrics.faults_injected.labels(Fault="blackhole").inc()
                return SnapshotResult(False, "peerBlackhole failpoint")
        size = self.opts.snapshot_chunk
        sent = self.metrics.peer_sent_bytes.labels(To=fmt_id(to))

        async def body() -> AsyncIterator[bytes]:
            yield chunk(meta)
            total = 0
            async for piece in _aiter(data):
                view = memoryview(piece)
                for off in range(0, len(view), size):
                    part = view[off:off + size]
                    total = crc32c.crc32c(part, total)
                    framed = chunk(part)
                    sent.inc(len(framed))
                    yield framed
            yield trailer(total)

        url = peer.status.urls[0] + SNAPSHOT_PATH
        headers = {**self._hdrs, HDR_TO: fmt_id(to)}
        try:
            async with self._snap_session.post(url, data=body(), headers=headers) as resp:
                if resp.status == 204:
                    return SnapshotResult(True)
                reason = resp.headers.get(HDR_REASON) or (await resp.text()).strip()
                return SnapshotResult(False, f"HTTP {resp.status}: {reason}")
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            self.metrics.peer_sent_failures.labels(To=fmt_id(to)).inc()
            return SnapshotResult(False, f"{type(exc).__name__}: {exc}")

    # ---- writer task per peer --------------------------------------------------------

    def _spawn(self, peer: _Peer) -> None:
        peer.task = asyncio.get_running_loop().create_task(
            self._run(peer), name=f"peer-{fmt_id(peer.pid)}")
        peer.task.add_done_callback(self._writer_done)

    @staticmethod
    def _writer_done(task: asyncio.Task[None]) -> None:
        """A writer only ends by cancellation; anything else is a bug and must be loud."""
        if not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error("peer writer died", task=task.get_name(),
                      error=f"{type(exc).__name__}: {exc}")

    async def _stop(self, peer: _Peer) -> None:
        if peer.task is not None:
            peer.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await peer.task
            peer.task = None
        if peer.ws is not None:
            await peer.ws.close()
            peer.ws = None

    async def _run(self, peer: _Peer) -> None:
        backoff = self.opts.backoff_min
        for attempt in itertools.count():
            url = peer.status.urls[attempt % len(peer.status.urls)]
            try:
                await self._connect_and_pump(peer, url)
                self._lost(peer, peer.status.last_error or "stream closed", rejected=False)
                backoff = self.opts.backoff_min  # the stream worked: redial promptly
            except PeerRejected as exc:
                self._lost(peer, str(exc), rejected=True)
                backoff = self.opts.backoff_max  # a config problem: do not hammer the peer
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                self._lost(peer, f"{type(exc).__name__}: {exc}", rejected=False)
            await asyncio.sleep(backoff * (0.5 + random.random()))
            backoff = min(backoff * 2, self.opts.backoff_max)

    def _lost(self, peer: _Peer, reason: str, rejected: bool) -> None:
        was = peer.status.connected
        peer.status.connected = False
        if reason != peer.status.last_error or was:
            (log.warn if rejected else log.info)(
                "peer stream down", local=self._local, remote=fmt_id(peer.pid), reason=reason)
        peer.status.last_error = reason
        if was:
            self.metrics.active_peers.labels(Local=self._local, Remote=fmt_id(peer.pid)).set(0)
            self.metrics.disconnected_peers.labels(Local=self._local,
                                                   Remote=fmt_id(peer.pid)).inc()
        if self.on_unreachable is not None:
            self.on_unreachable(peer.pid)

    async def _connect_and_pump(self, peer: _Peer, url: str) -> None:
        """Dial, then write batches until the stream breaks (returns) or fails (raises)."""
        assert self._session is not None
        try:
            ws = await self._session.ws_connect(
                url + STREAM_PATH, headers={**self._hdrs, HDR_TO: fmt_id(peer.pid)},
                autoping=True, max_msg_size=self.opts.max_frame_bytes, compress=0)
        except aiohttp.WSServerHandshakeError as exc:
            reason = exc.headers.get(HDR_REASON, exc.message) if exc.headers else exc.message
            raise PeerRejected(f"{url} refused the stream: HTTP {exc.status}: {reason}") from None
        peer.ws, peer.broken = ws, False
        peer.status.connected = True
        peer.status.connects += 1
        peer.status.last_error = None
        remote = fmt_id(peer.pid)
        self.metrics.active_peers.labels(Local=self._local, Remote=remote).set(1)
        log.info("peer stream up", local=self._local, remote=remote, url=url)
        reader = asyncio.create_task(self._read(peer, ws))
        prober = asyncio.create_task(self._probe(peer, ws))
        try:
            await self._pump(peer, ws)
        finally:
            prober.cancel()
            reader.cancel()
            await asyncio.gather(prober, reader, return_exceptions=True)
            peer.ws = None
            await ws.close()

    async def _pump(self, peer: _Peer, ws: aiohttp.ClientWebSocketResponse) -> None:
        sent_bytes = self.metrics.peer_sent_bytes.labels(To=fmt_id(peer.pid))
        fp, q, limit = self.failpoints, peer.queue, self.opts.max_batch_bytes
        while True:
            if not q:
                peer.wake.clear()
                await peer.wake.wait()
            if peer.broken or ws.closed:
                return
            if fp.active("peerBlackhole") and faults.targets(
                    await fp.async_eval("peerBlackhole"), peer.pid):
                self.metrics.faults_injected.labels(Fault="blackhole").inc(len(q))
                q.clear()
                continue
            if fp.active("peerDelay"):
                delay = faults.delay_seconds(await fp.async_eval("peerDelay"), peer.pid)
                if delay:
                    self.metrics.faults_injected.labels(Fault="delay").inc()
                    await asyncio.sleep(delay)
            batch: list[bytes] = []
            size = 0
            while q and (not batch or size + len(q[0]) <= limit):
                payload = q.popleft()
                size += len(payload)
                batch.append(payload)
            if not batch:
                continue
            frame = encode_msgs(self.cluster_id, self.member_id, batch)
            await ws.send_bytes(frame)
            sent_bytes.inc(len(frame))
            peer.status.frames_sent += 1
            peer.status.messages_sent += len(batch)

    async def _read(self, peer: _Peer, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Read probe acks on our outbound stream; flag the stream broken when it closes."""
        rtt = self.metrics.peer_rtt.labels(To=fmt_id(peer.pid))
        try:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY:
                    continue
                try:
                    frame = decode(msg.data)
                except FrameError:
                    continue
                if frame.kind == KIND_PROBE_ACK and frame.sender == peer.pid:
                    assert isinstance(frame.body, int)
                    peer.last_ack = time.monotonic()  # any ack proves the peer is alive
                    started = peer.probes.pop(frame.body, None)
                    if started is not None:
                        rtt.observe(peer.last_ack - started)
            if not peer.broken:
                code, extra = ws.close_code, ws.exception()
                peer.status.last_error = f"stream closed by peer (code {code}" + \
                    (f": {extra})" if extra else ")")
        finally:
            peer.broken = True
            peer.wake.set()

    async def _probe(self, peer: _Peer, ws: aiohttp.ClientWebSocketResponse) -> None:
        """Measure RTT, and declare the stream dead when acks stop (a silent peer host)."""
        peer.last_ack = time.monotonic()
        while not ws.closed:
            if time.monotonic() - peer.last_ack > self.opts.stream_timeout:
                peer.status.last_error = (f"no probe ack for {self.opts.stream_timeout:g}s: "
                                          "stream presumed dead")
                peer.broken = True
                peer.wake.set()
                return
            nonce = next(self._nonce)
            if len(peer.probes) > 16:  # lost acks (blackhole): forget the oldest
                peer.probes.pop(next(iter(peer.probes)))
            peer.probes[nonce] = time.monotonic()
            await ws.send_bytes(encode_probe(KIND_PROBE, self.cluster_id, self.member_id, nonce))
            await asyncio.sleep(self.opts.probe_interval)

    # ---- receiving -------------------------------------------------------------------

    def _check(self, req: web.Request) -> tuple[int, int, str] | tuple[None, int, str]:
        """Validate the stream/snapshot headers: (sender, 0, "") or (None, status, reason)."""
        try:
            cid = int(req.headers[HDR_CLUSTER], 16)
            frm = int(req.headers[HDR_FROM], 16)
            to = int(req.headers[HDR_TO], 16)
        except (KeyError, ValueError):
            return None, 400, "missing or malformed raftnode peer headers"
        if cid != self.cluster_id:
            return None, 412, (f"cluster ID mismatch: local {fmt_id(self.cluster_id)}, "
                               f"remote {fmt_id(cid)}")
        if to != self.member_id:
            return None, 412, f"member ID mismatch: this is {self._local}, not {fmt_id(to)}"
        if frm not in self._peers:
            return None, 403, f"unknown or removed member {fmt_id(frm)}"
        return frm, 0, ""

    def _reject(self, req: web.Request, status: int, reason: str, kind: str) -> web.Response:
        self.metrics.frames_rejected.labels(Reason=kind).inc()
        log.warn("rejected peer request", path=req.path, status=status, reason=reason,
                 remote=req.remote)
        return web.Response(status=status, text=reason + "\n", headers={HDR_REASON: reason})

    async def _handle_stream(self, req: web.Request) -> web.StreamResponse:
        frm, status, reason = self._check(req)
        if frm is None:
            return self._reject(req, status, reason, _reason_kind(status))
        ws = web.WebSocketResponse(max_msg_size=self.opts.max_frame_bytes, autoping=True,
                                   compress=False)
        await ws.prepare(req)
        old = self._inbound.get(frm)
        self._inbound[frm] = ws
        if old is not None:
            await old.close(code=CLOSE_REPLACED, message=b"replaced by a newer stream")
        hex_from = fmt_id(frm)
        received = self.metrics.peer_received_bytes.labels(From=hex_from)
        fp = self.failpoints
        try:
            async for msg in ws:
                if msg.type != WSMsgType.BINARY:
                    await self._close_bad(ws, CLOSE_MALFORMED, "non-binary frame", "malformed")
                    break
                try:
                    frame = decode(msg.data)
                except FrameError as exc:
                    await self._close_bad(ws, CLOSE_MALFORMED, str(exc), "malformed")
                    break
                if frame.cluster_id != self.cluster_id:
                    await self._close_bad(ws, CLOSE_CLUSTER, "cluster ID mismatch: local "
                                          f"{fmt_id(self.cluster_id)}, frame "
                                          f"{fmt_id(frame.cluster_id)}", "cluster_id")
                    break
                if frame.sender != frm or frm not in self._peers:
                    await self._close_bad(ws, CLOSE_SENDER, f"unexpected sender "
                                          f"{fmt_id(frame.sender)}", "sender")
                    break
                received.inc(len(msg.data))
                if fp.active("peerBlackhole") and faults.targets(
                        await fp.async_eval("peerBlackhole"), frm):
                    self.metrics.faults_injected.labels(Fault="blackhole").inc()
                    continue
                if fp.active("peerDelay"):
                    delay = faults.delay_seconds(await fp.async_eval("peerDelay"), frm)
                    if delay:  # latency, not a throughput cap: keep reading, deliver later
                        self.metrics.faults_injected.labels(Fault="delay").inc()
                        asyncio.get_running_loop().call_later(
                            delay, self._deliver_late, ws, frm, frame)
                        continue
                self._deliver(ws, frm, frame)
        finally:
            if self._inbound.get(frm) is ws:
                del self._inbound[frm]
        return ws

    def _deliver(self, ws: web.WebSocketResponse, frm: int, frame: Frame) -> None:
        if frame.kind == KIND_MSGS:
            assert isinstance(frame.body, list)
            try:
                self.on_messages(frm, frame.body)
            except Exception:
                log.error("on_messages failed; closing stream", exc=True, remote=fmt_id(frm))
                raise
        elif frame.kind == KIND_PROBE:
            assert isinstance(frame.body, int)
            ack = encode_probe(KIND_PROBE_ACK, self.cluster_id, self.member_id, frame.body)
            task = asyncio.get_running_loop().create_task(ws.send_bytes(ack))
            task.add_done_callback(_ignore_send_error)

    def _deliver_late(self, ws: web.WebSocketResponse, frm: int, frame: Frame) -> None:
        """A frame held back by peerDelay; dropped if its stream or sender went away."""
        if ws.closed or frm not in self._peers:
            return
        try:
            self._deliver(ws, frm, frame)
        except Exception:
            asyncio.get_running_loop().create_task(
                ws.close(code=CLOSE_MALFORMED, message=b"on_messages failed"))

    async def _close_bad(self, ws: web.WebSocketResponse, code: int, reason: str,
                         kind: str) -> None:
        self.metrics.frames_rejected.labels(Reason=kind).inc()
        log.warn("closing peer stream", reason=reason, code=code)
        await ws.close(code=code, message=reason.encode()[:120])

    async def _handle_snapshot(self, req: web.Request) -> web.Response:
        frm, status, reason = self._check(req)
        if frm is None:
            return self._reject(req, status, reason, _reason_kind(status))
        if self.on_snapshot is None:
            return self._reject(req, 501, "this member does not accept snapshots", "snapshot")
        if frm in self._snap_inflight:
            return self._reject(req, 409, f"a snapshot from {fmt_id(frm)} is already in flight",
                                "snapshot")
        self._snap_inflight.add(frm)
        try:
            return await self._receive_snapshot(req, frm)
        finally:
            self._snap_inflight.discard(frm)

    async def _receive_snapshot(self, req: web.Request, frm: int) -> web.Response:
        assert self.on_snapshot is not None
        received = self.metrics.peer_received_bytes.labels(From=fmt_id(frm))
        stream = req.content
        done = False

        async def read_chunk(index: int) -> tuple[int, int, bytes]:
            length, crc = CHUNK_HEADER.unpack(await stream.readexactly(CHUNK_HEADER.size))
            if length > MAX_CHUNK:
                raise FrameError(f"snapshot chunk {index} claims {length} bytes (max {MAX_CHUNK})")
            data = await stream.readexactly(length) if length else b""
            received.inc(CHUNK_HEADER.size + length)
            return length, crc, data

        async def chunks() -> AsyncIterator[bytes]:
            nonlocal done
            total, index, nbytes = 0, 1, 0
            while True:
                length, crc, data = await read_chunk(index)
                if length == 0:
                    if crc != total:
                        raise FrameError(f"snapshot CRC mismatch over {nbytes} bytes: trailer "
                                         f"{crc:#010x}, computed {total:#010x}")
                    done = True
                    return
                check_chunk(length, crc, data, index)
                total = crc32c.crc32c(data, total)
                nbytes += length
                index += 1
                yield data

        try:
            length, crc, meta = await read_chunk(0)
            if length == 0:
                raise FrameError("snapshot has no metadata chunk")
            check_chunk(length, crc, meta, 0)
            await self.on_snapshot(frm, meta, chunks())
            if not done:
                raise FrameError("snapshot handler returned before the end of the stream")
        except FrameError as exc:
            return self._reject(req, 400, str(exc), "snapshot_crc")
        except asyncio.IncompleteReadError as exc:
            return self._reject(req, 400, f"snapshot stream truncated ({exc.partial!r:.20})",
                                "snapshot_truncated")
        except Exception as exc:
            log.error("snapshot handler failed", exc=True, remote=fmt_id(frm))
            return self._reject(req, 500, f"snapshot handler failed: {exc}", "snapshot")
        return web.Response(status=204)


def _ignore_send_error(task: asyncio.Task[None]) -> None:
    """A probe ack on a stream that just closed: the sender will redial; nothing to do."""
    if not task.cancelled():
        task.exception()


def _reason_kind(status: int) -> str:
    return {412: "cluster_id", 403: "sender"}.get(status, "malformed")


def _urls(urls: Iterable[str]) -> tuple[str, ...]:
    out = tuple(u.rstrip("/") for u in urls)
    if not out:
        raise ValueError("a peer needs at least one URL")
    return out


async def _aiter(data: SnapshotData) -> AsyncIterator[bytes | bytearray | memoryview]:
    if isinstance(data, bytes | bytearray | memoryview):
        yield data  # one blob: chunked by the caller of _aiter
    elif isinstance(data, AsyncIterable):
        async for piece in data:
            yield piece
    else:
        for part in data:
            yield part
            await asyncio.sleep(0)  # let heartbeats through between synchronous chunks
