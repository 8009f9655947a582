"""Watching a cluster from outside during a run: leader changes and terms.

Two independent measures, because a member's counters restart with it:
- ``etcd_server_leader_changes_seen_total`` from each member's ``/metrics``, accumulated
  like Prometheus' ``increase()``: a drop means the member restarted, so the new value counts
  in full;
- the raft term and leader ID from each member's status: the term delta counts elections.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cluster import metrics
from cluster.client import Client
from cluster.errors import ClusterError
from cluster.types import Status


@dataclass(slots=True)
class _Counter:
    last: float | None = None
    increase: float = 0.0

    def observe(self, value: float) -> None:
        if self.last is not None:
            self.increase += value - self.last if value >= self.last else value
        self.last = value


@dataclass(slots=True)
class LeaderObserver:
    endpoints: Sequence[str]
    interval: float = 0.25
    changes: dict[str, _Counter] = field(default_factory=dict)
    first_term: int | None = None
    last_term: int = 0
    leaders: dict[int, int] = field(default_factory=dict)  # term -> leader ID seen

    async def sample(self, client: Client) -> None:
        """One round over every member, concurrently (a paused member only costs a timeout)."""
        await asyncio.gather(*(self._sample_one(client, ep) for ep in self.endpoints))

    async def _sample_one(self, client: Client, ep: str) -> None:
        with contextlib.suppress(ClusterError):
            self._status(await client.status(ep))
        try:
            samples = await client.metrics(ep)
        except ClusterError:
            return
        v = metrics.total(samples, metrics.LEADER_CHANGES)
        if v is not None:
            self.changes.setdefault(ep, _Counter()).observe(v)

    def _status(self, st: Status) -> None:
        if self.first_term is None or st.raft_term < self.first_term:
            self.first_term = st.raft_term
        self.last_term = max(self.last_term, st.raft_term)
        if st.leader:
            self.leaders.setdefault(st.raft_term, st.leader)

    async def run(self, stop: asyncio.Event) -> None:
        async with Client(list(self.endpoints), timeout=1.0, connect_timeout=0.3) as c:
            await self.sample(c)
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
                await self.sample(c)

    def summary(self) -> dict[str, Any]:
        per = {ep: int(c.increase) for ep, c in self.changes.items()}
        return {
            "per_member": per,
            "max_member": max(per.values()) if per else None,
            "term_delta": (self.last_term - self.first_term) if self.first_term is not None
            else None,
            "leaders_seen": {str(t): f"{lid:x}" for t, lid in sorted(self.leaders.items())},
        }
