"""Fixtures: real etcd 3.4 clusters (the client's oracle) and a way to run raftctl."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cluster.client import Client
from tests.cluster.etcd_cluster import ETCD, EtcdCluster

ROOT = Path(__file__).resolve().parents[2]

if not (os.access(ETCD, os.X_OK) or shutil.which(ETCD)):
    pytest.fail(f"{ETCD} not found: these tests need etcd (Debian package etcd-server); "
                "set RAFTCTL_TEST_ETCD to its path", pytrace=False)


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    """One 3-member cluster shared by tests that leave every member running."""
    c = EtcdCluster.create(tmp_path_factory.mktemp("etcd"))
    try:
        c.start_all()
        yield c
    finally:
        c.stop_all()


class _Spares:
    """Fresh clusters, each started while the previous test runs (elections take ~2 s)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.n = 0
        self.spare: EtcdCluster | None = None

    def _launch(self) -> EtcdCluster:
        self.n += 1
        c = EtcdCluster.create(self.base / f"c{self.n}")
        for m in c.members:
            c.start(m)
        return c

    def take(self) -> EtcdCluster:
        c = self.spare or self._launch()
        self.spare = None
        c.wait_healthy()
        self.spare = self._launch()
        return c

    def close(self) -> None:
        if self.spare is not None:
            self.spare.stop_all()


@pytest.fixture(scope="session")
def _spares(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Spares]:
    s = _Spares(tmp_path_factory.mktemp("etcd-fresh"))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def etcd_fresh(_spares: _Spares) -> Iterator[EtcdCluster]:
    """A private 3-member cluster for tests that kill or reconfigure members."""
    c = _spares.take()
    try:
        yield c
    finally:
        c.stop_all()


@pytest.fixture
async def client(etcd: EtcdCluster) -> AsyncIterator[Client]:
    async with Client(etcd.endpoints, timeout=5.0) as c:
        yield c


def _raftctl_cmd() -> list[str]:
    exe = ROOT / ".venv" / "bin" / "raftctl"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "cluster.raftctl"]


def run_raftctl(*args: str, endpoints: list[str] | None = None, stdin: str = "",
                env: dict[str, str] | None = None, timeout: float = 20) -> \
        subprocess.CompletedProcess[str]:
    argv = _raftctl_cmd()
    if endpoints is not None:
        argv.append("--endpoints=" + ",".join(endpoints))
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("RAFTCTL_ENDPOINTS", "ETCDCTL_ENDPOINTS")}
    full_env.update(env or {})
    return subprocess.run([*argv, *args], input=stdin, capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=full_env, check=False)
