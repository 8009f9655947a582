"""Real raftnode processes on real sockets, started by the real launcher (cluster/)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.client import Client
from cluster.launcher import Launcher, pid_alive
from cluster.types import Status

# fast but not twitchy on a busy 2-core box: 50 ms heartbeats, 750 ms election timeout
FAST = ["--heartbeat-interval", "50", "--election-timeout", "750"]


class Harness:
    """A launcher plus the helpers every process test needs."""

    def __init__(self, root: Path) -> None:
        self.launcher = Launcher(root)

    async def up(self, n: int = 3, flags: list[str] | None = None, timeout: float = 30.0) -> None:
        cf = self.launcher.create(n, flags=FAST + (flags or []), auto_ports=True)
        for m in cf.members:
            self.launcher.start(m.name)
        await asyncio.to_thread(self.launcher.wait_healthy, timeout)

    # the launcher's verbs block (they may run their own client loop): run them off-loop
    async def kill(self, name: str) -> None:
        await asyncio.to_thread(self.launcher.kill, name)

    async def start(self, name: str) -> None:
        await asyncio.to_thread(self.launcher.start, name)

    async def signal(self, name: str, sig: int, wait: float = 10.0) -> bool:
        return await asyncio.to_thread(self.launcher.signal, name, sig, wait=wait)

    async def add(self, name: str, learner: bool = False) -> None:
        await asyncio.to_thread(self.launcher.add, name, learner=learner)

    async def replace(self, name: str) -> None:
        await asyncio.to_thread(self.launcher.replace_member, name)

    @property
    def endpoints(self) -> list[str]:
        return self.launcher.load().endpoints

    def endpoint(self, name: str) -> str:
        return self.launcher.load().member(name).client_url

    def names(self) -> list[str]:
        return [m.name for m in self.launcher.load().members]

    def running(self) -> list[str]:
        return [m.name for m in self.launcher.load().members if pid_alive(m.pid)]

    def client(self, names: list[str] | None = None, **kw: float) -> Client:
        cf = self.launcher.load()
        eps = [m.client_url for m in cf.members if names is None or m.name in names]
        return Client(eps, **kw)

    async def statuses(self) -> dict[str, Status]:
        out = {}
        async with self.client(timeout=1.0, connect_timeout=0.5) as c:
            for m in self.launcher.load().members:
                if not pid_alive(m.pid):
                    continue
                with contextlib.suppress(Exception):
                    out[m.name] = await c.status(m.client_url)
        return out

    async def leader(self, timeout: float = 15.0, exclude: str | None = None) -> str:
        """Name of the member all running members agree leads (waits for one)."""
        deadline = asyncio.get_running_loop().time() + timeout
        last: dict[str, Status] = {}
        while asyncio.get_running_loop().time() < deadline:
            last = await self.statuses()
            by_id = {s.header.member_id: n for n, s in last.items()}
            leaders = {s.leader for s in last.values()}
            if len(leaders) == 1 and (lid := leaders.pop()) in by_id and by_id[lid] != exclude \
                    and len(last) == len(self.running()):
                return by_id[lid]
            await asyncio.sleep(0.1)
        raise AssertionError(f"no agreed leader within {timeout}s: "
                             f"{ {n: (s.leader, s.raft_term) for n, s in last.items()} }")

    async def converged(self, timeout: float = 20.0) -> int:
        """Wait until every running member has the same applied state; return its revision."""
        deadline = asyncio.get_running_loop().time() + timeout
        seen: object = None
        async with self.client(timeout=2.0) as c:
            while asyncio.get_running_loop().time() < deadline:
                try:
                    hashes = {}
                    for name in self.running():
                        h = await c.hashkv(self.endpoint(name))
                        hashes[name] = (h.hash, h.header.revision)
                    seen = hashes
                    if len(set(hashes.values())) == 1:
                        return next(iter(hashes.values()))[1]
                except Exception as e:  # a member still starting
                    seen = e
                await asyncio.sleep(0.2)
        raise AssertionError(f"members did not converge: {seen}")

    def log(self, name: str) -> str:
        return Path(self.launcher.load().member(name).log_path).read_text(errors="replace")


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(tmp_path / "cluster")
    try:
        yield h
    finally:
        with contextlib.suppress(Exception):
            h.launcher.down(timeout=5.0)
