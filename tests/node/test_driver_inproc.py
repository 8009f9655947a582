"""The driver with the real core, real state machine and in-memory storage, in one loop.

The network is a dict of drivers: a sent message is stepped into its target on the next
loop iteration. This checks the shell's wiring (Ready handling, apply, waiters, forwarding,
ReadIndex, snapshots) quickly; the process-level tests check it again with real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncIterator
from typing import Any

import msgpack
import pytest

from raftnode.bootstrap import BootSpec, boot
from raftnode.driver import Driver, Hooks
from raftnode.mvcc.messages import PutRequest, RangeRequest
from raftnode.raft.types import EntryType, Message, Role
from wal.backends import open_backend


class Net:
    def __init__(self) -> None:
        self.drivers: dict[int, Driver] = {}
        self.cut: set[int] = set()
        self.one_way: set[tuple[int, int]] = set()  # (from, to) raft messages dropped
        self.drop_forwards = False

    def deliver(self, msgs: list[Message]) -> None:
        loop = asyncio.get_running_loop()
        for m in msgs:
            if m.to in self.cut or m.frm in self.cut or (m.frm, m.to) in self.one_way:
                continue
            d = self.drivers.get(m.to)
            if d is not None:
                loop.call_soon(d.step, m)

    def forward(self, frm: int, to: int, datas: list[bytes]) -> None:
        if to in self.cut or frm in self.cut or self.drop_forwards:
            return
        d = self.drivers.get(to)
        if d is not None:
            asyncio.get_running_loop().call_soon(d.receive_forwarded, datas)


def make_cluster(tmp_path, n: int = 3, *, async_writes: bool = False, snapshot_count: int = 10_000,
                 backend: str = "memory") -> tuple[Net, list[Driver]]:
    net = Net()
    initial = {f"m{i}": (f"http://127.0.0.1:{20000 + i}",) for i in range(n)}
    drivers = []
    fatal: list[BaseException] = []
    for i in range(n):
        name = f"m{i}"
        spec = BootSpec(name=name, peer_urls=initial[name], initial_cluster=initial, state="new",
                        token="t", election_tick=10, async_storage_writes=async_writes,
                        tick_seconds=0.02)
        storage = open_backend(backend, tmp_path / name)
        b = boot(spec, storage, random.Random(i))
        holder: list[Driver] = []
        hooks = Hooks(send=net.deliver,
                      forward=lambda to, datas, h=holder: net.forward(h[0].member_id, to, datas),
                      on_fatal=fatal.append)
        d = Driver(b.rn, storage, b.sm, hooks, b.member_id, async_writes=async_writes,
                   snapshot_count=snapshot_count, catchup_entries=5, tick_seconds=0.02,
                   request_timeout=3.0, applied=b.applied, snapshot_index=b.snapshot_index,
                   conf_state=b.conf_state)
        holder.append(d)
        net.drivers[d.member_id] = d
        drivers.append(d)
    return net, drivers


@contextlib.asynccontextmanager
async def running(tmp_path, n: int = 3, **kw: Any) -> AsyncIterator[tuple[Net, list[Driver]]]:
    """:func:`make_cluster`, started, and stopped again however the test ends."""
    net, drivers = make_cluster(tmp_path, n, **kw)
    for d in drivers:
        d.start()
    try:
        yield net, drivers
    finally:
        for d in drivers:
            await d.stop()


async def leader_of(drivers: list[Driver], timeout: float = 5.0) -> Driver:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        leads = [d for d in drivers if d.role == Role.LEADER and not d._stopped]
        if len(leads) == 1:
            return leads[0]
        await asyncio.sleep(0.02)
    raise AssertionError("no single leader")


@pytest.mark.parametrize(("async_writes", "backend"),
                         [(False, "memory"), (True, "memory"), (False, "file"), (True, "sqlite")])
async def test_writes_commit_everywhere_and_follower_forwards(tmp_path, async_writes,
                                                              backend) -> None:
    async with running(tmp_path, async_writes=async_writes, backend=backend) as (_net, drivers):
        leader = await leader_of(drivers)
        follower = next(d for d in drivers if d is not leader)
        r1 = await leader.propose(PutRequest(b"a", b"1"))
        r2 = await follower.propose(PutRequest(b"b", b"2"))  # forwarded to the leader
        assert r2.revision == r1.revision + 1
        await follower.read_barrier()  # ReadIndex through the leader
        got = follower.sm.store.range(RangeRequest(b"b"))
        assert [kv.value for kv in got.kvs] == [b"2"]
        # in async mode a follower may apply an entry before the leader's own fsync lets
        # the leader apply it: wait for the furthest member, not for the leader
        target = max(d.applied for d in drivers)
        for d in drivers:
            await d.wait_applied(target)
        assert len({d.sm.store.hash() for d in drivers}) == 1
        # every initial member is known with its peer URLs
        assert sorted(len(m.peer_urls) for m in leader.sm.member_list()) == [1, 1, 1]


async def test_snapshot_and_compaction_then_lagging_member_catches_up(tmp_path) -> None:
    async with running(tmp_path, snapshot_count=20) as (net, drivers):
        leader = await leader_of(drivers)
        lagging = next(d for d in drivers if d is not leader)
        net.cut.add(lagging.member_id)
        await asyncio.gather(*(leader.propose(PutRequest(b"k%d" % i, b"v")) for i in range(80)))
        for _ in range(100):  # the snapshot is taken after the apply that crossed the count
            if leader.snapshot_index > 0:
                break
            await asyncio.sleep(0.02)
        assert leader.snapshot_index > 0
        assert leader.rn.raft.log.base_index > 0, "the log was not compacted"
        net.cut.clear()
        await lagging.wait_applied(leader.applied)
        assert lagging.sm.store.hash() == leader.sm.store.hash()


def copies_in_log(d: Driver, rid: int) -> int:
    """How many log entries carry request ``rid`` (the original and any re-submission)."""
    n = 0
    for e in d.rn.raft.log.entries:
        if e.type == EntryType.NORMAL and e.data and msgpack.unpackb(e.data)[1] == rid:
            n += 1
    return n


async def test_forward_lost_to_old_leader_is_resubmitted_to_the_new_one(tmp_path) -> None:
    async with running(tmp_path) as (net, drivers):
        leader = await leader_of(drivers)
        follower, other = (d for d in drivers if d is not leader)
        await follower.propose(PutRequest(b"warm", b"up"))
        net.drop_forwards = True  # the forward dies with the old leader
        put = asyncio.create_task(follower.propose(PutRequest(b"k", b"v")))
        await asyncio.sleep(0.2)
        assert not put.done()
        net.drop_forwards = False
        await leader.transfer(other.member_id)
        r = await asyncio.wait_for(put, 2.0)  # well inside the 3 s request timeout
        await follower.wait_applied(max(d.applied for d in drivers))
        kv = follower.sm.store.range(RangeRequest(b"k")).kvs[0]
        assert (kv.value, kv.version, kv.mod_revision) == (b"v", 1, r.revision)


async def test_resubmission_that_duplicates_a_committed_proposal_applies_once(tmp_path) -> None:
    async with running(tmp_path) as (net, drivers):
        leader = await leader_of(drivers)
        follower, other = (d for d in drivers if d is not leader)
        await follower.propose(PutRequest(b"warm", b"up"))
        await leader.wait_applied(follower.applied)  # (the follower may apply it first)
        # the forward reaches the leader and commits (leader + other), but the follower
        # hears nothing from the leader, so its request is still pending when the
        # leadership moves: it re-submits, and the log ends up holding both copies
        net.one_way.add((leader.member_id, follower.member_id))
        rev0 = leader.sm.store.revision
        rid = follower._next_rid + 1  # the ID propose() will use
        put = asyncio.create_task(follower.propose(PutRequest(b"k", b"v1")))
        for _ in range(100):
            if leader.sm.store.revision > rev0:
                break
            await asyncio.sleep(0.02)
        assert leader.sm.store.revision == rev0 + 1 and not put.done()
        await leader.transfer(other.member_id)
        r = await asyncio.wait_for(put, 2.0)
        net.one_way.clear()
        await other.propose(PutRequest(b"after", b"x"))
        target = max(d.applied for d in drivers)
        for d in drivers:
            await d.wait_applied(target)
        assert copies_in_log(other, rid) == 2, "the re-submission did not reach the log"
        for d in drivers:
            kv = d.sm.store.range(RangeRequest(b"k")).kvs[0]
            assert (kv.value, kv.version, kv.mod_revision) == (b"v1", 1, r.revision)
            assert d.sm.store.revision == rev0 + 2  # k once, then "after"
        assert len({d.sm.store.hash() for d in drivers}) == 1


async def test_concurrent_linearizable_reads_on_every_member_all_complete(tmp_path) -> None:
    """The leader tells read requests apart by their context: two members' reads must
    never share one, or one of them is answered and the other waits out its timeout."""
    async with running(tmp_path) as (_net, drivers):
        leader = await leader_of(drivers)
        await leader.propose(PutRequest(b"k", b"v"))
        for _ in range(5):
            await asyncio.wait_for(
                asyncio.gather(*(d.read_barrier() for d in drivers for _ in range(3))), 2.0)
