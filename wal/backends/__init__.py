"""Storage backends, chosen by name.

Built in: ``file`` (etcd's WAL + snap files, the default), ``memory`` (tests, throwaway dev
nodes; nothing durable) and ``sqlite`` (stdlib sqlite3). Third parties register more under
the entry-point group ``raftnode.wal_backends``; a built-in name cannot be overridden, so a
stray plugin can never silently replace where the data lives.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from typing import Any

from wal.errors import UnknownBackendError
from wal.storage import Storage

ENTRY_POINT_GROUP = "raftnode.wal_backends"
DEFAULT_BACKEND = "file"
BUILTIN_BACKENDS: dict[str, str] = {
    "file": "wal.backends.file:FileStorage",
    "memory": "wal.backends.memory:MemoryStorage",
    "sqlite": "wal.backends.sqlite:SqliteStorage",
}


def available_backends() -> dict[str, str]:
    """Every known backend name -> ``module:attribute``, built-ins first."""
    found = dict(BUILTIN_BACKENDS)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def backend_class(name: str) -> type[Any]:
    """The class registered under ``name``; UnknownBackendError lists the known names."""
    known = available_backends()
    target = known.get(name)
    if target is None:
        raise UnknownBackendError(
            f"unknown storage backend {name!r}; known backends: {', '.join(sorted(known))}"
        )
    module_name, _, attr = target.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise UnknownBackendError(
            f"storage backend {name!r} is registered as {target!r} but cannot be loaded: {exc}"
        ) from exc
    if not isinstance(obj, type):
        raise UnknownBackendError(f"storage backend {name!r} ({target!r}) is not a class")
    return obj


def open_backend(
    name: str, dirpath: str | os.PathLike[str], *, unsafe_no_fsync: bool = False, **opts: Any
) -> Storage:
    """Construct backend ``name`` on ``dirpath`` (no I/O yet: call exists/bootstrap/load)."""
    storage = backend_class(name)(dirpath, unsafe_no_fsync=unsafe_no_fsync, **opts)
    if not isinstance(storage, Storage):
        raise UnknownBackendError(f"storage backend {name!r} does not implement wal.Storage")
    return storage


__all__ = [
    "BUILTIN_BACKENDS",
    "DEFAULT_BACKEND",
    "ENTRY_POINT_GROUP",
    "available_backends",
    "backend_class",
    "open_backend",
]
