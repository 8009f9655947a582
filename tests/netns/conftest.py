"""Network-namespace clusters: real namespaces, real packet filters, real raftnode processes.

Tests that need root and iproute2/nftables use the ``netns_harness`` fixture, which skips with
the reason (shown by ``-ra``) where netns mode cannot run; the pure rule tests always run.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster import netns
from tests.process.conftest import FAST, Harness


def skip_without_netns() -> None:
    if reason := netns.unavailable_reason():
        pytest.skip(f"netns mode unavailable here: {reason}")


class NetnsHarness(Harness):
    """The process harness, with members in network namespaces."""

    async def up(self, n: int = 3, flags: list[str] | None = None, timeout: float = 30.0) -> None:
        cf = await asyncio.to_thread(self.launcher.create, n, flags=FAST + (flags or []),
                                     use_netns=True)
        for m in cf.members:
            await asyncio.to_thread(self.launcher.start, m.name)
        await asyncio.to_thread(self.launcher.wait_healthy, timeout)

    def tag(self) -> str:
        return str(self.launcher.load().extra["netns"]["tag"])

    def ip(self, name: str) -> str:
        return str(self.launcher.load().member(name).extra["netns"]["ip"])

    def ns(self, name: str) -> str:
        return str(self.launcher.load().member(name).extra["netns"]["ns"])

    async def member_id(self, name: str) -> int:
        async with self.client([name], timeout=2.0) as c:
            return (await c.status(self.endpoint(name))).header.member_id


def connect_rtt(ip: str, port: int = 2379, samples: int = 5, timeout: float = 3.0) -> float:
    """Smallest TCP connect time from the root namespace (SYN out, SYN-ACK back)."""
    best = float("inf")
    for _ in range(samples):
        t0 = time.monotonic()
        with socket.create_connection((ip, port), timeout=timeout):
            best = min(best, time.monotonic() - t0)
    return best


@pytest.fixture
def netns_harness(tmp_path: Path) -> Iterator[NetnsHarness]:
    skip_without_netns()
    h = NetnsHarness(tmp_path / "cluster")
    try:
        yield h
    finally:
        with contextlib.suppress(Exception):
            h.launcher.down(timeout=5.0)
        with contextlib.suppress(Exception):
            h.launcher.down_force()
