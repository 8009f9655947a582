"""Snapshots packed by a forked child: the state at the fork, with the loop running on."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from raftnode.cowsnapshot import ForkedSerialization, SnapshotChildError, fork_serialize
from raftnode.mvcc.messages import PutRequest
from raftnode.snapparts import SnapParts
from raftnode.statemachine import StateMachine
from tests.node.test_driver_inproc import leader_of, running
from wal.backends import open_backend
from wal.snap import Snapshot as WalSnapshot

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


async def test_the_bytes_are_the_state_at_the_fork() -> None:
    state = {"n": list(range(1000))}
    job = fork_serialize(lambda: repr(state).encode() * 100)
    state["n"].append(-1)  # after the fork: not in the child's copy
    got = (await job.result()).join()
    assert got == repr({"n": list(range(1000))}).encode() * 100
    assert isinstance(job, ForkedSerialization) and job.pidfd == -1


async def test_large_output_through_the_pipe_and_nothing_leaks() -> None:
    before = open_fds()
    blob = os.urandom(1 << 20) * 24  # 24 MiB: many pipe buffers
    assert (await fork_serialize(lambda: blob).result()).join() == blob
    assert open_fds() == before


async def test_a_failing_child_is_an_error_not_a_crash(capfd: pytest.CaptureFixture[str]) -> None:
    def boom() -> bytes:
        raise OSError(28, "No space left on device")

    with pytest.raises(SnapshotChildError, match="exited with 1"):
        await fork_serialize(boom).result()
    assert "OSError: [Errno 28] No space left on device" in capfd.readouterr().err


async def test_the_loop_runs_while_the_child_packs() -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    t0 = time.monotonic()
    data = (await fork_serialize(lambda: (time.sleep(0.5), b"done")[1]).result()).join()
    t.cancel()
    assert data == b"done" and time.monotonic() - t0 >= 0.5
    assert ticks >= 20  # ~50 at 10 ms; an inline pack would allow none


async def test_the_child_holds_none_of_the_parents_descriptors(tmp_path: Path) -> None:
    lock = (tmp_path / "lockfile").open("w")  # stands for a WAL segment lock, or a socket
    job = fork_serialize(lambda: (time.sleep(0.5), b"x")[1])
    await asyncio.sleep(0.2)
    beyond_stdio = [os.readlink(f"/proc/{job.pid}/fd/{fd}")
                    for fd in os.listdir(f"/proc/{job.pid}/fd") if int(fd) > 2]
    assert len(beyond_stdio) == 1 and beyond_stdio[0].startswith("pipe:")  # its write end
    assert (await job.result()).join() == b"x"
    lock.close()


async def test_cancel_kills_the_child_and_reaps_it() -> None:
    job = fork_serialize(lambda: (time.sleep(30), b"never")[1])
    res = asyncio.create_task(job.result())
    await asyncio.sleep(0.1)
    job.cancel()
    with pytest.raises(SnapshotChildError):
        await asyncio.wait_for(res, 5.0)
    with pytest.raises(ChildProcessError):  # already reaped: no zombie left
        os.waitpid(job.pid, os.WNOHANG)


async def test_a_slow_snapshot_does_not_stall_commits(tmp_path, monkeypatch) -> None:
    original = StateMachine.snapshot_parts

    def slow(self: StateMachine) -> SnapParts:
        time.sleep(1.0)  # runs in the forked child only
        return original(self)

    monkeypatch.setattr(StateMachine, "snapshot_parts", slow)
    async with running(tmp_path, snapshot_count=20) as (_net, drivers):
        leader = await leader_of(drivers)
        for i in range(25):
            await leader.propose(PutRequest(b"k%d" % i, b"v"))
        first = leader._snap_job
        assert first is not None, "no snapshot in progress after 20 entries"
        during = 0
        while leader._snap_job is first:  # (the next one starts 20 entries after it)
            await leader.propose(PutRequest(b"during", b"%d" % during))
            during += 1
        assert during >= 10, f"only {during} writes committed during a 1 s snapshot"
        for _ in range(100):
            if leader.rn.raft.log.base_index > 0:
                break
            await asyncio.sleep(0.02)
        assert leader.snapshot_index >= 20 and leader.rn.raft.log.base_index > 0


async def test_the_child_writes_the_snap_file_and_a_reload_starts_from_it(tmp_path) -> None:
    async with running(tmp_path, snapshot_count=20, backend="file") as (_net, drivers):
        leader = await leader_of(drivers)
        for i in range(30):
            await leader.propose(PutRequest(b"k%d" % i, b"v"))
        target = max(d.applied for d in drivers)
        for _ in range(200):
            if all(d.snapshot_index >= 20 for d in drivers):
                break
            await asyncio.sleep(0.02)
        assert all(d.snapshot_index >= 20 for d in drivers)
        for d in drivers:
            await d.wait_applied(target)
    for d in drivers:
        d.storage.close()
    # every member's data dir holds the file its child wrote, and reloads from it
    for i, d in enumerate(drivers):
        snaps = sorted((tmp_path / f"m{i}" / "member" / "snap").glob("*.snap"))
        assert snaps, f"m{i}: no .snap file"
        state = open_backend("file", tmp_path / f"m{i}").load()
        assert state.snapshot is not None and state.snapshot.index == d.snapshot_index


async def test_later_snapshots_are_incremental_and_a_restart_restores_them(tmp_path) -> None:
    """After the first snapshot each child packs only the writes since the last one (a new
    chunk; the rest is the last snapshot's bytes); a member restarted from that file, and
    a member restored from its peers', hold the same state as the one that wrote it."""
    async with running(tmp_path, snapshot_count=20, backend="file") as (_net, drivers):
        leader = await leader_of(drivers)
        for i in range(95):
            await leader.propose(PutRequest(b"k%d" % (i % 6), b"v%d" % i))
        for _ in range(300):
            if all(d.snapshot_index >= 80 for d in drivers):
                break
            await asyncio.sleep(0.02)
        target = max(d.applied for d in drivers)
        for d in drivers:
            await d.wait_applied(target)
            base = d.sm.store._base
            assert base is not None and base.chunks >= 3, (d.snapshot_index, base)
            # never joined: the snapshot the core keeps for lagging followers is the very
            # buffers the store reuses for the next one
            kept = d.rn.raft.log.snapshot.data
            assert isinstance(kept, tuple) and len(kept) > len(base.parts)
            assert all(any(p is q for q in kept) for p in base.parts)
        hashes = {d.sm.store.hash() for d in drivers}
        assert len(hashes) == 1
    for d in drivers:
        d.storage.close()
    async with running(tmp_path, snapshot_count=20, backend="file") as (_net, again):
        for d in again:
            assert d.snapshot_index >= 80  # started from the chunked snapshot file
            await d.wait_applied(target)
        assert {d.sm.store.hash() for d in again} == hashes


async def test_the_child_reports_where_the_stores_chunks_are() -> None:
    blob = os.urandom(3 << 20)
    job = fork_serialize(lambda: SnapParts([b"head", blob, b"tail"], (1, 2), 4))
    got = await job.result()
    assert got.join() == b"head" + blob + b"tail" and got.chunks == 4
    i, j = got.region
    assert b"".join(got.parts[i:j]) == blob and got.region_offsets() == (4, 4 + len(blob))


async def test_a_snapshot_overtaken_by_a_newer_saved_one_is_dropped_not_fatal(tmp_path) -> None:
    """Seen in a conformance run: a restarted member's own snapshot (index 40) was still
    being written when the leader's (120) arrived and was saved; saving ours after it made
    the storage refuse an older snapshot, which stopped the member. The save now runs on
    the disk thread behind the leader's and drops ours."""
    async with running(tmp_path, snapshot_count=20, backend="file") as (_net, drivers):
        leader = await leader_of(drivers)
        for i in range(25):
            await leader.propose(PutRequest(b"k%d" % i, b"v"))
        for _ in range(200):
            if leader.snapshot_index >= 20:
                break
            await asyncio.sleep(0.02)
        assert leader.snapshot_index >= 20
        loop = asyncio.get_running_loop()
        stale = WalSnapshot(10, leader.term, b"older state")
        assert not await loop.run_in_executor(leader._disk, leader._save_own_snapshot, stale,
                                              False)
        assert leader._fatal is None
        await leader.propose(PutRequest(b"after", b"v"))  # still serving
    for d in drivers:
        d.storage.close()
    assert open_backend("file", tmp_path / "m0").load().snapshot.index >= 20
