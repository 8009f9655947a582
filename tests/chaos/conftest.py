"""Fixtures: a private real etcd 3-member cluster (tests/cluster's) adapted to chaos.Control."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.cluster.etcd_cluster import ETCD, EtcdCluster, Member


@dataclass(slots=True)
class EtcdControl:
    """`chaos.faults.Control` over the test etcd cluster: same signals, same restarts."""

    cluster: EtcdCluster

    def _m(self, name: str) -> Member:
        return next(m for m in self.cluster.members if m.name == name)

    def names(self) -> list[str]:
        return [m.name for m in self.cluster.members]

    def endpoint(self, name: str) -> str:
        return self._m(name).client_url

    def running(self, name: str) -> bool:
        return self._m(name).alive

    def kill(self, name: str) -> None:
        if self._m(name).alive:
            self.cluster.kill(self._m(name))

    def terminate(self, name: str) -> None:
        m = self._m(name)
        if m.alive:
            assert m.proc is not None
            m.proc.send_signal(signal.SIGTERM)
            m.proc.wait(15)
            m.proc = None

    def pause(self, name: str) -> None:
        self.cluster.pause(self._m(name))

    def resume(self, name: str) -> None:
        m = self._m(name)
        if m.alive:
            assert m.proc is not None
            m.proc.send_signal(signal.SIGCONT)

    def start(self, name: str) -> None:
        if not self._m(name).alive:
            self.cluster.start(self._m(name))

    def replace(self, name: str) -> None:
        raise NotImplementedError("the etcd test cluster does not replace members")

    def wait_healthy(self, timeout: float) -> None:
        self.cluster.wait_healthy(timeout)


def _have_etcd() -> bool:
    return os.access(ETCD, os.X_OK) or shutil.which(ETCD) is not None


def _etcd(base: Path) -> Iterator[EtcdControl]:
    if not _have_etcd():
        pytest.fail(f"{ETCD} not found: these tests need etcd (Debian package etcd-server)",
                    pytrace=False)
    c = EtcdCluster.create(base)
    try:
        c.start_all()
        yield EtcdControl(c)
    finally:
        for m in c.members:  # a paused member must be resumed to die cleanly
            if m.alive:
                assert m.proc is not None
                m.proc.send_signal(signal.SIGCONT)
        c.stop_all()


@pytest.fixture
def etcd_control(tmp_path: Path) -> Iterator[EtcdControl]:
    """A private 3-member etcd for tests that kill members, stopped afterwards."""
    yield from _etcd(tmp_path / "etcd")


@pytest.fixture(scope="module")
def etcd_shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdControl]:
    """One 3-member etcd for a module's tests that leave every member running."""
    yield from _etcd(tmp_path_factory.mktemp("etcd"))
