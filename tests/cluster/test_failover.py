"""Failover against real etcd and raftnode clusters with members SIGKILLed mid-run.

Reads are retried on another member after any failure; a write is retried only when its
first attempt surely never reached a member (connection refused); a write whose connection
dies after it was sent is reported as IndeterminateError and is not retried.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from cluster.client import Client
from cluster.errors import IndeterminateError
from tests.cluster.local_cluster import ClusterMember, LocalCluster


def _ordered(c: LocalCluster, first: ClusterMember) -> list[str]:
    return [first.client_url] + [m.client_url for m in c.members if m is not first]


async def _member_id(c: Client, m: ClusterMember) -> int:
    return (await c.status(m.client_url)).header.member_id


async def _wait_sent() -> None:
    """Give the client time to write its request into the victim's socket buffer."""
    await asyncio.sleep(0.3)


async def test_reads_and_writes_survive_member_kills(fresh: LocalCluster) -> None:
    c = fresh
    victim = c.follower()
    async with Client(_ordered(c, victim), timeout=5) as cl:
        victim_id = await _member_id(cl, victim)
        await cl.put("fo/k", "v0")
        first = await cl.get("fo/k")
        assert first.header.member_id == victim_id  # pinned to the first endpoint

        # 1. A read in flight when its member dies is retried elsewhere.
        c.pause(victim)
        read = asyncio.create_task(cl.get("fo/k"))
        await _wait_sent()
        assert not read.done(), read.exception() or read.result()
        # A read to a member that hangs (no answer, no error) moves on after its attempt
        # timeout.
        async with Client(_ordered(c, victim), timeout=2) as hung:
            got = await hung.get("fo/k")
            assert got.kvs[0].value == b"v0" and got.header.member_id != victim_id
        c.kill(victim)
        got = await asyncio.wait_for(read, 5)
        assert got.kvs[0].value == b"v0" and got.header.member_id != victim_id

        # 2. With the member dead (connection refused), reads and writes go elsewhere.
        async with Client(_ordered(c, victim), timeout=5) as new:
            w = await new.put("fo/refused", "once")
            assert w.header.member_id != victim_id
            kv = await new.get_one("fo/refused")
            assert kv is not None and kv.version == 1 and kv.value == b"once"

        # 3. The member comes back and serves again.
        c.restart(victim)
        back = await cl.status(victim.client_url)
        assert back.header.member_id == victim_id
        assert (await cl.get("fo/refused", serializable=True)).kvs


async def test_write_in_flight_when_member_dies_is_indeterminate(fresh: LocalCluster) \
        -> None:
    c = fresh
    victim = c.follower()
    async with Client(_ordered(c, victim), timeout=5) as cl:
        await cl.get("warm-up")  # a pooled connection to the victim
        c.pause(victim)
        put = asyncio.create_task(cl.put("fo/maybe", "x"))
        await _wait_sent()
        assert not put.done()
        c.kill(victim)
        with pytest.raises(IndeterminateError) as ei:
            await asyncio.wait_for(put, 5)
        assert ei.value.endpoint == victim.client_url and ei.value.path == "/v3/kv/put"
        # Not retried elsewhere: the stopped member never proposed it, so it is absent.
        assert await cl.get_one("fo/maybe") is None


class AnswerDroppingProxy:
    """Forwards each request to a member, lets it be applied, then cuts the client off
    before the answer: the classic 'ok but the client never heard' write."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.server: asyncio.Server | None = None
        self.forwarded = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            head = await r.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await r.readexactly(length)
            uw.write(head + body)
            await uw.drain()
            await ur.readuntil(b"\r\n\r\n")  # the member answered: the write is applied
            self.forwarded += 1
        finally:
            w.transport.abort()
            uw.close()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            with contextlib.suppress(Exception):
                await self.server.wait_closed()


async def test_applied_write_with_lost_answer_is_indeterminate_not_retried(
        cluster: LocalCluster) -> None:
    port = int(cluster.members[0].client_url.rsplit(":", 1)[1])
    proxy = AnswerDroppingProxy(port)
    url = await proxy.start()
    try:
        async with Client([url, *cluster.endpoints], timeout=5) as cl:
            key = f"fo/applied-{id(proxy)}"
            with pytest.raises(IndeterminateError):
                await cl.put(key, "x")
            kv = await cl.get_one(key)
            # Applied exactly once: a silent retry would have made version 2.
            assert kv is not None and kv.version == 1
            # Reads through the same broken endpoint are retried on a healthy member.
            assert (await cl.get(key)).kvs[0].value == b"x"
        assert proxy.forwarded == 2
    finally:
        await proxy.close()
