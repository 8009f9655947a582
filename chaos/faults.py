"""Faults, injected only through `cluster/`: process signals via the launcher, failpoints
and member IDs via the client. And the nemesis: a seeded schedule of inject / heal.

A `Control` is the process-level handle of a local cluster (the launcher's cluster file in
production; a test may adapt any cluster of real processes to it). Faults are async and
call the blocking `Control` in a worker thread.

"Remove the disk" is honest only as far as a process can make it without privileges:
`DiskFailure` makes the member's storage answer EIO (write and fsync failpoints), which is
what a vanished device looks like to the process; the member must then exit (fsync failure
is fatal, as in etcd since fsyncgate), and it comes back as a new member with an empty data
dir (the old disk is gone). chmod-ing the data dir is not used: open files ignore it and
root ignores it entirely. Filling the filesystem needs a dedicated mount; not done here.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from cluster.client import Client
from cluster.errors import ClusterError
from cluster.launcher import Launcher, pid_alive
from cluster.types import Status

TARGETS = ("leader", "follower", "random", "all", "minority", "majority")


class FaultError(RuntimeError):
    """A fault could not be injected (no such target, member API missing, ...)."""


class Control(Protocol):
    """Process control over the members of a local cluster, by member name."""

    def names(self) -> list[str]: ...

    def endpoint(self, name: str) -> str: ...

    def running(self, name: str) -> bool: ...

    def kill(self, name: str) -> None:
        """SIGKILL and wait for the exit."""

    def terminate(self, name: str) -> None:
        """SIGTERM and wait for the exit (SIGKILL after a grace period)."""

    def pause(self, name: str) -> None: ...

    def resume(self, name: str) -> None: ...

    def start(self, name: str) -> None: ...

    def replace(self, name: str) -> None:
        """Remove the member, wipe its data dir, add it back empty, start it."""

    def wait_healthy(self, timeout: float) -> None: ...


@dataclass(slots=True)
class LauncherControl:
    """`Control` over a cluster started by `cluster.launcher.Launcher` (its cluster file).

    The launcher rewrites its cluster file on every verb (load, modify, save) and is not
    safe to call from several threads at once, so calls are serialized here; a "power
    cut" is then a burst of SIGKILLs a few milliseconds apart.
    """

    launcher: Launcher
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def names(self) -> list[str]:
        with self._lock:
            return [m.name for m in self.launcher.load().members]

    def endpoint(self, name: str) -> str:
        with self._lock:
            return self.launcher.load().member(name).client_url

    def running(self, name: str) -> bool:
        with self._lock:
            return pid_alive(self.launcher.load().member(name).pid)

    def kill(self, name: str) -> None:
        with self._lock:
            self.launcher.kill(name)

    def terminate(self, name: str) -> None:
        with self._lock:
            self.launcher.stop(name, timeout=10.0)

    def pause(self, name: str) -> None:
        with self._lock:
            self.launcher.signal(name, signal.SIGSTOP)

    def resume(self, name: str) -> None:
        with self._lock:
            self.launcher.signal(name, signal.SIGCONT)

    def start(self, name: str) -> None:
        with self._lock:
            if not pid_alive(self.launcher.load().member(name).pid):
                self.launcher.start(name)

    def replace(self, name: str) -> None:
        with self._lock:
            self.launcher.replace_member(name)

    def wait_healthy(self, timeout: float) -> None:
        with self._lock:
            self.launcher.wait_healthy(timeout)


@dataclass(slots=True)
class FaultContext:
    """What a fault needs: process control, a client to every member, seeded randomness."""

    control: Control
    client: Client
    rng: random.Random

    def endpoints(self) -> list[str]:
        return [self.control.endpoint(n) for n in self.control.names()]

    async def leader_name(self) -> str | None:
        with contextlib.suppress(ClusterError):
            lead = await self.client.leader()
            for n in self.control.names():
                if self.control.endpoint(n).rstrip("/") == lead.endpoint.rstrip("/"):
                    return n
        return None

    async def member_ids(self) -> dict[str, int]:
        """name -> raft member ID, from each member's own status (running members only)."""
        out: dict[str, int] = {}
        for n in self.control.names():
            with contextlib.suppress(ClusterError):
                st: Status = await self.client.status(self.control.endpoint(n))
                out[n] = st.header.member_id
        return out

    async def pick(self, target: str) -> list[str]:
        """Member names for a target spec (see TARGETS); `leader` falls back to random."""
        names = self.control.names()
        if target not in TARGETS and target not in names:
            raise FaultError(f"unknown target {target!r}: one of {TARGETS} or a member name")
        if target in names:
            return [target]
        if target == "all":
            return list(names)
        lead = await self.leader_name()
        if target == "leader" and lead is not None:
            return [lead]
        if target == "follower":
            others = [n for n in names if n != lead]
            return [self.rng.choice(others)] if others else []
        shuffled = self.rng.sample(names, len(names))
        if target == "minority":
            return sorted(shuffled[:(len(names) - 1) // 2] or shuffled[:1])
        if target == "majority":
            return sorted(shuffled[:len(names) // 2 + 1])
        return [shuffled[0]]


class Fault:
    """Base of every fault: `inject` returns what it did (for the report), `heal` undoes it."""

    name = "fault"

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        raise NotImplementedError

    async def heal(self, ctx: FaultContext) -> dict[str, Any]:
        return {}


async def _each(names: Sequence[str], fn: Any) -> None:
    await asyncio.gather(*(asyncio.to_thread(fn, n) for n in names))


@dataclass(slots=True)
class Kill(Fault):
    """SIGKILL (crash) or SIGTERM (orderly stop) of target members, restarted on heal."""

    target: str = "leader"
    sig: str = "KILL"  # KILL or TERM
    name: str = "kill"
    _victims: list[str] = field(default_factory=list, init=False, repr=False)

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        self._victims = await ctx.pick(self.target)
        fn = ctx.control.kill if self.sig == "KILL" else ctx.control.terminate
        await _each(self._victims, fn)
        return {"members": self._victims, "signal": f"SIG{self.sig}"}

    async def heal(self, ctx: FaultContext) -> dict[str, Any]:
        victims, self._victims = self._victims, []
        await _each(victims, ctx.control.start)
        return {"restarted": victims}


@dataclass(slots=True)
class PowerCut(Fault):
    """Every member SIGKILLed at once (unsynced page cache survives: see docs/chaos.md)."""

    name: str = "power-cut"
    _victims: list[str] = field(default_factory=list, init=False, repr=False)

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        self._victims = ctx.control.names()
        await _each(self._victims, ctx.control.kill)
        return {"members": self._victims}

    async def heal(self, ctx: FaultContext) -> dict[str, Any]:
        victims, self._victims = self._victims, []
        await _each(victims, ctx.control.start)
        return {"restarted": victims}


@dataclass(slots=True)
class Pause(Fault):
    """SIGSTOP: the process freezes with its sockets open (a GC pause, a stalled VM)."""

    target: str = "leader"
    name: str = "pause"
    _victims: list[str] = field(default_factory=list, init=False, repr=False)

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        self._victims = await ctx.pick(self.target)
        await _each(self._victims, ctx.control.pause)
        return {"members": self._victims}

    async def heal(self, ctx: FaultContext) -> dict[str, Any]:
        victims, self._victims = self._victims, []
        await _each(victims, ctx.control.resume)
        return {"resumed": victims}


@dataclass(slots=True)
class MemberReplace(Fault):
    """etcd's MemberReplace: remove, stop, wipe the data dir, add back, start as existing."""

    target: str = "follower"
    name: str = "member-replace"

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        victims = await ctx.pick(self.target)
        for v in victims:
            await asyncio.to_thread(ctx.control.replace, v)
        return {"members": victims}


@dataclass(slots=True)
class Failpoint(Fault):
    """Arm a gofail failpoint (e.g. walBeforeFsync=sleep(1500)) on target members."""

    fp: str = "walBeforeFsync"
    term: str = "sleep(1500)"
    target: str = "all"
    name: str = "failpoint"
    _armed: list[str] = field(default_factory=list, init=False, repr=False)

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        victims = await ctx.pick(self.target)
        errors = await _set_failpoint(ctx, victims, self.fp, self.term)
        self._armed = [v for v in victims if v not in errors]
        if not self._armed and errors:
            raise FaultError(f"{self.fp}={self.term} could not be set: {errors}")
        return {"members": self._armed, "failpoint": self.fp, "term": self.term,
                **({"errors": errors} if errors else {})}

    async def heal(self, ctx: FaultContext) -> dict[str, Any]:
        armed, self._armed = self._armed, []
        errors = await _clear_failpoint(ctx, armed, self.fp)
        return {"cleared": [a for a in armed if a not in errors],
                **({"errors": errors} if errors else {})}


async def _set_failpoint(ctx: FaultContext, names: Sequence[str], fp: str,
                         term: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    for n in names:
        try:
            await ctx.client.failpoint_set(ctx.control.endpoint(n), fp, term)
        except ClusterError as e:
            errors[n] = f"{type(e).__name__}: {e}"
    return errors


async def _clear_failpoint(ctx: FaultContext, names: Sequence[str], fp: str) -> dict[str, str]:
    errors: dict[str, str] = {}
    for n in names:
        try:
            await ctx.client.failpoint_clear(ctx.control.endpoint(n), fp)
        except ClusterError as e:
            errors[n] = f"{type(e).__name__}: {e}"
    return errors


def fsync_latency(ms: int, target: str = "all") -> Failpoint:
    """Every WAL fsync on the targets takes `ms` longer: the election-storm trigger."""
    return Failpoint(fp="walBeforeFsync", term=f"sleep({ms})", target=target,
                     name="fsync-latency")


def peer_delay(ms: int, target: str = "all") -> Failpoint:
    return Failpoint(fp="peerDelay", term=f"return({ms})", target=target, name="peer-delay")


@dataclass(slots=True)
class Partition(Fault):
    """Cut the peer network into two sides (peerBlackhole on every member, naming the
    members of the other side); clients still reach every member."""

    side: str = "leader"  # the isolated side: a TARGETS spec ("leader", "minority", ...)
    name: str = "partition"
    _armed: list[str] = field(default_factory=list, init=False, repr=False)

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        names = ctx.control.names()
        cut = set(await ctx.pick(self.side))
        if not cut or cut == set(names):
            raise FaultError(f"partition side {self.side!r} does not split {names}")
        ids = await ctx.member_ids()
        if len(ids) < len(names):
            raise FaultError(f"member IDs unknown for {sorted(set(names) - set(ids))}")
        errors: dict[str, str] = {}
        for n in names:
            other = [m for m in names if (m in cut) != (n in cut)]
            term = 'return("' + ",".join(f"{ids[m]:x}" for m in other) + '")'
            errors.update(await _set_failpoint(ctx, [n], "peerBlackhole", term))
        self._armed = [n for n in names if n not in errors]
        if errors:
            await self.heal(ctx)
            raise FaultError(f"partition could not be set: {errors}")
        return {"isolated": sorted(cut), "rest": sorted(set(names) - cut)}

    async def heal(self, ctx: FaultContext) -> dict[str, Any]:
        armed, self._armed = self._armed, []
        errors = await _clear_failpoint(ctx, armed, "peerBlackhole")
        return {"healed": armed, **({"errors": errors} if errors else {})}


@dataclass(slots=True)
class DiskFailure(Fault):
    """The member's disk answers EIO to every write and fsync; the member must exit. Heal:
    the disk is gone, so the member rejoins with an empty data dir (member replace)."""

    target: str = "follower"
    exit_wait: float = 10.0
    name: str = "disk-failure"
    _victims: list[str] = field(default_factory=list, init=False, repr=False)

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        self._victims = await ctx.pick(self.target)
        errors: dict[str, str] = {}
        for fp in ("walWrite", "walBeforeFsync"):
            errors.update(await _set_failpoint(ctx, self._victims, fp, 'return("EIO")'))
        if errors:
            raise FaultError(f"EIO failpoints could not be set: {errors}")
        deadline = time.monotonic() + self.exit_wait
        while time.monotonic() < deadline and any(ctx.control.running(v)
                                                  for v in self._victims):
            await asyncio.sleep(0.1)
        survivors = [v for v in self._victims if ctx.control.running(v)]
        # A member that keeps running after EIO on fsync is a durability bug (fsyncgate):
        # the report surfaces it; we then stop it ourselves to carry on.
        for v in survivors:
            await asyncio.to_thread(ctx.control.kill, v)
        return {"members": self._victims, "survived_eio": survivors}

    async def heal(self, ctx: FaultContext) -> dict[str, Any]:
        victims, self._victims = self._victims, []
        for v in victims:
            await asyncio.to_thread(ctx.control.replace, v)
        return {"replaced": victims}


# ---- the nemesis ------------------------------------------------------------------------

@dataclass(slots=True, frozen=True)
class NemesisEvent:
    time: float  # seconds since the nemesis started
    fault: str
    phase: str  # inject, heal, error
    detail: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"time": round(self.time, 3), "fault": self.fault, "phase": self.phase,
                "detail": self.detail}


@dataclass(slots=True)
class Nemesis:
    """Cycles: wait `quiet` s, inject a fault drawn from `faults`, hold it `hold` s, heal.

    Both intervals are drawn uniformly from their (lo, hi) with the seeded rng, so a run
    replays with the same seed (the cluster's timing still varies).
    """

    ctx: FaultContext
    faults: Sequence[Fault]
    quiet: tuple[float, float] = (1.0, 2.0)
    hold: tuple[float, float] = (1.0, 3.0)
    limit: int | None = None  # stop injecting after this many faults
    log: list[NemesisEvent] = field(default_factory=list)
    _t0: float = field(default_factory=time.monotonic, init=False, repr=False)
    _active: Fault | None = field(default=None, init=False, repr=False)

    def _record(self, fault: Fault, phase: str, detail: dict[str, Any]) -> None:
        self.log.append(NemesisEvent(time.monotonic() - self._t0, fault.name, phase, detail))

    async def run(self, stop: asyncio.Event) -> None:
        """Inject and heal until `stop` is set; always leaves the last fault healed."""
        self._t0 = time.monotonic()
        rng = self.ctx.rng
        injected = 0
        try:
            while not stop.is_set():
                if self.limit is not None and injected >= self.limit:
                    await stop.wait()
                    break
                if await _wait(stop, rng.uniform(*self.quiet)):
                    break
                fault = rng.choice(list(self.faults))
                try:
                    self._active = fault
                    injected += 1
                    self._record(fault, "inject", await fault.inject(self.ctx))
                except (FaultError, ClusterError, RuntimeError, OSError) as e:
                    # record it, and undo whatever part of the fault did happen
                    self._record(fault, "error", {"error": f"{type(e).__name__}: {e}"})
                    await self.heal()
                    continue
                await _wait(stop, rng.uniform(*self.hold))
                await self.heal()
        finally:
            await asyncio.shield(self.heal())

    async def heal(self) -> None:
        fault, self._active = self._active, None
        if fault is None:
            return
        try:
            self._record(fault, "heal", await fault.heal(self.ctx))
        except (FaultError, ClusterError, OSError, RuntimeError) as e:
            self._record(fault, "error", {"heal_error": f"{type(e).__name__}: {e}"})


async def _wait(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep up to `seconds`; True if stop was set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def restore(ctx: FaultContext) -> list[str]:
    """Bring every member back: resume, start whatever is down. Returns members started."""
    started = []
    for n in ctx.control.names():
        with contextlib.suppress(OSError, RuntimeError):
            await asyncio.to_thread(ctx.control.resume, n)
        if not ctx.control.running(n):
            await asyncio.to_thread(ctx.control.start, n)
            started.append(n)
    return started
