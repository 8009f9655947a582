"""The peer transport with real aiohttp servers on real sockets."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp
import crc32c
import pytest

from raftnode.failpoints import Failpoints
from raftnode.transport import SnapshotResult, TransportOptions
from raftnode.transport.frames import (
    HDR_CLUSTER,
    HDR_FROM,
    HDR_TO,
    chunk,
    encode_msgs,
    trailer,
)
from tests.node_parts.conftest import Node, bound_socket, start_node, until, url_of

CID = 0xC1
A, B, C = 0xA1, 0xB2, 0xC3


def payloads(node: Node, frm: int) -> list[bytes]:
    return [p for f, p in node.got if f == frm]


async def pair(fa: Failpoints | None = None, fb: Failpoints | None = None,
               cid_b: int = CID) -> tuple[Node, Node]:
    sa, sb = bound_socket(), bound_socket()
    a = await start_node(CID, A, {B: [url_of(sb)]}, sa, failpoints=fa)
    b = await start_node(cid_b, B, {A: [url_of(sa)]}, sb, failpoints=fb)
    return a, b


async def test_delivery_in_order_with_batching() -> None:
    a, b = await pair()
    try:
        msgs = [f"m{i}".encode() for i in range(2000)]
        for m in msgs:  # all queued in one loop turn: they must coalesce into few frames
            assert a.transport.send(B, m)
        await until(lambda: len(b.got) == 2000, "2000 messages at B")
        assert payloads(b, A) == msgs
        assert len(b.batches) < 100 and max(b.batches) > 1
        st = a.transport.status(B)
        assert st.messages_sent == 2000 and st.frames_sent == len(b.batches) and st.connected
        b.transport.send(A, b"back")
        await until(lambda: payloads(a, B) == [b"back"], "reply at A")
        assert not a.transport.send(0xDEAD, b"x")  # unknown peer: dropped, not raised
    finally:
        await a.stop()
        await b.stop()


async def test_three_members_all_to_all_with_metrics() -> None:
    socks = {m: bound_socket() for m in (A, B, C)}
    nodes = {m: await start_node(CID, m, {p: [url_of(s)] for p, s in socks.items() if p != m},
                                 socks[m]) for m in (A, B, C)}
    try:
        for _ in range(50):
            for m, n in nodes.items():
                for p in nodes:
                    if p != m:
                        n.transport.send(p, f"{m:x}->{p:x}".encode())
            await asyncio.sleep(0)
        await until(lambda: all(len(n.got) == 100 for n in nodes.values()), "all-to-all")
        for m, n in nodes.items():
            for p in nodes:
                if p != m:
                    assert payloads(n, p) == [f"{p:x}->{m:x}".encode()] * 50
        text = nodes[A].metrics.exposition().decode()
        await until(lambda: 'etcd_network_peer_round_trip_time_seconds_count{To="b2"}'
                    in nodes[A].metrics.exposition().decode(), "an RTT sample")
        assert 'etcd_network_peer_sent_bytes_total{To="b2"}' in text
        assert 'etcd_network_peer_received_bytes_total{From="c3"}' in text
        assert 'etcd_network_active_peers{Local="a1",Remote="c3"} 1.0' in text
    finally:
        for n in nodes.values():
            await n.stop()


async def test_reconnects_after_the_peer_restarts() -> None:
    a, b = await pair()
    port = b.sock.getsockname()[1]
    try:
        a.transport.send(B, b"before")
        await until(lambda: payloads(b, A) == [b"before"], "first message")
        await b.stop()
        await until(lambda: not a.transport.status(B).connected, "A notices B is gone")
        b = await start_node(CID, B, {A: [a.url]}, bound_socket(port))
        await until(lambda: a.transport.status(B).connected, "A reconnects")
        a.transport.send(B, b"after")
        await until(lambda: b"after" in payloads(b, A), "message after restart")
        assert a.transport.status(B).connects >= 2
        assert 'etcd_network_disconnected_peers_total{Local="a1",Remote="b2"}' in \
            a.metrics.exposition().decode()
    finally:
        await a.stop()
        await b.stop()


async def test_wrong_cluster_id_is_refused_with_a_reason() -> None:
    a, b = await pair(cid_b=0xBAD)
    try:
        a.transport.send(B, b"x")
        await until(lambda: "cluster ID mismatch" in (a.transport.status(B).last_error or ""),
                    "A learns why")
        err = a.transport.status(B).last_error or ""
        assert "HTTP 412" in err and "local bad, remote c1" in err
        assert b.got == [] and not a.transport.status(B).connected
        assert 'raftnode_peer_frames_rejected_total{Reason="cluster_id"}' in \
            b.metrics.exposition().decode()
    finally:
        await a.stop()
        await b.stop()


async def test_unknown_and_removed_senders_are_refused() -> None:
    sa, sb = bound_socket(), bound_socket()
    a = await start_node(CID, A, {B: [url_of(sb)]}, sa)
    b = await start_node(CID, B, {}, sb)  # B does not know A
    try:
        a.transport.send(B, b"x")
        await until(lambda: "unknown or removed member a1" in (a.transport.status(B).last_error
                                                                or ""), "refusal reason")
        assert b.got == []
        b.transport.add_peer(A, [a.url])
        await until(lambda: payloads(b, A) == [b"x"], "queued message accepted after add_peer")
        await b.transport.remove_peer(A)
        await until(lambda: not a.transport.status(B).connected, "stream closed on removal")
        before = len(b.got)
        a.transport.send(B, b"z")
        await until(lambda: "unknown or removed" in (a.transport.status(B).last_error or ""),
                    "refused again")
        assert len(b.got) == before
    finally:
        await a.stop()
        await b.stop()


async def test_every_frame_is_checked() -> None:
    sb = bound_socket()
    b = await start_node(CID, B, {A: ["http://127.0.0.1:9"]}, sb)
    hdrs = {HDR_CLUSTER: "c1", HDR_FROM: "a1", HDR_TO: "b2"}
    cases = [(encode_msgs(0xBAD, A, [b"x"]), 4412), (encode_msgs(CID, C, [b"x"]), 4403),
             (b"\xc1garbage", 4400), (encode_msgs(CID, A, [b"ok"])[:-1], 4400)]
    try:
        async with aiohttp.ClientSession() as s:
            for frame, code in cases:
                async with s.ws_connect(b.url + "/raft/stream", headers=hdrs) as ws:
                    await ws.send_bytes(encode_msgs(CID, A, [b"good"]))
                    await ws.send_bytes(frame)
                    msg = await ws.receive(timeout=10)
                    assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == code, msg
            async with s.get(b.url + "/raft/stream", headers={HDR_CLUSTER: "zz"}) as r:
                assert r.status == 400
            async with s.get(b.url + "/raft/stream", headers={**hdrs, HDR_TO: "77"}) as r:
                assert r.status == 412 and "member ID mismatch" in await r.text()
        assert payloads(b, A) == [b"good"] * len(cases)  # nothing from a bad frame
    finally:
        await b.stop()


async def test_large_snapshot_does_not_block_messages() -> None:
    a, b = await pair()
    size = 20 << 20
    blob = bytes(range(256)) * (size // 256)
    progress: list[int] = []

    async def slow_install(frm: int, meta: bytes, chunks: AsyncIterator[bytes]) -> None:
        parts = []
        async for c in chunks:
            parts.append(c)
            progress.append(len(payloads(b, A)))  # messages seen when this chunk arrived
            await asyncio.sleep(0.01)  # a slow disk on the receiving side
        b.snapshots.append((frm, meta, b"".join(parts)))

    b.transport.on_snapshot = slow_install
    try:
        def data() -> AsyncIterator[bytes]:
            async def gen() -> AsyncIterator[bytes]:
                for off in range(0, size, 3 << 20):
                    yield blob[off:off + (3 << 20)]
            return gen()

        snap = asyncio.create_task(a.transport.send_snapshot(B, b"meta:term=3,index=99", data()))
        n = 0
        while not snap.done():  # heartbeats keep flowing while the snapshot streams
            a.transport.send(B, f"hb{n}".encode())
            n += 1
            await asyncio.sleep(0.005)
        result = await snap
        assert result == SnapshotResult(True) and result
        assert b.snapshots == [(A, b"meta:term=3,index=99", blob)]
        assert len(progress) == 20  # 1 MiB chunks
        # messages kept arriving between the first and the last chunk of the snapshot
        assert progress[-1] > progress[0]
        assert payloads(b, A) == [f"hb{i}".encode() for i in range(len(payloads(b, A)))]
    finally:
        await a.stop()
        await b.stop()


async def _post(url: str, body: bytes) -> tuple[int, str]:
    hdrs = {HDR_CLUSTER: "c1", HDR_FROM: "a1", HDR_TO: "b2"}
    async with aiohttp.ClientSession() as s, s.post(url + "/raft/snapshot", data=body,
                                                     headers=hdrs) as r:
        return r.status, await r.text()


async def test_snapshot_corruption_is_detected() -> None:
    a, b = await pair()
    data = [b"x" * 1000, b"y" * 1000]
    good = chunk(b"meta") + b"".join(chunk(d) for d in data)
    total = crc32c.crc32c(b"".join(data))
    try:
        assert await _post(b.url, good + trailer(total)) == (204, "")
        flipped = bytearray(good)
        flipped[-10] ^= 0x01
        status, text = await _post(b.url, bytes(flipped) + trailer(total))
        assert status == 400 and "snapshot chunk 2 (1000 bytes) CRC mismatch" in text
        status, text = await _post(b.url, good + trailer(total ^ 1))
        assert status == 400 and "snapshot CRC mismatch over 2000 bytes" in text
        status, text = await _post(b.url, good[:-5])
        assert status == 400 and "truncated" in text
        bad_meta = bytearray(chunk(b"meta"))
        bad_meta[-1] ^= 0xFF
        status, text = await _post(b.url, bytes(bad_meta) + trailer(0))
        assert status == 400 and "chunk 0" in text
        assert len(b.snapshots) == 1  # only the good one was installed
        assert 'raftnode_peer_frames_rejected_total{Reason="snapshot_crc"} 3.0' in \
            b.metrics.exposition().decode()
    finally:
        await a.stop()
        await b.stop()


async def test_snapshot_to_an_unreachable_or_unknown_peer_fails_cleanly() -> None:
    dead = bound_socket()  # bound, never listening: connection refused
    a = await start_node(CID, A, {B: [url_of(dead)]}, bound_socket())
    try:
        res = await a.transport.send_snapshot(B, b"m", [b"data"])
        assert not res.ok and res.reason
        res = await a.transport.send_snapshot(0x99, b"m", b"data")
        assert res == SnapshotResult(False, "unknown peer 99") and not res
        with pytest.raises(ValueError):
            await a.transport.send_snapshot(B, b"", [b"data"])
    finally:
        await a.stop()
        dead.close()


async def test_bounded_queue_drops_without_blocking() -> None:
    dead = bound_socket()
    opts = TransportOptions(max_queue=10, backoff_min=0.01, backoff_max=0.05)
    a = await start_node(CID, A, {B: [url_of(dead)]}, bound_socket(), options=opts)
    try:
        results = [a.transport.send(B, b"m") for _ in range(100)]
        assert results.count(True) == 10 and results.count(False) == 90
        assert a.transport.status(B).dropped == 90
        assert 'raftnode_peer_send_queue_dropped_total{To="b2"} 90.0' in \
            a.metrics.exposition().decode()
    finally:
        await a.stop()
        dead.close()


async def test_blackhole_and_delay_failpoints() -> None:
    fa = Failpoints()
    a, b = await pair(fa=fa)
    try:
        a.transport.send(B, b"warmup")
        await until(lambda: payloads(b, A) == [b"warmup"], "warm-up")
        b.transport.send(A, b"warmup")
        await until(lambda: payloads(a, B) == [b"warmup"], "warm-up back")
        fa.set("peerBlackhole", 'return("ff,b2")')
        for i in range(20):
            a.transport.send(B, f"lost{i}".encode())
            b.transport.send(A, f"lost{i}".encode())
            await asyncio.sleep(0.005)
        await until(lambda: fa.hits.get("peerBlackhole", 0) >= 4, "blackhole fired")
        await asyncio.sleep(0.1)
        assert payloads(b, A) == [b"warmup"] and payloads(a, B) == [b"warmup"]
        fa.clear("peerBlackhole")
        fa.set("peerDelay", 'return("b2:300")')
        started = time.monotonic()
        a.transport.send(B, b"late")
        await until(lambda: b"late" in payloads(b, A), "delayed message")
        assert time.monotonic() - started >= 0.29  # lower bound only: it was held back
        b.transport.send(A, b"late-in")
        await until(lambda: b"late-in" in payloads(a, B), "delayed inbound")
        fa.clear("peerDelay")
        a.transport.send(B, b"free")
        await until(lambda: b"free" in payloads(b, A), "traffic after faults")
        assert 'raftnode_peer_faults_injected_total{Fault="blackhole"}' in \
            a.metrics.exposition().decode()
        fa.set("peerBlackhole", "return")
        res = await a.transport.send_snapshot(B, b"m", [b"d"])
        assert res == SnapshotResult(False, "peerBlackhole failpoint")
    finally:
        await a.stop()
        await b.stop()


async def test_membership_changes_at_run_time() -> None:
    sa, sb = bound_socket(), bound_socket()
    a = await start_node(CID, A, {}, sa)
    b = await start_node(CID, B, {A: [url_of(sa)]}, sb)
    try:
        a.transport.add_peer(B, [b.url])
        with pytest.raises(ValueError):
            a.transport.add_peer(B, [b.url])
        a.transport.send(B, b"one")
        await until(lambda: payloads(b, A) == [b"one"], "after add_peer")
        await b.stop()  # B moves to a new address
        b = await start_node(CID, B, {A: [a.url]}, bound_socket())
        a.transport.update_peer(B, [b.url])
        assert a.transport.peers() == {B: (b.url,)}
        await until(lambda: a.transport.status(B).connected, "reconnect to the new URL")
        a.transport.send(B, b"two")
        await until(lambda: payloads(b, A) == [b"two"], "after update_peer")
        await a.transport.remove_peer(B)
        assert a.transport.peers() == {} and not a.transport.send(B, b"three")
    finally:
        await a.stop()
        await b.stop()


async def test_a_silent_peer_is_detected_and_redialled() -> None:
    from aiohttp import web

    accepted = 0

    async def mute(req: web.Request) -> web.WebSocketResponse:
        nonlocal accepted
        accepted += 1
        ws = web.WebSocketResponse()
        await ws.prepare(req)
        async for _ in ws:  # reads everything, answers nothing (a hung peer process)
            pass
        return ws

    app = web.Application()
    app.router.add_get("/raft/stream", mute)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    sb = bound_socket()
    await web.SockSite(runner, sb).start()
    opts = TransportOptions(probe_interval=0.02, stream_timeout=0.2, backoff_min=0.01,
                            backoff_max=0.05)
    a = await start_node(CID, A, {B: [url_of(sb)]}, bound_socket(), options=opts)
    try:
        await until(lambda: accepted >= 2, "a second dial after the probe timeout")
        assert a.transport.status(B).connects >= 2
        await until(lambda: "no probe ack" in (a.transport.status(B).last_error or ""),
                    "the reason is recorded")
    finally:
        await a.stop()
        await runner.cleanup()


async def test_one_inbound_snapshot_per_sender() -> None:
    a, b = await pair()
    started = asyncio.Event()

    async def slow(frm: int, meta: bytes, chunks: AsyncIterator[bytes]) -> None:
        started.set()
        async for _ in chunks:
            await asyncio.sleep(0.02)
        b.snapshots.append((frm, meta, b""))

    b.transport.on_snapshot = slow
    try:
        first = asyncio.create_task(a.transport.send_snapshot(B, b"m1", [b"z" * 1000] * 20))
        await started.wait()
        second = await a.transport.send_snapshot(B, b"m2", [b"q"])
        assert not second.ok and "HTTP 409" in second.reason
        assert (await first).ok and [m for _, m, _ in b.snapshots] == [b"m1"]
        one_blob = await a.transport.send_snapshot(B, b"m3", b"w" * 3_000_000)  # plain bytes
        assert one_blob.ok and b.snapshots[-1][1] == b"m3"
    finally:
        await a.stop()
        await b.stop()
