"""Scenarios: start (or attach to) a cluster, run a workload under a nemesis, heal, check,
report. One scenario may compare several modes (fsync-storm runs default,
``--async-storage-writes`` and ``--unsafe-no-fsync`` on fresh clusters with one seed).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from chaos.checker import check_workload, convergence
from chaos.faults import (
    Control,
    DiskFailure,
    Fault,
    FaultContext,
    Kill,
    LauncherControl,
    MemberReplace,
    Nemesis,
    Partition,
    Pause,
    PowerCut,
    fsync_latency,
    restore,
)
from chaos.history import OK, Op
from chaos.observe import LeaderObserver
from chaos.report import op_stats, write_report
from chaos.result import INVALID, UNKNOWN, VALID, CheckResult, combine
from chaos.watchcheck import WatchSet
from chaos.workload import Workload, WorkloadConfig, require_loopback
from cluster.client import Client
from cluster.errors import ClusterError
from cluster.launcher import Launcher

MODES: dict[str, tuple[str, ...]] = {
    "default": (),
    "async-storage-writes": ("--async-storage-writes",),
    "unsafe-no-fsync": ("--unsafe-no-fsync",),
}


class ScenarioError(ValueError):
    """A scenario cannot run as asked (unknown name, bad option, unusable cluster file)."""


@dataclass(slots=True, frozen=True)
class RunConfig:
    scenario: str
    seed: int = 1
    duration: float = 30.0
    members: int = 3
    cluster_file: Path | None = None
    report_dir: Path | None = None
    workload: str | None = None  # override the scenario's workload kind
    concurrency: int = 6
    keys: int = 4
    heartbeat_ms: int = 100
    election_ms: int = 1000
    modes: tuple[str, ...] = ()  # fsync-storm: which modes to compare (default: all)
    serializable_reads: bool = False  # not linearizable: shows the checker catching it
    extra_flags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise ScenarioError(f"unknown scenario {self.scenario!r}; one of "
                                f"{', '.join(SCENARIOS)}")
        if self.duration <= 0 or self.members < 1 or self.concurrency < 1:
            raise ScenarioError("duration, members and concurrency must be positive")
        bad = [m for m in self.modes if m not in MODES]
        if bad:
            raise ScenarioError(f"unknown modes {bad}; one of {', '.join(MODES)}")
        if self.cluster_file is not None and self.cluster_file.name != "cluster.json":
            raise ScenarioError(f"{self.cluster_file}: the launcher's cluster file is named "
                                "cluster.json")

    def node_flags(self) -> list[str]:
        return ["--heartbeat-interval", str(self.heartbeat_ms),
                "--election-timeout", str(self.election_ms), "--enable-failpoints",
                *SCENARIOS[self.scenario].flags, *self.extra_flags]

    def replay(self) -> str:
        parts = ["python -m chaos run", self.scenario, f"--seed {self.seed}",
                 f"--duration {self.duration:g}"]
        parts.append(f"--cluster-file {self.cluster_file}" if self.cluster_file
                     else f"--members {self.members}")
        if self.workload:
            parts.append(f"--workload {self.workload}")
        if self.modes:
            parts.append("--modes " + ",".join(self.modes))
        if self.serializable_reads:
            parts.append("--serializable-reads")
        return " ".join(parts)


@dataclass(slots=True, frozen=True)
class Plan:
    faults: list[Fault]
    quiet: tuple[float, float]
    hold: tuple[float, float]
    limit: int | None = None  # at most this many faults per run
    request_timeout: float = 2.0  # client deadline; a write that outlives it is info


@dataclass(slots=True, frozen=True)
class Scenario:
    name: str
    description: str
    workload: str
    plan: Callable[[RunConfig], Plan]
    modes: tuple[str, ...] = ("default",)
    flags: tuple[str, ...] = ()


def _storm(cfg: RunConfig) -> Plan:
    # one long fsync stall above the election timeout on every member, most of the run; the
    # client waits long enough for a write that needs two slow fsyncs (leader, follower)
    hold = max(cfg.duration - 3.0, cfg.duration * 0.6)
    latency_ms = int(cfg.election_ms * 1.5)
    return Plan([fsync_latency(latency_ms)], (1.0, 1.0), (hold, hold), limit=1,
                request_timeout=4 * latency_ms / 1000)


SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("leader-kill", "SIGKILL the leader, restart it; now and then a random member",
             "register",
             lambda c: Plan([Kill("leader"), Kill("leader"), Kill("random")], (1.0, 3.0),
                            (0.5, 2.5))),
    Scenario("power-cut", "SIGKILL every member at once, restart them all", "append",
             lambda c: Plan([PowerCut()], (2.5, 4.5), (0.2, 1.5))),
    Scenario("partition", "isolate the leader or a minority from the peer network",
             "register",
             lambda c: Plan([Partition("leader"), Partition("minority")], (1.0, 2.5),
                            (1.5, 4.0))),
    Scenario("pause", "SIGSTOP the leader or a random member, SIGCONT later", "register",
             lambda c: Plan([Pause("leader"), Pause("random")], (1.0, 2.5), (1.0, 3.0))),
    Scenario("member-replace", "remove a member, wipe its data, add it back empty", "append",
             lambda c: Plan([MemberReplace("follower"), MemberReplace("leader")], (2.0, 4.0),
                            (0.5, 1.0)),
             flags=("--snapshot-count", "200")),
    Scenario("disk-failure", "a member's disk fails (EIO on write and fsync); it must exit "
             "and rejoin empty", "append",
             lambda c: Plan([DiskFailure("follower")], (2.0, 4.0), (0.5, 1.5))),
    Scenario("fsync-storm", "fsync latency above the election timeout on every member; "
             "compares default, --async-storage-writes and --unsafe-no-fsync", "register",
             _storm, modes=("default", "async-storage-writes", "unsafe-no-fsync")),
)}


def final_from_history(ops: Sequence[Op]) -> dict[str, Any]:
    """The final reads (process -1) recorded after healing: last ok read per key."""
    out: dict[str, Any] = {}
    for op in ops:
        if op.process == -1 and op.f == "read" and op.outcome == OK:
            out[op.key] = op.result
    return out


def fault_checks(nemesis_log: Sequence[dict[str, Any]]) -> list[CheckResult]:
    """What the nemesis itself observed: did any fault happen at all (a run without one
    proves nothing), and did every member exit when its disk returned EIO."""
    out = []
    injected = [e for e in nemesis_log if e["phase"] == "inject"]
    errors = [e for e in nemesis_log if e["phase"] == "error"]
    if injected:
        out.append(CheckResult("nemesis", VALID, f"{len(injected)} fault(s) injected",
                               stats={"injected": len(injected), "errors": len(errors)}))
    else:
        why = errors[0]["detail"] if errors else "the run ended before the first fault"
        out.append(CheckResult("nemesis", UNKNOWN, f"no fault was injected: {why}"))
    survived = [e for e in nemesis_log if e["detail"].get("survived_eio")]
    if not any(e["fault"] == "disk-failure" and e["phase"] == "inject" for e in nemesis_log):
        return out
    if survived:
        return [*out, CheckResult("fsync-eio-fatal", INVALID,
                                  "a member kept running after its disk returned EIO",
                                  tuple(survived[:5]))]
    return [*out, CheckResult("fsync-eio-fatal", VALID, "every member exited on EIO")]


async def run_once(ctl: Control, cfg: RunConfig, *, label: str,
                   mode_flags: Sequence[str] = ()) -> dict[str, Any]:
    """One workload + nemesis run against a running cluster; returns its report section."""
    sc = SCENARIOS[cfg.scenario]
    kind = cfg.workload or sc.workload
    endpoints = require_loopback([ctl.endpoint(n) for n in ctl.names()])
    plan = sc.plan(cfg)
    wl = Workload(WorkloadConfig(kind=kind, keys=cfg.keys, concurrency=cfg.concurrency,
                                 duration=cfg.duration, max_ops=1_000_000,
                                 timeout=plan.request_timeout,
                                 serializable_reads=cfg.serializable_reads), seed=cfg.seed)
    observer = LeaderObserver(endpoints)
    errors: list[str] = []
    t0 = time.monotonic_ns()
    async with Client(endpoints, timeout=2.0, connect_timeout=0.5) as fc:
        ctx = FaultContext(ctl, fc, random.Random(cfg.seed))
        nemesis = Nemesis(ctx, plan.faults, plan.quiet, plan.hold, limit=plan.limit)
        stop, obs_stop = asyncio.Event(), asyncio.Event()
        watches = WatchSet(endpoints, wl.prefix)
        try:
            await watches.start()
        except ClusterError as e:
            errors.append(f"watchers not started: {e}")
        obs_task = asyncio.create_task(observer.run(obs_stop))
        nem_task = asyncio.create_task(nemesis.run(stop))
        try:
            await wl.run(endpoints)
        finally:
            stop.set()
            await nem_task
        restarted = await restore(ctx)
        if restarted:
            errors.append(f"members down after healing, restarted: {restarted}")
        healed = True
        try:
            await asyncio.to_thread(ctl.wait_healthy, 30.0)
        except Exception as e:  # any failure to recover is reported, not raised
            healed = False
            errors.append(f"cluster did not recover: {type(e).__name__}: {e}")
        final = await wl.final_reads(endpoints)
        watch_result = await watches.finish() if watches.recorders else \
            CheckResult("watch", UNKNOWN, "watchers did not start")
        obs_stop.set()
        await obs_task
    ops = wl.history.ops()
    checks = check_workload(kind, ops, final)
    checks.append(watch_result)
    checks.append(await convergence(endpoints))
    checks.append(CheckResult("recovery", VALID, "healthy after healing") if healed else
                  CheckResult("recovery", INVALID, "no agreed leader 30 s after healing",
                              ({"type": "no-recovery", "errors": errors},)))
    nem_log = [e.to_json() for e in nemesis.log]
    checks += fault_checks(nem_log)
    return {
        "label": label, "mode_flags": list(mode_flags), "workload": {
            "kind": kind, "keys": wl.keys, "concurrency": cfg.concurrency},
        "verdict": combine(checks), "stats": op_stats(ops, t0=t0),
        "leader_changes": observer.summary(), "checks": [c.to_json() for c in checks],
        "nemesis": nem_log, "errors": errors,
        "history": [e.to_json() for e in wl.history.events],
    }


def _launch(launcher: Launcher, cfg: RunConfig, mode_flags: Sequence[str]) -> None:
    cf = launcher.create(cfg.members, flags=[*cfg.node_flags(), *mode_flags], auto_ports=True)
    for m in cf.members:
        launcher.start(m.name)
    launcher.wait_healthy(30.0)


async def run(cfg: RunConfig, *, control: Control | None = None) -> dict[str, Any]:
    """Run a scenario; with `control` (or a cluster file) attach to that cluster instead of
    starting fresh ones. Writes the report when `cfg.report_dir` is set; returns it."""
    sc = SCENARIOS[cfg.scenario]
    runs: list[dict[str, Any]] = []
    if control is None and cfg.cluster_file is not None:
        control = LauncherControl(Launcher(cfg.cluster_file.parent))
    if control is not None:
        ctl = control
        if not any(ctl.running(n) for n in ctl.names()):
            raise ScenarioError("no member of the cluster is running")
        await asyncio.to_thread(ctl.wait_healthy, 20.0)
        runs.append(await run_once(ctl, cfg, label="attached"))
    else:
        for mode in cfg.modes or sc.modes:
            root = (cfg.report_dir / mode / "cluster") if cfg.report_dir else \
                Path(tempfile.mkdtemp(prefix=f"chaos-{mode}-"))
            launcher = Launcher(root)
            try:
                await asyncio.to_thread(_launch, launcher, cfg, MODES[mode])
                runs.append(await run_once(LauncherControl(launcher), cfg, label=mode,
                                           mode_flags=MODES[mode]))
            finally:
                if launcher.path.exists():
                    await asyncio.to_thread(launcher.down)
                if cfg.report_dir is None:
                    shutil.rmtree(root, ignore_errors=True)
    verdicts = [r["verdict"] for r in runs]
    verdict = INVALID if INVALID in verdicts else (UNKNOWN if UNKNOWN in verdicts else VALID)
    report = {"scenario": cfg.scenario, "description": sc.description, "seed": cfg.seed,
              "duration": cfg.duration, "replay": cfg.replay(), "verdict": verdict,
              "runs": runs}
    if cfg.report_dir is not None:
        write_report(cfg.report_dir, report)
    return report


__all__ = ["MODES", "SCENARIOS", "RunConfig", "Scenario", "ScenarioError", "final_from_history",
           "run", "run_once"]
