"""A real 3-member etcd cluster as local processes: the oracle the client is tested against."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from cluster.launcher import wait_stopped
from tests.cluster.local_cluster import ClusterMember, LocalCluster

ETCD = os.environ.get("RAFTCTL_TEST_ETCD", "/usr/bin/etcd")


def free_ports(n: int) -> list[int]:
    """Reserve n distinct free ports (bound together so they cannot repeat)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass(slots=True)
class Member:
    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass(slots=True, eq=False)
class EtcdCluster(LocalCluster):
    kind: ClassVar[str] = "etcd"
    version: ClassVar[str] = "3.4.23"
    extended: ClassVar[bool] = False  # the 3.4 gateway maps HashKV onto /hash; no gofail
    min_lease_ttl: ClassVar[int] = 1  # 1.5 x 500 ms

    base: Path
    members: list[Member] = field(default_factory=list)  # type: ignore[assignment]
    token: str = "raftctl-test"

    @classmethod
    def create(cls, base: Path, n: int = 3) -> EtcdCluster:
        base.mkdir(parents=True, exist_ok=True)
        ports = free_ports(2 * n)
        c = cls(base)
        for i in range(n):
            name = f"m{i}"
            c.members.append(Member(
                name=name,
                client_url=f"http://127.0.0.1:{ports[2 * i]}",
                peer_url=f"http://127.0.0.1:{ports[2 * i + 1]}",
                data_dir=base / name,
                log_path=base / f"{name}.log",
            ))
        return c

    def initial_cluster(self) -> str:
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def start(self, m: ClusterMember, state: str = "new") -> None:
        assert isinstance(m, Member), m
        assert not m.alive, m.name
        args = [
            ETCD, "--name", m.name, "--data-dir", str(m.data_dir),
            "--listen-client-urls", m.client_url, "--advertise-client-urls", m.client_url,
            "--listen-peer-urls", m.peer_url, "--initial-advertise-peer-urls", m.peer_url,
            "--initial-cluster", self.initial_cluster(), "--initial-cluster-state", state,
            "--initial-cluster-token", self.token,
            "--heartbeat-interval", "50", "--election-timeout", "500",
            "--snapshot-count", "100000", "--logger", "zap", "--log-outputs", str(m.log_path),
        ]
        m.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)

    def add_member(self, name: str) -> Member:
        """A new member entry (not started): for member add, then start(state="existing")."""
        assert name not in {m.name for m in self.members}, f"{name} is already a member"
        cport, pport = free_ports(2)
        m = Member(name, f"http://127.0.0.1:{cport}", f"http://127.0.0.1:{pport}",
                   self.base / name, self.base / f"{name}.log")
        self.members.append(m)
        return m

    def start_all(self) -> None:
        for m in self.members:
            self.start(m)
        self.wait_healthy()

    def kill(self, m: ClusterMember) -> None:
        """SIGKILL: the member vanishes mid-request, as in a crash."""
        assert isinstance(m, Member), m
        assert m.proc is not None
        m.proc.send_signal(signal.SIGKILL)
        m.proc.wait()
        m.proc = None

    def pause(self, m: ClusterMember) -> None:
        """SIGSTOP: the kernel still accepts connections and requests, nobody answers."""
        assert isinstance(m, Member), m
        assert m.proc is not None
        m.proc.send_signal(signal.SIGSTOP)
        assert wait_stopped(m.proc.pid), f"{m.name} did not stop"

    def restart(self, m: ClusterMember) -> None:
        assert isinstance(m, Member), m
        self.start(m)
        self.wait_healthy()

    def stop_all(self) -> None:
        for m in self.members:
            if m.alive:
                assert m.proc is not None
                m.proc.kill()
                m.proc.wait()
                m.proc = None

    def wait_healthy(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = 0
            for m in self.members:
                if m.proc is not None and m.proc.poll() is not None:
                    raise RuntimeError(f"etcd {m.name} exited with {m.proc.returncode}: "
                                       f"{self.log_tail(m)}")
                if not m.alive:
                    continue
                with contextlib.suppress(OSError, ValueError), \
                        urllib.request.urlopen(m.client_url + "/health", timeout=1) as r:
                    if json.loads(r.read()).get("health") == "true":
                        ok += 1
            if ok == sum(m.alive for m in self.members):
                self.leader()
                return
            time.sleep(0.05)
        logs = "\n".join(self.log_tail(m) for m in self.members)
        raise TimeoutError(f"etcd cluster not healthy in {timeout}s\n{logs}")

