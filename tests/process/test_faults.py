"""Disk faults on real members: corrupt and torn WALs, EIO fail-stop, whole-cluster power cuts.

Every test runs real ``raftnode`` processes on real sockets with real fsync. Damage is done
to the files of a stopped member, exactly where a disk would do it, and the member is then
started by the launcher as an operator would start it.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from pathlib import Path

import msgpack
import pytest

from cluster.errors import ClusterError
from tests.process.conftest import Harness
from wal.decoder import Decoder
from wal.framing import ENTRY, SECTOR_SIZE_BYTES, STATE
from wal.snap import Snapshotter

pytestmark = pytest.mark.timeout(180)


# -- helpers ----------------------------------------------------------------------------------


def wal_dir(harness: Harness, name: str) -> Path:
    return Path(harness.launcher.load().member(name).data_dir) / "member" / "wal"


def segments(harness: Harness, name: str) -> list[Path]:
    return sorted(wal_dir(harness, name).glob("*.wal"))


def frames(path: Path) -> list[tuple[int, int, int]]:
    """(record type, frame start, frame end) of every valid record of one segment."""
    dec = Decoder([str(path)])
    out = []
    for rtype, _data, pos in dec.records():
        out.append((rtype, pos, 0))
        if len(out) > 1:
            prev = out[-2]
            out[-2] = (prev[0], prev[1], pos)
    if out:
        last = out[-1]
        out[-1] = (last[0], last[1], dec.last_offset)
    return out


def flip_bit(path: Path, offset: int, bit: int = 3) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ (1 << bit)]))
        f.flush()
        os.fsync(f.fileno())


def zero(path: Path, start: int, end: int) -> None:
    with open(path, "r+b") as f:
        f.seek(start)
        f.write(b"\0" * (end - start))
        f.flush()
        os.fsync(f.fileno())


async def start_pid(harness: Harness, name: str, env: dict[str, str] | None = None) -> int:
    """Start a member (optionally with extra environment) and return its pid."""
    saved = {k: os.environ.get(k) for k in (env or {})}
    os.environ.update(env or {})
    try:
        entry = await asyncio.to_thread(harness.launcher.start, name)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    assert entry.pid is not None
    return entry.pid


async def wait_exit(pid: int, timeout: float) -> int | None:
    """The exit code of our child ``pid`` once it exits, or None if it is still running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return os.waitstatus_to_exitcode(status)
        await asyncio.sleep(0.1)
    return None


async def put_many(harness: Harness, names: list[str] | None, prefix: str, n: int,
                   size: int = 64) -> dict[str, int]:
    acked = {}
    async with harness.client(names) as c:
        for i in range(n):
            key = f"{prefix}{i:04d}"
            acked[key] = (await c.put(key, f"{i}:" + "v" * size)).header.revision
    return acked


async def keys_on(harness: Harness, name: str, prefix: str) -> dict[str, int]:
    async with harness.client([name]) as c:
        got = await c.get(prefix, prefix=True, serializable=True)
    return {kv.key.decode(): kv.mod_revision for kv in got.kvs}


# -- corruption: refuse to start, name file and offset, touch nothing ------------------------


async def test_flipped_bit_mid_log_refuses_to_start_naming_file_and_offset(
        harness: Harness) -> None:
    await harness.up(3)
    leader = await harness.leader()
    n3 = next(n for n in harness.names() if n != leader)  # the quorum keeps its leader
    n1, n2 = (n for n in harness.names() if n != n3)
    await put_many(harness, None, "c", 40)
    await harness.converged()
    await harness.kill(n3)
    segs = segments(harness, n3)
    assert len(segs) == 1, segs
    seg = segs[0]
    entries = [(pos, end) for rtype, pos, end in frames(seg) if rtype == ENTRY]
    assert len(entries) > 20
    pos, end = entries[10]  # an early record, with many good records after it
    flip_bit(seg, (pos + 8 + end) // 2)  # inside the record's payload
    before = seg.read_bytes()

    pid = await start_pid(harness, n3)
    code = await wait_exit(pid, 20.0)
    assert code is not None, "a member with a corrupt WAL kept running"
    assert code != 0
    log = harness.log(n3)
    assert seg.name in log and f"offset {pos}" in log, log[-2000:]
    assert "crc mismatch" in log.lower()
    # nothing was repaired, truncated or copied: the evidence is intact
    assert seg.read_bytes() == before
    assert not list(wal_dir(harness, n3).glob("*.broken"))
    # the other two still form a quorum and serve
    async with harness.client([n1, n2]) as c:
        await c.put("after", "corruption")
        assert (await c.get("after")).kvs[0].value == b"corruption"


# -- torn tail: repaired on start, .broken kept, member rejoins -------------------------------


@pytest.mark.parametrize("damage", ["truncate", "unwritten-sectors"])
async def test_torn_tail_is_repaired_on_start_and_member_rejoins(harness: Harness,
                                                               damage: str) -> None:
    """The power goes while a follower's last append is written but not yet fsynced (so
    not acknowledged): part of that record never reaches the disk."""
    await harness.up(3, ["--enable-failpoints"])
    leader = await harness.leader()
    n3 = next(n for n in harness.names() if n != leader)
    acked = await put_many(harness, None, "t", 30)
    await harness.converged()
    async with harness.client() as c:
        await c.failpoint_set(harness.endpoint(n3), "walBeforeFsync", "sleep(20000)")
    # a big record, spanning several disk sectors, so a torn write can hit its middle; the
    # other two acknowledge it while n3 sits in its fsync
    acked |= await put_many(harness, [leader], "big", 1, size=3000)
    seg = segments(harness, n3)[-1]
    for _ in range(100):  # written (flushed to the OS) before the fsync it is stuck in
        if any(end - pos > 2048 for rtype, pos, end in frames(seg) if rtype == ENTRY):
            break
        await asyncio.sleep(0.05)
    await harness.kill(n3)
    recs = frames(seg)
    pos, end = [(p, e) for rtype, p, e in recs if rtype == ENTRY and e - p > 2048][-1]
    tail_end = recs[-1][2]
    size_before = seg.stat().st_size
    if damage == "truncate":  # a file that was still growing when the power went
        cut = (pos + end) // 2
        with open(seg, "r+b") as f:
            f.truncate(cut)
            os.fsync(f.fileno())
    else:  # preallocated file: the sectors from the middle of the record on never landed
        first_sector = -(-(pos + 64) // SECTOR_SIZE_BYTES) * SECTOR_SIZE_BYTES
        assert first_sector < end
        zero(seg, first_sector, tail_end)

    pid = await start_pid(harness, n3)
    assert await wait_exit(pid, 3.0) is None, "member exited instead of repairing: " + \
        harness.log(n3)[-2000:]
    broken = list(wal_dir(harness, n3).glob("*.broken"))
    assert [b.name for b in broken] == [seg.name + ".broken"]
    if damage == "truncate":
        assert broken[0].stat().st_size == (pos + end) // 2
    else:
        assert broken[0].stat().st_size == size_before
    rev = await harness.converged(timeout=30)
    assert "repaired a torn WAL tail" in harness.log(n3) and broken[0].name in harness.log(n3)
    have = await keys_on(harness, n3, "")
    missing = [k for k in acked if k not in have]
    assert not missing, missing
    assert all(have[k] == r for k, r in acked.items())
    async with harness.client([n3]) as c:  # it takes writes again, through the leader
        r = await c.put("after", "repair")
    assert r.header.revision == rev + 1
    assert pid in {m.pid for m in harness.launcher.load().members}
    assert (await wait_exit(pid, 0.1)) is None


# -- EIO on write: fail-stop, the others keep serving ----------------------------------------


async def test_wal_write_eio_on_leader_at_run_time_is_fail_stop(harness: Harness) -> None:
    await harness.up(3, ["--enable-failpoints"])
    leader = await harness.leader()
    others = [n for n in harness.names() if n != leader]
    pid = harness.launcher.load().member(leader).pid
    assert pid is not None
    await put_many(harness, None, "e", 5)
    async with harness.client() as c:
        await c.failpoint_set(harness.endpoint(leader), "walWrite", 'return("EIO")')
    doomed: dict[str, int] = {}
    async with harness.client(others, timeout=5.0) as c:
        # the write that meets the EIO may still be acknowledged: the followers persisted it
        # (the leader sends appends before its own fsync) and the next leader commits it
        try:
            doomed["doomed"] = (await c.put("doomed", "x")).header.revision
        except ClusterError:
            pass
    code = await wait_exit(pid, 15.0)
    assert code is not None and code != 0, f"exit code {code}"
    log = harness.log(leader)
    assert "EIO" in log or "Input/output error" in log, log[-2000:]
    assert "fail-stop" in log
    new = await harness.leader(exclude=leader, timeout=15)
    assert new in others
    acked = await put_many(harness, others, "post", 10)
    for name in others:
        have = await keys_on(harness, name, "post")
        assert set(acked) <= set(have), name
        if doomed:
            assert (await keys_on(harness, name, "doomed")) == doomed


async def test_wal_write_eio_set_at_start_on_follower_is_fail_stop(harness: Harness) -> None:
    await harness.up(3, ["--enable-failpoints"])
    leader = await harness.leader()
    victim = next(n for n in harness.names() if n != leader)
    others = [n for n in harness.names() if n != victim]
    await put_many(harness, None, "f", 5)
    await harness.kill(victim)
    pid = await start_pid(harness, victim, {"RAFTNODE_FAILPOINTS": 'walWrite=return("EIO")'})
    # the follower's first append (new entries from the leader) meets the EIO
    async with harness.client(others) as c:
        for i in range(20):
            await c.put(f"g{i}", "x")
            if (code := await wait_exit(pid, 0.05)) is not None:
                break
        else:
            code = await wait_exit(pid, 15.0)
    assert code is not None and code != 0, f"exit code {code}"
    assert "EIO" in harness.log(victim) or "Input/output error" in harness.log(victim)
    acked = await put_many(harness, others, "h", 10)
    for name in others:
        assert set(acked) <= set(await keys_on(harness, name, "h"))


# -- whole-cluster power cuts -----------------------------------------------------------------


async def _writers(harness: Harness, stop: asyncio.Event, acked: dict[str, int],
                   n: int = 3) -> list[asyncio.Task[None]]:
    async def one(i: int) -> None:
        async with harness.client(timeout=2.0) as c:
            j = 0
            while not stop.is_set():
                key = f"p{i}-{j:05d}"
                try:
                    acked[key] = (await c.put(key, "x" * 100)).header.revision
                except ClusterError:
                    await asyncio.sleep(0.05)
                j += 1
    return [asyncio.create_task(one(i)) for i in range(n)]


def lose_unsynced_tail(seg: Path, rng: random.Random, most: int = 8) -> int:
    """Model a power cut that drops data never fsynced: zero the segment from a record
    boundary among its last ``most`` entries. Only boundaries after the last term/vote
    change are used: losing a vote can split-brain any Raft (etcd #14143), which
    ``--unsafe-no-fsync`` does not claim to survive either. Returns how many records went."""
    recs = []
    dec = Decoder([str(seg)])
    for rtype, data, pos in dec.records():
        recs.append((rtype, data, pos))
    end = dec.last_offset
    floor, last_tv = 0, None
    for i, (rtype, data, _pos) in enumerate(recs):
        if rtype == STATE:
            term, vote, _commit = msgpack.unpackb(data)
            if (term, vote) != last_tv:
                floor, last_tv = i + 1, (term, vote)
    cuts = [i for i, (rtype, _d, _p) in enumerate(recs) if rtype == ENTRY and i >= floor]
    if not cuts:
        return 0
    i = rng.choice(cuts[-most:])
    zero(seg, recs[i][2], end)
    return len(recs) - i


@pytest.mark.parametrize("mode", [
    "fsync",
    "unsafe-no-fsync",  # SIGKILL only: the OS keeps the page cache, nothing may be lost
    pytest.param("unsafe-no-fsync-power-loss", marks=pytest.mark.chaos),
])
async def test_whole_cluster_power_cut_under_load(harness: Harness, mode: str) -> None:
    """All members SIGKILLed at once under write load, then restarted.

    fsync on: nothing acknowledged is lost. ``--unsafe-no-fsync`` with the OS surviving
    (a process crash): nothing is lost either, the page cache has it all. With the unsynced
    tails also lost (chaos variant): acknowledged writes may go, but what survives is a
    prefix of the history and every member must converge or stop loudly: a minority that
    kept (and applied) entries the majority lost finds out when the new leader's entries
    conflict with its committed ones, and stops (InvariantViolation) instead of staying a
    silent, divergent follower.
    """
    flags = ["--unsafe-no-fsync"] if mode.startswith("unsafe-no-fsync") else []
    await harness.up(3, flags)
    stop = asyncio.Event()
    acked: dict[str, int] = {}
    tasks = await _writers(harness, stop, acked)
    await asyncio.sleep(2.0)
    pids = [m.pid for m in harness.launcher.load().members if m.pid]
    for pid in pids:  # all at once: nobody gets to say goodbye
        os.kill(pid, 9)
    for name in harness.names():
        await harness.kill(name)  # reaps them and updates the cluster file
    stop.set()
    await asyncio.gather(*tasks)
    assert len(acked) > 20
    dropped = {}
    if mode == "unsafe-no-fsync-power-loss":  # the OS lost the unsynced tails, per member
        rng = random.Random(20261125)
        for name in harness.names():
            dropped[name] = lose_unsynced_tail(segments(harness, name)[-1], rng)
        assert any(dropped.values())
    for name in harness.names():
        await harness.start(name)
    await harness.leader(timeout=30)
    await harness.converged(timeout=30)
    stopped = [n for n in harness.names() if n not in harness.running()]
    if mode != "unsafe-no-fsync-power-loss":
        assert not stopped, f"members stopped after the cut: {stopped}"
    for name in stopped:
        # a member whose log kept entries the new quorum lost may not rejoin with them (it
        # applied them): it must have stopped loudly, as etcd panics, never diverged; the
        # operator's cure is etcd's: replace it, and it catches up from the others
        log = harness.log(name)
        assert "InvariantViolation" in log and "fail-stop" in log, log[-2000:]
        await harness.replace(name)
    assert len(stopped) < 2
    async with harness.client() as c:
        got = await c.get("p", prefix=True)
        r = await c.put("after", "power cut")
    have = {kv.key.decode(): kv.mod_revision for kv in got.kvs}
    assert r.header.revision == got.header.revision + 1
    # what survived is exactly the acknowledged history up to some revision (a prefix)
    assert all(have[k] == rev for k, rev in acked.items() if k in have)
    lost = sorted(rev for k, rev in acked.items() if k not in have)
    if mode != "unsafe-no-fsync-power-loss":
        assert not lost, f"acknowledged writes lost: {lost[:10]}"
    else:
        kept = max((rev for k, rev in acked.items() if k in have), default=0)
        assert all(rev > kept for rev in lost), (kept, lost[:10], dropped)
    await harness.converged(timeout=30)
    assert sorted(harness.running()) == sorted(harness.names())


# -- chained .snap files: written small, damaged, recovered ------------------------------------


def snap_dir(harness: Harness, name: str) -> Path:
    return Path(harness.launcher.load().member(name).data_dir) / "member" / "snap"


async def test_snap_files_chain_and_a_damaged_base_is_survived(harness: Harness) -> None:
    """Each snapshot's file holds only its new bytes and references the older files for
    the rest. A flipped bit in the base breaks every file reading through it: the member
    renames those ``.broken`` (naming file and offset in its log), recovers from what is
    left (here the WAL, which still starts at index 1) and converges with the others."""
    await harness.up(3, ["--snapshot-count", "40", "--snapshot-catchup-entries", "10"])
    leader = await harness.leader()
    victim = next(n for n in harness.names() if n != leader)
    async with harness.client() as c:  # 4 KiB values: a snapshot's new chunk > 64 KiB
        for i in range(200):
            await c.put(f"z{i % 150:03d}", f"{i}:" + "v" * 4096)
    await harness.converged(timeout=30)
    await harness.kill(victim)
    snaps = sorted(snap_dir(harness, victim).glob("*.snap"))
    assert len(snaps) >= 3, snaps
    sizes = {p.name: p.stat().st_size for p in snaps}
    newest = snaps[-1]
    header = Snapshotter(snap_dir(harness, victim)).read_header(newest.name)
    assert header is not None and header.references(), "the newest file references none"
    # the store's history passed 600 KiB; no file holds even half of it (~160 KiB each)
    assert header.size > 600 << 10 and max(sizes.values()) < header.size // 2, (header, sizes)
    base = max(header.references(), key=lambda n: sizes[n])
    seg = next(s for s in header.segments if s.name == base)
    flip_bit(snap_dir(harness, victim) / base, seg.offset + seg.length // 2)

    await harness.start(victim)
    rev = await harness.converged(timeout=30)
    log = harness.log(victim)
    assert f"crc mismatch in {snap_dir(harness, victim) / base}" in log, log[-3000:]
    assert (snap_dir(harness, victim) / (newest.name + ".broken")).exists()
    async with harness.client([victim]) as c:
        got = await c.get("z", prefix=True, serializable=True)
        assert len(got.kvs) == 150 and got.header.revision == rev
