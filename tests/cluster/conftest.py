"""Fixtures: real 3-member clusters of etcd 3.4 (the client's oracle) and of raftnode, and a
way to run raftctl. Tests that take `cluster`, `fresh` or `client` run once per kind."""

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
from tests.cluster.local_cluster import LocalCluster
from tests.cluster.raftnode_cluster import RaftnodeCluster

ROOT = Path(__file__).resolve().parents[2]

KINDS: dict[str, type[EtcdCluster] | type[RaftnodeCluster]] = {
    "etcd": EtcdCluster, "raftnode": RaftnodeCluster}


@pytest.fixture(scope="session", params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    """Which server the cluster tests run against: etcd 3.4 (the oracle) or raftnode.

    Session-scoped, so pytest runs all tests of one kind before the other and never has
    both kinds' clusters up at once. Without etcd the [etcd] tests fail (never skip): the
    oracle is part of the suite.
    """
    if request.param == "etcd" and not (os.access(ETCD, os.X_OK) or shutil.which(ETCD)):
        pytest.fail(f"{ETCD} not found: the [etcd] tests need etcd 3.4 (Debian package "
                    "etcd-server); set RAFTCTL_TEST_ETCD to its path", pytrace=False)
    return str(request.param)


@pytest.fixture(scope="session")
def cluster(kind: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One 3-member cluster shared by tests that leave every member running."""
    c = KINDS[kind].create(tmp_path_factory.mktemp(kind))
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
        self.spare: dict[str, LocalCluster] = {}

    def _launch(self, kind: str) -> LocalCluster:
        self.n += 1
        c = KINDS[kind].create(self.base / f"{kind}{self.n}")
        for m in c.members:
            c.start(m)
        return c

    def take(self, kind: str, more: bool) -> LocalCluster:
        """A healthy cluster of ``kind``; with ``more`` (a later test wants one too) the next
        one starts now. Spares of another kind are stopped: that kind's tests are done."""
        for other in [k for k in self.spare if k != kind]:
            self.spare.pop(other).stop_all()
        c = self.spare.pop(kind, None) or self._launch(kind)
        c.wait_healthy()
        if more:
            self.spare[kind] = self._launch(kind)
        return c

    def close(self) -> None:
        for c in self.spare.values():
            c.stop_all()


@pytest.fixture(scope="session")
def _spares(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Spares]:
    s = _Spares(tmp_path_factory.mktemp("fresh"))
    try:
        yield s
    finally:
        s.close()


def _wants_fresh(item: pytest.Item, kind: str) -> bool:
    callspec = getattr(item, "callspec", None)
    return "fresh" in getattr(item, "fixturenames", ()) and callspec is not None \
        and callspec.params.get("kind") == kind


@pytest.fixture
def fresh(kind: str, _spares: _Spares, request: pytest.FixtureRequest) -> \
        Iterator[LocalCluster]:
    """A private 3-member cluster for tests that kill or reconfigure members."""
    items = request.session.items
    later = items[items.index(request.node) + 1:] if request.node in items else items
    c = _spares.take(kind, more=any(_wants_fresh(i, kind) for i in later))
    try:
        yield c
    finally:
        c.stop_all()


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[Client]:
    async with Client(cluster.endpoints, timeout=5.0) as c:
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
