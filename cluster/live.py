"""The live status view of a local cluster: one row per member, refreshed each second.

It is built from what any operator could see: each member's maintenance/status and its
/metrics, fetched through the client library. Elections per member are kept as a short
history so a storm shows up as a burst in the sparkline.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

from rich.console import Group
from rich.table import Table
from rich.text import Text

from cluster import metrics
from cluster.client import Client
from cluster.clusterfile import ClusterFile
from cluster.errors import ClusterError
from cluster.launcher import pid_alive
from cluster.types import Status

SPARK = " ▁▂▃▄▅▆▇█"
HISTORY = 60  # samples (seconds) of election history per member


def sparkline(values: list[float]) -> str:
    top = max(values, default=0.0)
    if top <= 0:
        return SPARK[1] * len(values)
    return "".join(SPARK[min(len(SPARK) - 1, 1 + round(v / top * (len(SPARK) - 2)))]
                   if v > 0 else SPARK[1] for v in values)


@dataclass(slots=True)
class MemberView:
    name: str
    up: bool = False
    status: Status | None = None
    error: str = ""
    leader_changes: float | None = None
    elections: float | None = None
    fsync_p99: float | None = None
    election_history: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))


@dataclass(slots=True)
class LiveView:
    """Polls members and renders a rich table; pure state plus one async refresh."""

    members: dict[str, MemberView] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    async def refresh(self, cf: ClusterFile) -> None:
        names = {m.name for m in cf.members}
        for gone in set(self.members) - names:
            del self.members[gone]
        async with Client([m.client_url for m in cf.members], timeout=0.8,
                          connect_timeout=0.3) as c:
            await asyncio.gather(*(self._one(c, m.name, m.client_url, pid_alive(m.pid))
                                   for m in cf.members))

    async def _one(self, c: Client, name: str, url: str, up: bool) -> None:
        v = self.members.setdefault(name, MemberView(name))
        v.up = up
        before = v.elections
        try:
            v.status = await c.status(url)
            v.error = ""
            samples = await c.metrics(url)
            v.leader_changes = metrics.total(samples, metrics.LEADER_CHANGES)
            v.elections = metrics.total(samples, metrics.ELECTIONS)
            v.fsync_p99 = metrics.quantile(samples, metrics.FSYNC, 0.99)
        except ClusterError as e:
            v.status = None
            v.error = type(e).__name__
        new = 0.0 if before is None or v.elections is None else max(0.0, v.elections - before)
        v.election_history.append(new)

    def render(self, cf: ClusterFile) -> Group:
        t = Table(title=f"raftnode cluster {cf.name} ({cf.token})", expand=False)
        for col in ("member", "process", "role", "id", "term", "index", "applied",
                    "leader changes", "fsync p99", f"elections (last {HISTORY}s)"):
            t.add_column(col, justify="right" if col in {"term", "index", "applied",
                                                         "leader changes", "fsync p99"} else "left")
        leaders = set()
        for m in cf.members:
            v = self.members.get(m.name, MemberView(m.name))
            s = v.status
            proc = Text(f"up {m.pid}", style="green") if v.up else Text("down", style="red")
            if s is None:
                role = Text(v.error or "-", style="red" if v.up else "dim")
                cells = ["-"] * 5
            else:
                if s.is_learner:
                    role = Text("learner", style="cyan")
                elif s.is_leader:
                    role = Text("LEADER", style="bold yellow")
                    leaders.add(m.name)
                elif s.leader == 0:
                    role = Text("no leader", style="bold red")
                else:
                    role = Text("follower")
                cells = [f"{s.header.member_id:x}", str(s.raft_term), str(s.raft_index),
                         str(s.raft_applied_index),
                         "-" if v.leader_changes is None else f"{v.leader_changes:.0f}"]
            p99 = "-" if v.fsync_p99 is None else f"{v.fsync_p99 * 1000:.0f} ms"
            t.add_row(m.name, proc, role, *cells, p99, sparkline(list(v.election_history)))
        up = sum(1 for v in self.members.values() if v.up)
        summary = Text(f"{up}/{len(cf.members)} up, leader: {', '.join(leaders) or 'none'}   "
                       f"(Ctrl-C stops the cluster; `raft-cluster --dir ... kill NAME` "
                       f"in another terminal)", style="dim")
        return Group(t, summary)
