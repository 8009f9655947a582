"""The images and docker-compose.yml, end to end (opt-in: `pytest -m chaos`; builds take minutes).

Builds the images with deploy/image/build.sh (debootstrap, docker import, docker build), brings
the compose cluster up on free 127.0.0.1 ports under a project name of its own, talks to it
with raftctl, watches it in the compose Prometheus, power-cuts the leader's container with
SIGKILL, injects fsync latency through a failpoint, and tears everything down.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import DEPLOY, ROOT, Prometheus, free_port

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(1800)]


@dataclass(slots=True)
class Compose:
    project: str
    env: dict[str, str]
    ports: dict[str, int]

    def run(self, *args: str, timeout: float = 300, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        cmd = [*compose_command(), "-p", self.project, "-f", str(ROOT / "docker-compose.yml"),
               *args]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self.env,
                           cwd=ROOT)
        if check and r.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}:\n{r.stdout}{r.stderr}")
        return r

    def endpoint(self, name: str) -> str:
        return f"127.0.0.1:{self.ports[name]}"


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return ["docker", "compose"]


def raftctl(*args: str, endpoints: str, check: bool = True) -> str:
    exe = Path(sys.executable).parent / "raftctl"
    cmd = [str(exe) if exe.exists() else "raftctl", "--endpoints", endpoints, *args]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr}")
    return r.stdout


def healthy(endpoint: str) -> bool:
    """etcd's /health: {"health": "true"} once the member has a leader (the curl check)."""
    try:
        with urllib.request.urlopen(f"http://{endpoint}/health", timeout=2) as r:
            return bool(json.load(r).get("health") == "true")
    except (OSError, ValueError):
        return False


def wait_prometheus(url: str, timeout: float = 60.0) -> Prometheus:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)
    # not our child: a Prometheus view over HTTP only (the process lives in its container)
    return Prometheus(url, proc=None, log=Path(os.devnull))


@pytest.fixture(scope="module")
def compose() -> Iterator[Compose]:
    if shutil.which("docker") is None:
        pytest.skip("docker not installed")
    r = subprocess.run(["bash", str(DEPLOY / "image" / "build.sh")], capture_output=True,
                       text=True, timeout=1500)
    assert r.returncode == 0, r.stderr[-3000:]
    ports = {"n1": free_port(), "n2": free_port(), "n3": free_port(), "prometheus": free_port()}
    env = {**os.environ, "N1_PORT": str(ports["n1"]), "N2_PORT": str(ports["n2"]),
           "N3_PORT": str(ports["n3"]), "PROMETHEUS_PORT": str(ports["prometheus"]),
           "RAFTNODE_HEARTBEAT_INTERVAL": "100", "RAFTNODE_ELECTION_TIMEOUT": "1000"}
    c = Compose(f"raftnodetest{secrets.token_hex(3)}", env, ports)
    try:
        c.run("up", "-d")
        yield c
    finally:
        c.run("down", "-v", "--timeout", "5", check=False)


def test_compose_cluster_serves_scrapes_and_survives_a_power_cut(compose: Compose) -> None:
    services = compose.run("config", "--services").stdout.split()
    assert {"n1", "n2", "n3", "prometheus"} <= set(services)
    everyone = ",".join(compose.endpoint(n) for n in ("n1", "n2", "n3"))

    deadline = time.monotonic() + 60
    while not all(healthy(compose.endpoint(n)) for n in ("n1", "n2", "n3")):
        assert time.monotonic() < deadline, "compose members not healthy after 60 s"
        time.sleep(1)
    assert everyone.count(",") == 2
    status = raftctl("endpoint", "status", endpoints=everyone)
    assert len(status.strip().splitlines()) == 3, status
    raftctl("put", "greeting", "hello", endpoints=compose.endpoint("n1"))
    assert raftctl("get", "greeting", endpoints=compose.endpoint("n3")).split() == [
        "greeting", "hello"]

    prom = wait_prometheus(f"http://127.0.0.1:{compose.ports['prometheus']}")
    prom.wait_value("sum(etcd_server_has_leader)", lambda v: v == 3, timeout=60)
    prom.wait_value("sum(etcd_server_is_leader)", lambda v: v == 1, timeout=30)
    leader = prom.query("etcd_server_is_leader == 1")[0]["metric"]["member"]
    changes = prom.wait_value("max(etcd_server_leader_changes_seen_total)", lambda v: v >= 1)

    compose.run("kill", "-s", "SIGKILL", leader)  # power cut: nothing flushed, nothing said

    prom.wait_value("max(etcd_server_leader_changes_seen_total)", lambda v: v > changes,
                    timeout=60)
    prom.wait_value("sum(etcd_server_is_leader)", lambda v: v == 1, timeout=30)
    survivors = [n for n in ("n1", "n2", "n3") if n != leader]
    rest = ",".join(compose.endpoint(n) for n in survivors)
    raftctl("put", "after", "cut", endpoints=rest)

    # fsync latency through a failpoint, as docs/deploy.md shows; Prometheus sees it fire
    target = compose.endpoint(survivors[0])
    raftctl("failpoint", "set", "walBeforeFsync", "sleep(200)", endpoints=target)
    raftctl("put", "slow", "disk", endpoints=rest)
    prom.wait_value('sum(raftnode_failpoint_hits_total{name="walBeforeFsync"})',
                    lambda v: v > 0, timeout=30)
    raftctl("failpoint", "clear", "walBeforeFsync", endpoints=target)

    # the killed member comes back with its data and catches up
    compose.run("start", leader)
    prom.wait_value("sum(etcd_server_has_leader)", lambda v: v == 3, timeout=60)
    assert raftctl("get", "slow", endpoints=compose.endpoint(leader)).split() == ["slow", "disk"]
