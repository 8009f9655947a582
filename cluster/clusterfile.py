"""The cluster file: what the launcher started, read by every other tool (raftctl, chaos).

JSON, written atomically (temp file, fsync, rename), so a reader never sees half a file:

    {"version": 1, "name": "raftnode", "token": "raftnode-1f3a",
     "members": [{"name": "n1", "client_url": "http://127.0.0.1:2379",
                  "peer_url": "http://127.0.0.1:2380", "pid": 4242,
                  "data_dir": ".cluster/n1", "log_path": ".cluster/n1.log"}]}
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
DEFAULT_PATH = Path(".cluster") / "cluster.json"


class ClusterFileError(ValueError):
    """The cluster file is missing, not JSON, or lacks a field; names the file and field."""


@dataclass(slots=True, frozen=True)
class MemberEntry:
    name: str
    client_url: str
    peer_url: str
    data_dir: str
    log_path: str = ""
    pid: int | None = None  # None while the member is not running
    extra: dict[str, Any] = field(default_factory=dict)  # launcher-specific (netns, flags)

    def with_pid(self, pid: int | None) -> MemberEntry:
        return replace(self, pid=pid)


@dataclass(slots=True, frozen=True)
class ClusterFile:
    name: str
    token: str
    members: tuple[MemberEntry, ...]
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [m.name for m in self.members]
        if len(set(names)) != len(names):
            raise ClusterFileError(f"duplicate member names in {names}")

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def member(self, name: str) -> MemberEntry:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"no member {name!r} (members: {', '.join(m.name for m in self.members)})")

    def initial_cluster(self) -> str:
        """The `--initial-cluster` flag value naming every member's peer URL."""
        return ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def with_member(self, entry: MemberEntry) -> ClusterFile:
        """Replace the member of that name, or append it."""
        ms = [entry if m.name == entry.name else m for m in self.members]
        if entry.name not in {m.name for m in self.members}:
            ms.append(entry)
        return replace(self, members=tuple(ms))

    def without_member(self, name: str) -> ClusterFile:
        self.member(name)
        return replace(self, members=tuple(m for m in self.members if m.name != name))

    def to_json(self) -> dict[str, Any]:
        return {"version": FORMAT_VERSION, "name": self.name, "token": self.token,
                "members": [asdict(m) for m in self.members], "extra": self.extra}

    @classmethod
    def from_json(cls, d: Any, *, source: str = "<cluster file>") -> ClusterFile:
        def need(obj: Any, key: str, typ: type | tuple[type, ...], where: str) -> Any:
            if not isinstance(obj, dict) or key not in obj:
                raise ClusterFileError(f"{source}: {where} lacks {key!r}")
            if not isinstance(obj[key], typ):
                raise ClusterFileError(f"{source}: {where}.{key} has type "
                                       f"{type(obj[key]).__name__}")
            return obj[key]

        ver = need(d, "version", int, "top level")
        if ver != FORMAT_VERSION:
            raise ClusterFileError(f"{source}: format version {ver}, expected {FORMAT_VERSION}")
        members = []
        for i, m in enumerate(need(d, "members", list, "top level")):
            where = f"members[{i}]"
            pid = m.get("pid") if isinstance(m, dict) else None
            if pid is not None and (not isinstance(pid, int) or isinstance(pid, bool)
                                    or pid <= 0):
                raise ClusterFileError(f"{source}: {where}.pid must be a positive int or null")
            members.append(MemberEntry(
                name=need(m, "name", str, where), client_url=need(m, "client_url", str, where),
                peer_url=need(m, "peer_url", str, where), data_dir=need(m, "data_dir", str, where),
                log_path=str(m.get("log_path", "")), pid=pid, extra=dict(m.get("extra") or {})))
        return cls(need(d, "name", str, "top level"), need(d, "token", str, "top level"),
                   tuple(members), dict(d.get("extra") or {}))


def load(path: str | os.PathLike[str] = DEFAULT_PATH) -> ClusterFile:
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ClusterFileError(f"{p}: no cluster file (start one with `raft-cluster up`)") \
            from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ClusterFileError(f"{p}: not JSON: {e}") from e
    return ClusterFile.from_json(data, source=str(p))


def save(cf: ClusterFile, path: str | os.PathLike[str] = DEFAULT_PATH) -> None:
    """Atomic replace: temp file in the same directory, fsync, rename, fsync the directory."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as f:
        json.dump(cf.to_json(), f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    fd = os.open(p.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
