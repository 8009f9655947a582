"""The election storm: fsync stalls longer than the election timeout, in the three modes.

``walBeforeFsync`` sleeps 2000 ms on every member, election timeout 1000 ms, heartbeat
100 ms. etcd's default mode persists inside its Raft loop: a member in a slow fsync sends
nothing, so while the leader is stalled its heartbeats stop and followers that are not
stalled themselves time out; leaders change while clients write. ``--unsafe-no-fsync``
never fsyncs (no stall, no storm); ``--async-storage-writes`` keeps heartbeats flowing
beside the stalled disk (no storm) and acknowledges only what is durable on a quorum.

The stall hits half the fsyncs, at random, on every member (``50%sleep(2000)``), as latency
spikes do. A stall on *every* fsync of *every* member would keep the members in lock step:
the followers' own fsyncs of the leader's appends last exactly as long as the leader's, and
etcd's clock stands still during its own fsync (ticks and Save share one goroutine), so
nobody times out there (the driver reproduces this; see ``Driver._end_stall``).
"""

from __future__ import annotations

import asyncio
import os

import pytest

from cluster import metrics
from cluster.errors import ClusterError
from tests.process.conftest import Harness

pytestmark = pytest.mark.timeout(240)

TIMING = ["--heartbeat-interval", "100", "--election-timeout", "1000", "--enable-failpoints"]
MODES = {"default": [], "unsafe-no-fsync": ["--unsafe-no-fsync"],
         "async-storage-writes": ["--async-storage-writes"]}
STALL = os.environ.get("STORM_STALL", "50%sleep(2000)")


async def counters(harness: Harness) -> dict[str, dict[str, float]]:
    """Per member: leader changes seen, elections and pre-votes started, fsyncs done."""
    out = {}
    async with harness.client(timeout=5.0) as c:
        for name in harness.names():
            s = await c.metrics(harness.endpoint(name))
            out[name] = {
                "leader_changes": metrics.total(s, metrics.LEADER_CHANGES) or 0.0,
                "elections": metrics.total(s, metrics.ELECTIONS) or 0.0,
                "pre_votes": metrics.total(s, "raftnode_pre_votes_started_total") or 0.0,
                "fsyncs": metrics.total(s, metrics.FSYNC + "_count") or 0.0,
                "slow_fsyncs": over(s, metrics.FSYNC, "1.024"),
                "late_heartbeats": over(s, "raftnode_heartbeat_delay_seconds", "1.024"),
            }
    return out


def over(samples: list[metrics.Sample], histogram: str, le: str) -> float:
    """How many observations of ``histogram`` exceeded the bucket bound ``le``."""
    def bucket(bound: str) -> float:
        return sum(x.value for x in samples
                   if x.name == histogram + "_bucket" and dict(x.labels).get("le") == bound)
    return bucket("+Inf") - bucket(le)


def delta(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]],
          key: str) -> float:
    return sum(after[n][key] - before[n][key] for n in after)


async def storm(harness: Harness, mode: str, seconds: float
                ) -> tuple[dict[str, int], list[str], dict[str, float]]:
    """Run writers for ``seconds`` with every member's fsync stalled; return what happened."""
    await harness.up(3, TIMING + MODES[mode])
    await harness.leader()
    async with harness.client() as c:
        await c.put("warm", "up")
    await harness.converged()
    before = await counters(harness)
    async with harness.client() as c:
        for name in harness.names():
            await c.failpoint_set(harness.endpoint(name), "walBeforeFsync", STALL)
    stop = asyncio.Event()
    acked: dict[str, int] = {}
    failed: list[str] = []

    async def writer(i: int) -> None:
        async with harness.client(timeout=15.0) as c:
            j = 0
            while not stop.is_set():
                key = f"s{i}-{j:05d}"
                try:
                    acked[key] = (await c.put(key, "v" * 256)).header.revision
                except ClusterError as e:  # unavailable or indeterminate: never acked
                    failed.append(f"{key}: {type(e).__name__}")
                    await asyncio.sleep(0.05)
                j += 1

    tasks = [asyncio.create_task(writer(i)) for i in range(4)]
    await asyncio.sleep(seconds)
    after = await counters(harness)  # measured while the stall is still on
    async with harness.client() as c:
        for name in harness.names():
            await c.failpoint_clear(harness.endpoint(name), "walBeforeFsync")
    stop.set()
    await asyncio.gather(*tasks)
    summary = {k: delta(after, before, k)
               for k in ("leader_changes", "elections", "pre_votes", "fsyncs", "slow_fsyncs",
                         "late_heartbeats")}
    return acked, failed, summary


async def all_acked_present(harness: Harness, acked: dict[str, int]) -> None:
    await harness.converged(timeout=30)
    async with harness.client() as c:
        got = await c.get("s", prefix=True)
    have = {kv.key.decode(): kv.mod_revision for kv in got.kvs}
    missing = [k for k in acked if k not in have]
    assert not missing, f"acknowledged writes lost: {missing[:10]}"
    assert all(have[k] == rev for k, rev in acked.items())


async def test_default_mode_storms(harness: Harness) -> None:
    acked, _failed, s = await storm(harness, "default", 20.0)
    assert s["slow_fsyncs"] > 0, s  # the stall really happened
    assert s["late_heartbeats"] > 0, s  # ... and held the leader's heartbeats back
    assert s["leader_changes"] > 0, f"no leader change under 2 s fsync stalls: {s}"
    await all_acked_present(harness, acked)


async def test_unsafe_no_fsync_does_not_storm(harness: Harness) -> None:
    acked, failed, s = await storm(harness, "unsafe-no-fsync", 15.0)
    assert s["fsyncs"] == 0, s  # never fsyncs, so never stalls
    assert s["leader_changes"] == 0 and s["elections"] == 0, s
    assert len(acked) > 50 and not failed, (len(acked), failed[:5])
    await all_acked_present(harness, acked)


async def test_async_storage_writes_does_not_storm_and_loses_nothing(harness: Harness) -> None:
    acked, _failed, s = await storm(harness, "async-storage-writes", 20.0)
    assert s["slow_fsyncs"] > 0, s  # the same stall as in the default mode
    assert s["late_heartbeats"] == 0, s
    assert s["leader_changes"] == 0 and s["elections"] == 0 and s["pre_votes"] == 0, s
    assert acked, "no write acknowledged in 20 s"
    await all_acked_present(harness, acked)


@pytest.mark.chaos
@pytest.mark.timeout(600)
@pytest.mark.parametrize("mode", list(MODES))
async def test_storm_long(harness: Harness, mode: str) -> None:
    acked, _failed, s = await storm(harness, mode, 90.0)
    if mode == "default":
        assert s["leader_changes"] > 0, s
    else:
        assert s["leader_changes"] == 0 and s["elections"] == 0, s
    await all_acked_present(harness, acked)
