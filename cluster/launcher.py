"""Start, stop and reshape a local cluster of raftnode processes.

The launcher only knows members by their command line and their HTTP API: it starts
``python -m raftnode`` with etcd's flags and records what it started in the cluster file,
which every later verb (and raftctl, chaos) reads. It never imports node internals.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from cluster import clusterfile
from cluster.client import Client
from cluster.clusterfile import ClusterFile, MemberEntry
from cluster.errors import ClusterError

# etcd's Procfile convention: infra1 2379/2380, infra2 22379/22380, ...
DEFAULT_PORTS = [(2379, 2380), (22379, 22380), (32379, 32380), (42379, 42380), (52379, 52380),
                 (62379, 62380), (12379, 12380)]
HOST = "127.0.0.1"


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
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (not Linux): trust kill(0)
    if stat.rsplit(")", 1)[-1].split()[0] == "Z":
        return False  # a zombie is dead; its parent has not reaped it yet
    return b"raftnode" in cmdline


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

    def create(self, n: int, *, flags: Sequence[str] = (), auto_ports: bool = False,
               name_prefix: str = "n") -> ClusterFile:
        """Write a new cluster file for ``n`` members (refuses to overwrite a live one)."""
        if self.path.exists():
            old = self.load()
            live = [m.name for m in old.members if pid_alive(m.pid)]
            if live:
                raise LaunchError(f"{self.path} describes running members {live}; "
                                  "run `raft-cluster down` first")
            self.wipe()
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

    def wipe(self) -> None:
        """Remove data dirs, logs and the cluster file of a stopped cluster."""
        if self.path.exists():
            for m in self.load().members:
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

    def start(self, name: str, *, state: str | None = None) -> MemberEntry:
        cf = self.load()
        m = cf.member(name)
        if pid_alive(m.pid):
            raise LaunchError(f"{name} is already running (pid {m.pid})")
        if state is None:
            state = str(m.extra.get("state", "new"))
        cmd = self.command(cf, m, state=state)
        log = open(m.log_path or os.devnull, "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    start_new_session=True)  # Ctrl-C reaches us, not them
        finally:
            log.close()
        m = replace(m.with_pid(proc.pid), extra={**m.extra, "state": state})
        self.save(cf.with_member(m))
        return m

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
        deadline = time.monotonic() + wait
        while pid_alive(m.pid) and time.monotonic() < deadline:
            _reap(m.pid)
            time.sleep(0.05)
        _reap(m.pid)
        gone = not pid_alive(m.pid)
        if gone:
            self.save(self.load().with_member(m.with_pid(None)))
        return gone

    def kill(self, name: str) -> None:
        """SIGKILL: the power cut. Nothing is flushed, nothing is said to the others."""
        if not self.signal(name, signal.SIGKILL, wait=5.0):
            raise LaunchError(f"{name} survived SIGKILL for 5 s")

    def stop(self, name: str, *, timeout: float = 15.0) -> None:
        """SIGTERM (orderly: a leader hands leadership on first), then SIGKILL after timeout."""
        if not self.signal(name, signal.SIGTERM, wait=timeout):
            self.kill(name)

    def restart(self, name: str) -> MemberEntry:
        self.stop(name)
        return self.start(name)

    def down(self, *, timeout: float = 15.0) -> list[str]:
        """Stop every member (SIGTERM in parallel, SIGKILL stragglers). Returns names stopped."""
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

    def add(self, name: str, *, learner: bool = False, auto_port: bool = True) -> MemberEntry:
        """etcd's runtime-reconfiguration workflow: member add, then start with state existing."""
        cf = self.load()
        if name in {m.name for m in cf.members}:
            raise LaunchError(f"{name} already exists in {self.path}")
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
        self.save(self.load().without_member(name))

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


def _reap(pid: int | None) -> None:
    """Collect the exit status of a child we started, so it does not linger as a zombie."""
    if pid:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
