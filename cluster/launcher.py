"""Start, stop and reshape a local cluster of raftnode processes.

The launcher only knows members by their command line and their HTTP API: it starts
``python -m raftnode`` with etcd's flags and records what it started in the cluster file,
which every later verb (and raftctl, chaos) reads. It never imports node internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from cluster import clusterfile, netns
from cluster.client import Client
from cluster.clusterfile import ClusterFile, MemberEntry
from cluster.errors import ClusterError
from cluster.netns import MemberNet, NetPlan

# etcd's Procfile convention: infra1 2379/2380, infra2 22379/22380, ...
DEFAULT_PORTS = [(2379, 2380), (22379, 22380), (32379, 32380), (42379, 42380), (52379, 52380),
                 (62379, 62380), (12379, 12380)]
HOST = "127.0.0.1"
NETNS_PORTS = (2379, 2380)  # every member has its own address in netns mode


class LaunchError(RuntimeError):
    """A launcher verb cannot be carried out; the message says why and what to do."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return True
        return False


def pick_ports(n: int, auto: bool) -> list[tuple[int, int]]:
    if n < 1 or n > len(DEFAULT_PORTS):
        raise LaunchError(f"-n must be between 1 and {len(DEFAULT_PORTS)}, got {n}")
    if auto:
        return [(free_port(), free_port()) for _ in range(n)]
    ports = DEFAULT_PORTS[:n]
    busy = [p for pair in ports for p in pair if port_in_use(p)]
    if busy:
        raise LaunchError(f"ports {busy} are in use (another cluster or etcd running?); "
                          "stop it, or use --ports auto")
    return ports


def pid_alive(pid: int | None) -> bool:
    """True when ``pid`` is a live raftnode process (not a recycled pid of something else)."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    for _ in range(20):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return True  # no /proc (not Linux): trust kill(0)
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            return False  # a zombie is dead; its parent has not reaped it yet
        if cmdline:
            return b"raftnode" in cmdline
        # empty: the process is inside execve (`ip netns exec` exec'ing raftnode reads so
        # for a moment, which made a just-started netns member look dead), or a kernel thread
        time.sleep(0.005)
    return False


def wait_stopped(pid: int, timeout: float = 5.0) -> bool:
    """Wait until every thread of ``pid`` is stopped (after SIGSTOP); False on timeout.

    ``kill(SIGSTOP)`` returns before the process stops: one thread takes the signal and
    stops the others when it next runs, and on a loaded machine that can take milliseconds
    in which the other threads go on reading sockets. A test (or a chaos fault) that sends
    a request to a "paused" member right after the kill could see it served (seen with
    etcd under load). True at once where there is no /proc to look at."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
            states = [Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[-1].split()[0]
                      for t in tids]
        except FileNotFoundError:  # no /proc, or the process is gone: nothing runs
            if not Path("/proc/self").exists() or not Path(f"/proc/{pid}").exists():
                return True
            states = ["R"]  # a thread exited while we listed: look again
        if all(st in "tTZX" for st in states):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.001)


T = TypeVar("T")
_THREAD_LOCK = threading.RLock()
_DEPTH = threading.local()


def exclusive(fn: Callable[..., T]) -> Callable[..., T]:
    """Run a verb that reads, changes and writes the cluster file as one step, against other
    threads (an RLock) and other processes (flock on ``<dir>/.lock``, taken by the outermost
    verb only, so verbs may call each other)."""

    @functools.wraps(fn)
    def wrapper(self: Launcher, *args: Any, **kwargs: Any) -> T:
        with _THREAD_LOCK:
            depth = getattr(_DEPTH, "n", 0)
            if depth:
                _DEPTH.n = depth + 1
                try:
                    return fn(self, *args, **kwargs)
                finally:
                    _DEPTH.n = depth
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(self.dir / ".lock", "a") as lockf:
                fcntl.flock(lockf, fcntl.LOCK_EX)
                _DEPTH.n = 1
                try:
                    return fn(self, *args, **kwargs)
                finally:
                    _DEPTH.n = 0
                    fcntl.flock(lockf, fcntl.LOCK_UN)

    return wrapper


@dataclass(slots=True)
class Launcher:
    """Operations on the cluster described by ``<dir>/cluster.json``."""

    dir: Path
    python: str = sys.executable

    @property
    def path(self) -> Path:
        return self.dir / "cluster.json"

    def load(self) -> ClusterFile:
        return clusterfile.load(self.path)

    def save(self, cf: ClusterFile) -> None:
        clusterfile.save(cf, self.path)

    # -- building the cluster -------------------------------------------------------------

    @exclusive
    def create(self, n: int, *, flags: Sequence[str] = (), auto_ports: bool = False,
               name_prefix: str = "n", use_netns: bool = False) -> ClusterFile:
        """Write a new cluster file for ``n`` members (refuses to overwrite a live one).

        With ``use_netns`` each member gets a network namespace and an address of its own
        (see `cluster.netns`); the cluster file is written before any namespace is made, so
        `down --force` finds what a crash in between left behind.
        """
        if use_netns:
            return self._create_netns(n, flags=flags, name_prefix=name_prefix)
        self._refuse_live()
        self.dir.mkdir(parents=True, exist_ok=True)
        members = []
        for i, (cport, pport) in enumerate(pick_ports(n, auto_ports), start=1):
            name = f"{name_prefix}{i}"
            members.append(MemberEntry(
                name=name, client_url=f"http://{HOST}:{cport}", peer_url=f"http://{HOST}:{pport}",
                data_dir=str(self.dir / f"{name}.data"), log_path=str(self.dir / f"{name}.log")))
        token = f"raftnode-{secrets.token_hex(4)}"
        cf = ClusterFile(name="raftnode", token=token, members=tuple(members),
                         extra={"flags": list(flags)})
        self.save(cf)
        return cf

    def _refuse_live(self) -> None:
        if self.path.exists():
            old = self.load()
            live = [m.name for m in old.members if pid_alive(m.pid)]
            if live:
                raise LaunchError(f"{self.path} describes running members {live}; "
                                  "run `raft-cluster down` first")
            self.wipe()

    def _create_netns(self, n: int, *, flags: Sequence[str], name_prefix: str) -> ClusterFile:
        if n < 1 or n > 250:
            raise LaunchError(f"-n must be between 1 and 250 in netns mode, got {n}")
        if reason := netns.unavailable_reason():
            raise LaunchError(f"--netns: {reason}")
        self._refuse_live()
        self.dir.mkdir(parents=True, exist_ok=True)
        token = f"raftnode-{secrets.token_hex(4)}"
        with netns.host_lock():
            plan = netns.allocate(token)
            members = [self._netns_entry(plan, f"{name_prefix}{i}", i)
                       for i in range(1, n + 1)]
            cf = ClusterFile(name="raftnode", token=token, members=tuple(members),
                             extra={"flags": list(flags), "netns": plan.to_json()})
            self.save(cf)
            try:
                netns.create_hub(plan)
                for m in members:
                    netns.create_member(plan, _member_net(m))
            except netns.NetnsError:
                netns.teardown(plan.tag, [plan.hub] + [_member_net(m).ns for m in members])
                raise
        return cf

    def _netns_entry(self, plan: NetPlan, name: str, slot: int, **extra: object) -> MemberEntry:
        ip = plan.ip(slot)
        net = MemberNet(ns=plan.ns(name), ip=ip, slot=slot)
        cport, pport = NETNS_PORTS
        return MemberEntry(name=name, client_url=f"http://{ip}:{cport}",
                           peer_url=f"http://{ip}:{pport}",
                           data_dir=str(self.dir / f"{name}.data"),
                           log_path=str(self.dir / f"{name}.log"),
                           extra={**extra, "netns": net.to_json()})

    @exclusive
    def wipe(self) -> None:
        """Remove data dirs, logs, namespaces and the cluster file of a stopped cluster."""
        if self.path.exists():
            cf = self.load()
            if plan := _plan(cf):
                netns.teardown(plan.tag, _known_namespaces(cf, plan))
            for m in cf.members:
                shutil.rmtree(m.data_dir, ignore_errors=True)
                if m.log_path:
                    Path(m.log_path).unlink(missing_ok=True)
            self.path.unlink()

    def command(self, cf: ClusterFile, m: MemberEntry, *, state: str = "new") -> list[str]:
        """The raftnode command line of member ``m``: etcd's flags, nothing else.

        ``--initial-cluster`` lists every member in the file, as etcd wants both for a new
        cluster and for a member joining an existing one; a restarted member ignores it.
        """
        cmd = [self.python, "-m", "raftnode",
               "--name", m.name, "--data-dir", m.data_dir,
               "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
               "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
               "--initial-cluster", cf.initial_cluster(),
               "--initial-cluster-state", state,
               "--initial-cluster-token", cf.token]
        cmd += list(cf.extra.get("flags", ()))
        cmd += list(m.extra.get("flags", ()))
        return cmd

    # -- process control ------------------------------------------------------------------

    @exclusive
    def start(self, name: str, *, state: str | None = None) -> MemberEntry:
        cf = self.load()
        m = cf.member(name)
        if pid_alive(m.pid):
            raise LaunchError(f"{name} is already running (pid {m.pid})")
        if state is None:
            state = str(m.extra.get("state", "new"))
        cmd = self.command(cf, m, state=state)
        if _plan(cf):
            self._ensure_net(cf, m)
            cmd = netns.in_ns(_member_net(m).ns, *cmd)
        log = open(m.log_path or os.devnull, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)  # Ctrl-C reaches us, not them
        finally:
            log.close()
        m = replace(m.with_pid(proc.pid), extra={**m.extra, "state": state})
        self.save(cf.with_member(m))
        return m

    @exclusive
    def signal(self, name: str, sig: signal.Signals, *, wait: float = 0.0) -> bool:
        """Send ``sig`` to a member; with ``wait``, wait that long for it to exit.

        Returns True when the member is (now) not running.
        """
        cf = self.load()
        m = cf.member(name)
        if not pid_alive(m.pid):
            self.save(cf.with_member(m.with_pid(None)))
            return True
        assert m.pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.kill(m.pid, sig)
            if sig == signal.SIGSTOP:  # return once it is stopped, not merely signalled
                wait_stopped(m.pid)
        deadline = time.monotonic() + wait
        while pid_alive(m.pid) and time.monotonic() < deadline:
            _reap(m.pid)
            time.sleep(0.05)
        _reap(m.pid)
        gone = not pid_alive(m.pid)
        if gone:
            self.save(self.load().with_member(m.with_pid(None)))
        return gone

    @exclusive
    def kill(self, name: str) -> None:
        """SIGKILL: the power cut. Nothing is flushed, nothing is said to the others."""
        if not self.signal(name, signal.SIGKILL, wait=5.0):
            raise LaunchError(f"{name} survived SIGKILL for 5 s")

    @exclusive
    def stop(self, name: str, *, timeout: float = 15.0) -> None:
        """SIGTERM (orderly: a leader hands leadership on first), then SIGKILL after timeout."""
        if not self.signal(name, signal.SIGTERM, wait=timeout):
            self.kill(name)

    @exclusive
    def restart(self, name: str) -> MemberEntry:
        self.stop(name)
        return self.start(name)

    @exclusive
    def down(self, *, timeout: float = 15.0) -> list[str]:
        """Stop every member (SIGTERM in parallel, SIGKILL stragglers). Returns names stopped.

        In netns mode the namespaces, veths and bridge go too, and the faults recorded in
        the cluster file are cleared (`start` builds a member's namespace afresh).
        """
        stopped = self._stop_all(timeout)
        cf = self.load()
        if plan := _plan(cf):
            netns.teardown(plan.tag, _known_namespaces(cf, plan))
            self.save(_without_faults(self.load()))
        return stopped

    @exclusive
    def down_force(self, *, tag: str | None = None) -> list[str]:
        """Clean up after a crashed launcher: kill and remove whatever the cluster left.

        Finds members by the cluster file's pids, namespaces by the cluster file and by the
        ``rn-<tag>-`` prefix (``tag`` for when the cluster file is lost). Returns what went.
        """
        gone: list[str] = []
        cf: ClusterFile | None = None
        if self.path.exists():
            try:
                cf = self.load()
            except clusterfile.ClusterFileError:
                if tag is None:
                    raise
        if cf is not None:
            for m in cf.members:
                if pid_alive(m.pid):
                    assert m.pid is not None
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(m.pid, signal.SIGKILL)
                    _reap(m.pid)
                    gone.append(m.name)
            plan = _plan(cf)
            if plan is not None:
                gone += netns.teardown(plan.tag, _known_namespaces(cf, plan))
                cf = _without_faults(cf)
            self.save(ClusterFile(cf.name, cf.token, tuple(m.with_pid(None) for m in cf.members),
                                  cf.extra))
        if tag is not None:
            gone += netns.teardown(tag)
        if cf is None and tag is None:
            raise LaunchError(f"{self.path}: no cluster file; give --tag TAG (the hex digits "
                              f"in rn-TAG-* of `ip netns list`) to remove namespaces by name")
        return gone

    def _stop_all(self, timeout: float) -> list[str]:
        """SIGTERM every running member in parallel, SIGKILL stragglers after ``timeout``."""
        cf = self.load()
        live = [m for m in cf.members if pid_alive(m.pid)]
        for m in live:
            assert m.pid is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(m.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while any(pid_alive(m.pid) for m in live) and time.monotonic() < deadline:
            for m in live:
                _reap(m.pid)
            time.sleep(0.05)
        for m in live:
            if pid_alive(m.pid):
                assert m.pid is not None
                with contextlib.suppress(ProcessLookupError):
                    os.kill(m.pid, signal.SIGKILL)
                _reap(m.pid)
        cf = self.load()
        for m in cf.members:
            cf = cf.with_member(m.with_pid(None))
        self.save(cf)
        return [m.name for m in live]

    # -- membership -----------------------------------------------------------------------

    async def _member_id(self, client: Client, name: str) -> int:
        m = self.load().member(name)
        for mem in (await client.member_list()).members:
            if mem.name == name or m.peer_url in mem.peer_urls:
                return mem.id
        raise LaunchError(f"{name} is not a member of the running cluster")

    @exclusive
    def add(self, name: str, *, learner: bool = False, auto_port: bool = True) -> MemberEntry:
        """etcd's runtime-reconfiguration workflow: member add, then start with state existing."""
        cf = self.load()
        if name in {m.name for m in cf.members}:
            raise LaunchError(f"{name} already exists in {self.path}")
        if plan := _plan(cf):
            slot = 1 + max((_member_net(m).slot for m in cf.members), default=0)
            entry = self._netns_entry(plan, name, slot, state="existing")
        else:
            cport, pport = (free_port(), free_port()) if auto_port else pick_ports(1, False)[0]
            entry = MemberEntry(name=name, client_url=f"http://{HOST}:{cport}",
                                peer_url=f"http://{HOST}:{pport}",
                                data_dir=str(self.dir / f"{name}.data"),
                                log_path=str(self.dir / f"{name}.log"),
                                extra={"state": "existing"})
        live = [m.client_url for m in cf.members if pid_alive(m.pid)]
        if not live:
            raise LaunchError("no running member to add through")

        async def go() -> None:
            async with Client(live) as c:
                await c.member_add([entry.peer_url], is_learner=learner)

        asyncio.run(go())
        self.save(cf.with_member(entry))
        return self.start(name, state="existing")

    @exclusive
    def remove(self, name: str) -> None:
        """member remove through a live member, then stop the process."""
        cf = self.load()
        cf.member(name)
        live = [m.client_url for m in cf.members if pid_alive(m.pid) and m.name != name]
        if not live:
            raise LaunchError("no other running member to remove through")

        async def go() -> None:
            async with Client(live) as c:
                await c.member_remove(await self._member_id(c, name))

        asyncio.run(go())
        self.stop(name)
        cf = self.load()
        if _plan(cf):
            netns.remove_ns(_member_net(cf.member(name)).ns)
        self.save(cf.without_member(name))

    @exclusive
    def replace_member(self, name: str) -> MemberEntry:
        """Remove, wipe the data dir, add back under the same name and URLs, start existing."""
        cf = self.load()
        old = cf.member(name)
        live = [m.client_url for m in cf.members if pid_alive(m.pid) and m.name != name]
        if not live:
            raise LaunchError("no other running member to replace through")

        async def remove_and_add() -> None:
            async with Client(live) as c:
                await c.member_remove(await self._member_id(c, name))
                await c.member_add([old.peer_url])

        self.stop(name)
        asyncio.run(remove_and_add())
        shutil.rmtree(old.data_dir, ignore_errors=True)
        fresh = replace(old, pid=None, extra={**old.extra, "state": "existing"})
        self.save(self.load().with_member(fresh))
        return self.start(name, state="existing")

    # -- network faults (netns mode) ----------------------------------------------------------

    @exclusive
    def partition(self, spec: str) -> tuple[frozenset[str], ...]:
        """Cut the cluster into sides (``"n1,n2 / n3"``), replacing any earlier partition."""
        cf = self.load()
        self._need_netns(cf, "partition")
        sides = netns.parse_groups(spec, [m.name for m in cf.members])
        cf = _with_net(cf, partition=[sorted(s) for s in sides])
        self.save(cf)
        self._apply_filters(cf)
        return sides

    @exclusive
    def heal(self) -> None:
        """Remove the partition (delay and loss stay: `delay NAME off`, `loss NAME off`)."""
        cf = self.load()
        self._need_netns(cf, "heal")
        cf = _with_net(cf, partition=[])
        self.save(cf)
        self._apply_filters(cf)

    @exclusive
    def delay(self, name: str, value: str) -> str:
        """Delay every packet ``name`` sends (``200ms``; ``off`` removes). Returns the mechanism."""
        cf = self.load()
        self._need_netns(cf, "delay")
        net = replace(_member_net(cf.member(name)), delay_ms=netns.parse_delay(value))
        cf = _with_member_net(cf, name, net)
        self.save(cf)
        if not netns.ns_exists(net.ns):
            return "recorded (member not running; applied when it starts)"
        return netns.set_delay(net)

    @exclusive
    def loss(self, name: str, value: str) -> None:
        """Drop a share of the packets ``name`` sends (``10%``; ``off`` removes)."""
        cf = self.load()
        self._need_netns(cf, "loss")
        net = replace(_member_net(cf.member(name)), loss_pct=netns.parse_loss(value))
        cf = _with_member_net(cf, name, net)
        self.save(cf)
        self._apply_filters(cf)

    def _need_netns(self, cf: ClusterFile, verb: str) -> NetPlan:
        plan = _plan(cf)
        if plan is None:
            raise LaunchError(f"{verb}: this cluster runs on loopback without network "
                              "namespaces; start it with `raft-cluster up --netns` (as root)")
        return plan

    def _apply_filters(self, cf: ClusterFile) -> None:
        """Write every member's packet filter from the partition and loss in ``cf``."""
        sides = tuple(frozenset(s) for s in cf.extra["netns"].get("partition") or ())
        nets = {m.name: _member_net(m) for m in cf.members}
        blocked = netns.blocked_peers(sides, {n: net.ip for n, net in nets.items()})
        for name, net in nets.items():
            if netns.ns_exists(net.ns):
                netns.apply_filter(net, blocked[name])

    def _ensure_net(self, cf: ClusterFile, m: MemberEntry) -> None:
        """Build ``m``'s namespace if missing (after `down`, a reboot) with its faults."""
        plan = _plan(cf)
        assert plan is not None
        net = _member_net(m)
        if netns.ns_exists(net.ns) and netns.link_exists("eth0", net.ns):
            return
        with netns.host_lock():
            netns.create_member(plan, net)
        self._apply_filters(cf)
        if net.delay_ms:
            netns.set_delay(net)

    # -- waiting ----------------------------------------------------------------------------

    def wait_healthy(self, timeout: float = 30.0) -> int:
        """Wait until every running member reports the same leader. Returns the leader ID."""
        cf = self.load()
        endpoints = [m.client_url for m in cf.members if pid_alive(m.pid)]
        deadline = time.monotonic() + timeout

        async def poll() -> int:
            async with Client(endpoints, timeout=1.0, connect_timeout=0.5) as c:
                last: object = None
                while time.monotonic() < deadline:
                    got = await c.statuses()
                    leaders = {s.leader for s in got if not isinstance(s, ClusterError)}
                    if len(got) == len(endpoints) and not any(
                            isinstance(s, ClusterError) for s in got) and len(leaders) == 1 \
                            and 0 not in leaders:
                        return leaders.pop()
                    last = got
                    await asyncio.sleep(0.1)
                raise LaunchError(f"cluster not healthy after {timeout:.0f}s: {last}")

        return asyncio.run(poll())


def _plan(cf: ClusterFile) -> NetPlan | None:
    """The cluster's network plan, or None for a loopback cluster."""
    rec = cf.extra.get("netns")
    return NetPlan.from_json(rec) if rec else None


def _member_net(m: MemberEntry) -> MemberNet:
    rec = m.extra.get("netns")
    if not rec:
        raise LaunchError(f"{m.name} has no netns record in the cluster file")
    return MemberNet.from_json(rec)


def _known_namespaces(cf: ClusterFile, plan: NetPlan) -> list[str]:
    return [plan.hub] + [str(m.extra["netns"]["ns"]) for m in cf.members
                         if m.extra.get("netns")]


def _with_net(cf: ClusterFile, **changes: object) -> ClusterFile:
    return replace(cf, extra={**cf.extra, "netns": {**cf.extra["netns"], **changes}})


def _with_member_net(cf: ClusterFile, name: str, net: MemberNet) -> ClusterFile:
    m = cf.member(name)
    return cf.with_member(replace(m, extra={**m.extra, "netns": net.to_json()}))


def _without_faults(cf: ClusterFile) -> ClusterFile:
    """The cluster file with no partition, delay or loss recorded (its network is gone)."""
    if _plan(cf) is None:
        return cf
    cf = _with_net(cf, partition=[])
    for m in cf.members:
        if m.extra.get("netns"):
            cf = _with_member_net(cf, m.name, replace(_member_net(m), delay_ms=0, loss_pct=0.0))
    return cf


def _reap(pid: int | None) -> None:
    """Collect the exit status of a child we started, so it does not linger as a zombie."""
    if pid:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
