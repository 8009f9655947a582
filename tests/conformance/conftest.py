"""Session-wide clusters: one 3-member raftnode cluster and one 3-member etcd 3.4.

Both are started once and shared by every conformance test; a test that kills members
restarts them before the next one runs (``healed``), so each test starts from three
healthy members. Tests use keys of their own and revisions relative to a baseline they
read first, so they do not depend on each other's writes.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.cluster.etcd_cluster import ETCD
from tests.conformance.targets import Target, etcd_target, raftnode_target


@pytest.fixture(scope="session", params=["raftnode", "etcd"])
def target(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    if request.param == "etcd" and not os.access(ETCD, os.X_OK):
        pytest.skip(f"no etcd binary at {ETCD} (Debian's etcd-server provides it)")
    root = tmp_path_factory.mktemp(request.param)
    t = raftnode_target(root / "cluster") if request.param == "raftnode" \
        else etcd_target(root / "etcd")
    try:
        yield t
    finally:
        t.stop_all()


@pytest.fixture
def healed(target: Target) -> Iterator[Target]:
    """The target, with every member it killed restarted afterwards."""
    try:
        yield target
    finally:
        target.heal()
