"""A real 3-member raftnode cluster, the same shape as `EtcdCluster`, run by the launcher.

Processes, ports, data dirs and the cluster file are all `cluster.launcher.Launcher`'s; this
class only adapts its verbs to the interface the cluster tests share with the etcd oracle.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, TypeVar

from cluster.clusterfile import MemberEntry
from cluster.launcher import HOST, Launcher, free_port, pid_alive
from tests.cluster.local_cluster import ClusterMember, LocalCluster

T = TypeVar("T")

# As fast as the etcd oracle (50 ms heartbeats, 500 ms elections: 1 s minimum lease TTL),
# with gofail's HTTP endpoint so the failpoint verbs meet a real member.
FLAGS = ["--heartbeat-interval", "50", "--election-timeout", "500", "--enable-failpoints"]


@dataclass(slots=True, eq=False)
class RaftnodeMember:
    """A member of the cluster file; liveness is the launcher's (the recorded pid)."""

    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    log_path: Path
    launcher: Launcher = field(repr=False)

    @property
    def alive(self) -> bool:
        return pid_alive(self.launcher.load().member(self.name).pid)

    @classmethod
    def of(cls, e: MemberEntry, launcher: Launcher) -> RaftnodeMember:
        return cls(e.name, e.client_url, e.peer_url, Path(e.data_dir), Path(e.log_path),
                   launcher)


def _off_loop(fn: Callable[[], T]) -> T:
    """Run a launcher verb that calls asyncio.run() from code that may be inside a loop
    (the async tests call the cluster's blocking methods directly, as with etcd)."""
    out: list[T] = []
    err: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as e:  # re-raised in the caller's thread
            err.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    if err:
        raise err[0]
    return out[0]


@dataclass(slots=True, eq=False)
class RaftnodeCluster(LocalCluster):
    kind: ClassVar[str] = "raftnode"
    version: ClassVar[str] = "3.5.0"  # raftnode answers as etcd 3.5 (raftnode/api/service.py)
    extended: ClassVar[bool] = True
    min_lease_ttl: ClassVar[int] = 1

    launcher: Launcher
    members: list[RaftnodeMember] = field(default_factory=list)  # type: ignore[assignment]
    # started and not since killed or stopped by us: if one of these is not running, it
    # crashed, and wait_healthy says so with its log instead of waiting for nothing
    expected: set[str] = field(default_factory=set)

    @classmethod
    def create(cls, base: Path, n: int = 3) -> RaftnodeCluster:
        launcher = Launcher(base)
        cf = launcher.create(n, flags=FLAGS, auto_ports=True, name_prefix="m")
        return cls(launcher, [RaftnodeMember.of(e, launcher) for e in cf.members])

    @property
    def base(self) -> Path:
        return self.launcher.dir

    def initial_cluster(self) -> str:
        return self.launcher.load().initial_cluster()

    def start(self, m: ClusterMember, state: str | None = None) -> None:
        """Start ``m``; ``state`` defaults to what the cluster file recorded for it (a
        member made by `add_member` joins as ``existing``, a restart reuses its data dir)."""
        assert not m.alive, m.name
        self.launcher.start(m.name, state=state)
        self.expected.add(m.name)

    def add_member(self, name: str) -> RaftnodeMember:
        """A new member entry (not started): for member add, then start(state="existing")."""
        assert name not in {m.name for m in self.members}, f"{name} is already a member"
        e = MemberEntry(name=name, client_url=f"http://{HOST}:{free_port()}",
                        peer_url=f"http://{HOST}:{free_port()}",
                        data_dir=str(self.base / f"{name}.data"),
                        log_path=str(self.base / f"{name}.log"), extra={"state": "existing"})
        self.launcher.save(self.launcher.load().with_member(e))
        m = RaftnodeMember.of(e, self.launcher)
        self.members.append(m)
        return m

    def start_all(self) -> None:
        for m in self.members:
            self.start(m)
        self.wait_healthy()

    def kill(self, m: ClusterMember) -> None:
        """SIGKILL: the member vanishes mid-request, as in a crash."""
        self.expected.discard(m.name)
        self.launcher.kill(m.name)

    def pause(self, m: ClusterMember) -> None:
        """SIGSTOP: the kernel still accepts connections and requests, nobody answers."""
        assert m.alive, m.name
        self.launcher.signal(m.name, signal.SIGSTOP)

    def restart(self, m: ClusterMember) -> None:
        self.start(m)
        self.wait_healthy()

    def stop_all(self) -> None:
        """SIGKILL every member at once (tests need no orderly shutdown, only speed)."""
        self.expected.clear()
        self.launcher.down_force()

    def wait_healthy(self, timeout: float = 20) -> None:
        crashed = [m for m in self.members if m.name in self.expected and not m.alive]
        if crashed:
            raise RuntimeError("raftnode members exited: " + "\n".join(
                f"{m.name}: {self.log_tail(m)}" for m in crashed))
        try:
            _off_loop(lambda: self.launcher.wait_healthy(timeout))
        except Exception as e:
            logs = "\n".join(f"{m.name}: {self.log_tail(m)}" for m in self.members)
            raise TimeoutError(f"raftnode cluster not healthy in {timeout}s: {e}\n{logs}") \
                from e
        self.leader()
