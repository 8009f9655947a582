"""The retry rules of the transport, driven by stand-in members on real sockets that answer
with chosen gateway errors, or never: the cases a healthy etcd rarely produces on demand."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web

from cluster.client import Client
from cluster.errors import EtcdError, IndeterminateError, NoLeader, ProtocolError, Unavailable

OK = {"header": {"cluster_id": "1", "member_id": "2", "revision": "5", "raft_term": "3"}}
Reply = Callable[[], web.StreamResponse]


@dataclass
class Member:
    """Answers every gateway request with `reply()` and records the paths it received."""

    reply: Reply
    hits: list[str] = field(default_factory=list)
    url: str = ""


def error(status: int, code: int, message: str) -> Reply:
    return lambda: web.json_response({"error": message, "code": code, "message": message},
                                     status=status)


def ok() -> web.StreamResponse:
    return web.json_response(OK)


Start = Callable[[Reply], Awaitable[Member]]


@pytest.fixture
async def start() -> AsyncIterator[Start]:
    runners: list[web.AppRunner] = []

    async def run(reply: Reply) -> Member:
        m = Member(reply)

        async def handle(req: web.Request) -> web.StreamResponse:
            m.hits.append(req.path)
            return m.reply()
        app = web.Application()
        app.router.add_post("/{tail:.*}", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        m.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        return m

    yield run
    for r in runners:
        await r.cleanup()


@pytest.fixture
async def silent() -> AsyncIterator[str]:
    """A member that reads requests and never answers (hung process, black-holed reply)."""
    async def swallow(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        await r.read(65536)
        await asyncio.sleep(30)
    srv = await asyncio.start_server(swallow, "127.0.0.1", 0)
    yield f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}"
    srv.close()


async def test_write_timed_out_inside_cluster_is_indeterminate(start: Start) -> None:
    a = await start(error(503, 14, "etcdserver: request timed out"))
    b = await start(ok)
    async with Client([a.url, b.url], timeout=2) as c:
        with pytest.raises(IndeterminateError) as ei:
            await c.put("k", "v")
        assert ei.value.endpoint == a.url
        assert b.hits == []  # never retried elsewhere
        r = await c.get("k")  # the same answer to a read: retried on b
    assert r.header.revision == 5 and b.hits == ["/v3/kv/range"]


async def test_write_refused_before_proposal_is_retried(start: Start) -> None:
    a = await start(error(503, 14, "etcdserver: no leader"))
    b = await start(ok)
    async with Client([a.url, b.url], timeout=2) as c:
        assert (await c.put("k", "v")).header.raft_term == 3
    assert a.hits == ["/v3/kv/put"] and b.hits == ["/v3/kv/put"]


async def test_definite_errors_are_not_retried(start: Start) -> None:
    a = await start(error(400, 3, "etcdserver: key is not provided"))
    b = await start(ok)
    async with Client([a.url, b.url], timeout=2) as c:
        with pytest.raises(EtcdError) as ei:
            await c.get("k")
    assert (ei.value.code, ei.value.http_status) == (3, 400) and b.hits == []


async def test_no_leader_anywhere_ends_in_the_typed_error(start: Start) -> None:
    a = await start(error(503, 14, "etcdserver: no leader"))
    async with Client([a.url], timeout=0.5) as c:
        with pytest.raises(NoLeader):
            await c.get("k")
    assert len(a.hits) > 1  # retried, with back-off, until the deadline


async def test_silent_member(start: Start, silent: str) -> None:
    b = await start(ok)
    async with Client([silent, b.url], timeout=2, read_attempt_timeout=0.3) as c:
        assert (await c.get("k")).header.member_id == 2  # gave up on silent, asked b
    async with Client([silent, b.url], timeout=0.5) as c:
        with pytest.raises(IndeterminateError) as ei:
            await c.put("k", "v")  # sent, never answered: may apply later
    assert ei.value.endpoint == silent and b.hits == ["/v3/kv/range"]


async def test_non_gateway_answer_is_a_protocol_error(start: Start) -> None:
    a = await start(lambda: web.Response(text="<html>proxy</html>", status=200))
    async with Client([a.url], timeout=1) as c:
        with pytest.raises(ProtocolError, match="not a JSON object"):
            await c.get("k")


async def test_nothing_listening_is_unavailable_with_attempts() -> None:
    async with Client(["127.0.0.1:1"], timeout=0.3) as c:
        with pytest.raises(Unavailable) as ei:
            await c.put("k", "v")
    assert ei.value.attempts and "127.0.0.1:1" in ei.value.attempts[0]
