"""What the cluster tests need of a local 3-member cluster, whichever server it runs.

`EtcdCluster` (the oracle) and `RaftnodeCluster` (the system under test) both implement
`LocalCluster`, so one test body exercises the client and raftctl against both; the few
places where the servers differ are attributes here, not branches scattered in tests.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from pathlib import Path
from typing import ClassVar, Protocol


class ClusterMember(Protocol):
    """One member as tests see it: identity is the object (``m is victim``)."""

    name: str
    client_url: str
    peer_url: str
    data_dir: Path
    log_path: Path

    @property
    def alive(self) -> bool: ...


class LocalCluster:
    """Leader discovery shared by both kinds; subclasses start and stop the processes."""

    __slots__ = ()

    #: test id and fixture parameter
    kind: ClassVar[str]
    #: what /v3/maintenance/status reports as "version"
    version: ClassVar[str]
    #: the server supports HashKV and /debug/failpoints over HTTP
    extended: ClassVar[bool]
    #: the smallest lease TTL the server grants (1.5 election timeouts, whole seconds)
    min_lease_ttl: ClassVar[int]

    members: list[ClusterMember]  # provided by the subclass's dataclass field

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def start(self, m: ClusterMember, state: str = "new") -> None:
        raise NotImplementedError

    def add_member(self, name: str) -> ClusterMember:
        raise NotImplementedError

    def kill(self, m: ClusterMember) -> None:
        raise NotImplementedError

    def pause(self, m: ClusterMember) -> None:
        raise NotImplementedError

    def restart(self, m: ClusterMember) -> None:
        raise NotImplementedError

    def stop_all(self) -> None:
        raise NotImplementedError

    def wait_healthy(self, timeout: float = 20) -> None:
        raise NotImplementedError

    def status(self, m: ClusterMember) -> dict[str, object]:
        req = urllib.request.Request(m.client_url + "/v3/maintenance/status", data=b"{}",
                                     method="POST")
        with urllib.request.urlopen(req, timeout=2) as r:
            return json.loads(r.read())  # type: ignore[no-any-return]

    def leader(self) -> ClusterMember:
        """The member every live member agrees is leader (waits for agreement)."""
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            ids: set[str] = set()
            by_id: dict[str, ClusterMember] = {}
            for m in self.members:
                if not m.alive:
                    continue
                with contextlib.suppress(OSError, ValueError):
                    st = self.status(m)
                    ids.add(str(st.get("leader", "0")))
                    by_id[str(st["header"]["member_id"])] = m  # type: ignore[index]
            if len(ids) == 1 and (lid := ids.pop()) in by_id:
                return by_id[lid]
            time.sleep(0.05)
        raise TimeoutError("no agreed leader")

    def follower(self) -> ClusterMember:
        lead = self.leader()
        return next(m for m in self.members if m.alive and m is not lead)

    @staticmethod
    def log_tail(m: ClusterMember) -> str:
        return m.log_path.read_text(errors="replace")[-2000:] if m.log_path.exists() \
            else "(no log)"
