"""Workloads, faults and checkers end to end against a real 3-member etcd: members are
SIGKILLed and restarted under load, and the histories must check out (etcd is the oracle;
the same code runs against raftnode in the chaos-marked tests)."""

from __future__ import annotations

import asyncio
import json
import random
from dataclasses import replace
from pathlib import Path

import pytest

from chaos import linearizable
from chaos.checker import check_workload, convergence
from chaos.faults import (
    FaultContext,
    FaultError,
    Kill,
    Nemesis,
    Partition,
    Pause,
    fsync_latency,
    restore,
)
from chaos.history import History
from chaos.result import INVALID, VALID
from chaos.scenarios import RunConfig, final_from_history, run
from chaos.watchcheck import WatchSet
from chaos.workload import Workload, WorkloadConfig
from cluster.client import Client
from tests.chaos.conftest import EtcdControl


def _endpoints(ctl: EtcdControl) -> list[str]:
    return [ctl.endpoint(n) for n in ctl.names()]


async def test_register_workload_survives_member_kills(etcd_control: EtcdControl) -> None:
    eps = _endpoints(etcd_control)
    wl = Workload(WorkloadConfig("register", keys=3, concurrency=5, duration=4.0), seed=11)
    watches = WatchSet(eps, wl.prefix)
    await watches.start()
    async with Client(eps, timeout=2.0) as fc:
        ctx = FaultContext(etcd_control, fc, random.Random(11))
        nem = Nemesis(ctx, [Kill("leader"), Kill("random")], quiet=(0.3, 0.6), hold=(0.5, 1.0))
        stop = asyncio.Event()
        task = asyncio.create_task(nem.run(stop))
        await wl.run(eps)
        stop.set()
        await task
        await restore(ctx)
    await asyncio.to_thread(etcd_control.wait_healthy, 20)
    final = await wl.final_reads(eps)
    ops = wl.history.ops()
    watched = await watches.finish()
    assert watched.verdict == VALID, watched.anomalies
    assert watched.stats["events"] >= sum(o.ok for o in ops if o.f == "write")

    injected = [e for e in nem.log if e.phase == "inject"]
    assert injected and all(e.detail["signal"] == "SIGKILL" for e in injected)
    assert [e.phase for e in nem.log if e.phase != "error"][-1] == "heal"
    assert sum(o.ok for o in ops) > 50
    assert set(final) == set(wl.keys)
    results = check_workload("register", ops, final)
    assert [r.verdict for r in results] == [VALID, VALID], [r.anomalies for r in results]
    assert (await convergence(eps)).verdict == VALID

    # the same real history, with one acknowledged read made stale, must be rejected
    acked_reads = [i for i, o in enumerate(ops) if o.f == "read" and o.ok and o.process >= 0
                   and o.result is not None]
    i = acked_reads[len(acked_reads) // 2]
    tampered = [*ops[:i], replace(ops[i], result="never-written"), *ops[i + 1:]]
    assert linearizable.check(tampered).verdict == INVALID


async def test_append_scenario_writes_a_report(etcd_control: EtcdControl,
                                               tmp_path: Path) -> None:
    cfg = RunConfig("leader-kill", seed=5, duration=3.0, workload="append", concurrency=4,
                    keys=2, report_dir=tmp_path / "report")
    report = await run(cfg, control=etcd_control)
    (r,) = report["runs"]
    assert report["verdict"] == VALID, [c for c in r["checks"] if c["verdict"] != VALID]
    assert {c["checker"] for c in r["checks"]} == {"append", "watch", "convergence",
                                                   "recovery", "nemesis"}
    assert r["stats"]["ok"] > 20
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["seed"] == 5 and "--seed 5" in saved["replay"]
    assert (tmp_path / "report" / "summary.md").read_text().startswith("# chaos run")
    # the saved history re-checks to the same verdict, and a lost append is caught in it
    ops = History.load(tmp_path / "report" / "attached" / "history.jsonl").ops()
    final = final_from_history(ops)
    assert check_workload("append", ops, final)[0].verdict == VALID
    key = max(final, key=lambda k: len(final[k]))
    acked = {o.value for o in ops if o.f == "append" and o.ok and o.key == key}
    victim = next(v for v in final[key] if v in acked)
    lost = {**final, key: [v for v in final[key] if v != victim]}
    assert check_workload("append", ops, lost)[0].verdict == INVALID


async def test_fault_targets(etcd_shared: EtcdControl) -> None:
    leader = etcd_shared.cluster.leader().name
    async with Client(_endpoints(etcd_shared), timeout=2.0) as fc:
        ctx = FaultContext(etcd_shared, fc, random.Random(1))
        assert await ctx.pick("leader") == [leader]
        (f,) = await ctx.pick("follower")
        assert f != leader
        assert len(await ctx.pick("minority")) == 1
        assert len(await ctx.pick("majority")) == 2
        assert await ctx.pick("all") == etcd_shared.names()
        assert await ctx.pick("m1") == ["m1"]
        with pytest.raises(FaultError, match="unknown target"):
            await ctx.pick("everyone")
        ids = await ctx.member_ids()
        assert len(set(ids.values())) == 3


async def test_pause_and_resume(etcd_shared: EtcdControl) -> None:
    async with Client(_endpoints(etcd_shared), timeout=2.0) as fc:
        ctx = FaultContext(etcd_shared, fc, random.Random(2))
        fault = Pause("follower")
        done = await fault.inject(ctx)
        (victim,) = done["members"]
        async with Client([etcd_shared.endpoint(victim)], timeout=0.5) as one:
            assert not (await one.health(etcd_shared.endpoint(victim))).healthy
        assert (await fault.heal(ctx))["resumed"] == [victim]
    await asyncio.to_thread(etcd_shared.wait_healthy, 20)


async def test_failpoint_faults_need_failpoints(etcd_shared: EtcdControl) -> None:
    """etcd built without gofail has no /debug/failpoints: a clear FaultError, no silence."""
    async with Client(_endpoints(etcd_shared), timeout=2.0) as fc:
        ctx = FaultContext(etcd_shared, fc, random.Random(3))
        with pytest.raises(FaultError, match="could not be set"):
            await fsync_latency(1500).inject(ctx)
        with pytest.raises(FaultError, match="could not be set"):
            await Partition("leader").inject(ctx)
