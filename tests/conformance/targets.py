"""The two clusters the conformance suite runs against, behind one small synchronous face.

A :class:`Target` is a 3-member cluster of real processes: raftnode members started by
`cluster.launcher.Launcher`, or etcd 3.4 members started by `tests.cluster.etcd_cluster`.
Tests see member names, client URLs, the leader, SIGKILL and restart; nothing else differs,
so one test body asserts the same behaviour of both.
"""

from __future__ import annotations

import base64
import contextlib
import json
import math
import re
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import etcd3gw

from cluster.launcher import Launcher, pid_alive
from tests.cluster.etcd_cluster import EtcdCluster
from tests.process.conftest import FAST

HEARTBEAT_MS = 50
RAFTNODE_ELECTION_MS = 750  # tests.process.conftest.FAST
ETCD_ELECTION_MS = 500  # tests.cluster.etcd_cluster


def min_lease_ttl(election_ms: int, heartbeat_ms: int = HEARTBEAT_MS) -> int:
    """etcd's minimum lease TTL: (3 * electionTicks / 2) heartbeats, in whole seconds up."""
    ticks = election_ms // heartbeat_ms
    return max(1, math.ceil((3 * ticks // 2) * heartbeat_ms / 1000))


def post(url: str, path: str, body: dict[str, Any], timeout: float = 3.0) -> dict[str, Any]:
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=timeout) as r:
        out: dict[str, Any] = json.loads(r.read())
        return out


def b64(s: str | bytes) -> str:
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


@dataclass
class Target:
    """One running cluster; ``kind`` is "raftnode" or "etcd"."""

    kind: str
    names: list[str]
    election_ms: int
    _endpoint: Callable[[str], str]
    _alive: Callable[[str], bool]
    _kill: Callable[[str], None]
    _start: Callable[[str], None]
    _stop_all: Callable[[], None]

    @property
    def min_ttl(self) -> int:
        return min_lease_ttl(self.election_ms)

    def endpoint(self, name: str) -> str:
        return self._endpoint(name)

    @property
    def endpoints(self) -> list[str]:
        return [self._endpoint(n) for n in self.names]

    def live(self) -> list[str]:
        return [n for n in self.names if self._alive(n)]

    def client(self, name: str, timeout: float = 10.0) -> Any:
        """An unmodified etcd3gw client of one member."""
        u = urlsplit(self.endpoint(name))
        assert u.hostname is not None and u.port is not None
        return etcd3gw.client(host=u.hostname, port=u.port, timeout=timeout)

    def kill(self, name: str) -> None:
        """SIGKILL, as a power cut."""
        self._kill(name)

    def restart(self, name: str, timeout: float = 30.0) -> None:
        self._start(name)
        self.wait_healthy(timeout)

    def heal(self) -> None:
        """Restart whatever a test killed, so the next test finds three healthy members."""
        dead = [n for n in self.names if not self._alive(n)]
        for n in dead:
            self._start(n)
        self.wait_healthy()

    def stop_all(self) -> None:
        self._stop_all()

    def status(self, name: str) -> dict[str, Any]:
        return post(self.endpoint(name), "/v3/maintenance/status", {}, timeout=1.0)

    def leader(self, timeout: float = 15.0) -> str:
        """The member every live member agrees leads (waits for agreement)."""
        deadline = time.monotonic() + timeout
        seen: dict[str, str] = {}
        while time.monotonic() < deadline:
            by_id: dict[str, str] = {}
            seen = {}
            for n in self.live():
                with contextlib.suppress(OSError, ValueError, KeyError):
                    st = self.status(n)
                    seen[n] = str(st.get("leader", "0"))
                    by_id[str(st["header"]["member_id"])] = n
            leaders = set(seen.values())
            if len(seen) == len(self.live()) and len(leaders) == 1 \
                    and (lid := leaders.pop()) in by_id:
                return by_id[lid]
            time.sleep(0.05)
        raise AssertionError(f"{self.kind}: no agreed leader in {timeout}s: {seen}")

    def follower(self) -> str:
        lead = self.leader()
        return next(n for n in self.live() if n != lead)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            ok = 0
            for n in self.live():
                with contextlib.suppress(OSError, ValueError), \
                        urllib.request.urlopen(self.endpoint(n) + "/health", timeout=1) as r:
                    ok += json.loads(r.read()).get("health") == "true"
            if ok == len(self.names) == len(self.live()):
                self.leader(timeout=max(1.0, deadline - time.monotonic()))
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.kind}: cluster not healthy in {timeout}s")

    def revision(self, name: str | None = None) -> int:
        """The current revision, by a linearizable read through ``name`` (or the first)."""
        body = post(self.endpoint(name or self.live()[0]), "/v3/kv/range",
                    {"key": b64("\0"), "count_only": True})
        return int(body["header"]["revision"])

    def hashkv(self, name: str, revision: int = 0) -> tuple[int, int] | None:
        """(hash, compact_revision) of the member's MVCC state up to ``revision``; None on
        etcd 3.4, whose gateway lacks the route (it mapped HashKV onto /hash; fixed in 3.5)."""
        if self.kind == "etcd":
            return None
        body = post(self.endpoint(name), "/v3/maintenance/hashkv", {"revision": revision})
        return int(body.get("hash", 0)), int(body.get("compact_revision", 0))

    def state(self, name: str, prefix: bytes, revision: int = 0) -> list[dict[str, Any]]:
        """The keys under ``prefix`` as member ``name`` alone has them (serializable read)
        at ``revision``: every field, to compare members with each other."""
        end = prefix[:-1] + bytes([prefix[-1] + 1])
        body = post(self.endpoint(name), "/v3/kv/range",
                    {"key": b64(prefix), "range_end": b64(end), "revision": revision,
                     "serializable": True})
        kvs: list[dict[str, Any]] = body.get("kvs", [])
        return kvs

    def wait_applied(self, revision: int, timeout: float = 15.0) -> None:
        """Until every live member has applied ``revision`` (serializable reads)."""
        deadline = time.monotonic() + timeout
        behind: dict[str, int] = {}
        while time.monotonic() < deadline:
            behind = {}
            for n in self.live():
                with contextlib.suppress(OSError, ValueError):
                    body = post(self.endpoint(n), "/v3/kv/range",
                                {"key": b64("\0"), "count_only": True, "serializable": True})
                    rev = int(body["header"]["revision"])
                    if rev < revision:
                        behind[n] = rev
                    continue
                behind[n] = -1
            if not behind:
                return
            time.sleep(0.05)
        raise AssertionError(f"{self.kind}: members behind revision {revision}: {behind}")


def _ignore(_: object) -> None:
    return None


def compacted_to(log: Path) -> int:
    """The highest raft index a raftnode member compacted its log to, from its log lines."""
    found = [int(m) for m in re.findall(rb"log compacted to (\d+)", log.read_bytes())]
    return max(found, default=0)


def raftnode_target(root: Path, flags: list[str] | None = None) -> Target:
    launcher = Launcher(root)
    cf = launcher.create(3, flags=FAST + (flags or []), auto_ports=True)
    try:
        for m in cf.members:
            launcher.start(m.name)
        launcher.wait_healthy(60)
    except BaseException:
        launcher.down(timeout=5.0)  # leave no member behind
        raise
    names = [m.name for m in cf.members]
    t = Target(
        kind="raftnode", names=names, election_ms=RAFTNODE_ELECTION_MS,
        _endpoint=lambda n: launcher.load().member(n).client_url,
        _alive=lambda n: pid_alive(launcher.load().member(n).pid),
        _kill=launcher.kill,
        _start=lambda n: _ignore(launcher.start(n)),
        _stop_all=lambda: _ignore(launcher.down(timeout=5.0)),
    )
    t.wait_healthy(60)
    return t


def etcd_target(root: Path) -> Target:
    ec = EtcdCluster.create(root)
    by_name = {m.name: m for m in ec.members}
    try:
        ec.start_all()
    except BaseException:
        ec.stop_all()
        raise
    t = Target(
        kind="etcd", names=list(by_name), election_ms=ETCD_ELECTION_MS,
        _endpoint=lambda n: by_name[n].client_url,
        _alive=lambda n: by_name[n].alive,
        _kill=lambda n: ec.kill(by_name[n]),
        _start=lambda n: ec.start(by_name[n]),
        _stop_all=ec.stop_all,
    )
    t.wait_healthy(60)
    return t
