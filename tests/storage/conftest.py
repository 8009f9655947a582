"""Fixtures for the storage tests: one factory per backend, each on its own tmp directory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from wal.backends import open_backend
from wal.backends.memory import MemoryStorage
from wal.storage import Storage

BACKENDS = ["file", "memory", "sqlite"]

# Small segments and no preallocation keep the file backend's tests fast and make rotation
# (and so compaction/purge) happen within a few KiB of entries.
BACKEND_OPTS: dict[str, dict[str, Any]] = {
    "file": {"segment_size": 16 * 1024, "preallocate": False},
    "memory": {},
    "sqlite": {},
}

Factory = Callable[..., Storage]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def make(backend: str, tmp_path: Path) -> Iterator[Factory]:
    """``make(**opts)`` opens a fresh Storage object on the test's data dir."""
    opened: list[Storage] = []

    def factory(**opts: Any) -> Storage:
        s = open_backend(backend, tmp_path / "data", **{**BACKEND_OPTS[backend], **opts})
        opened.append(s)
        return s

    yield factory
    for s in opened:
        s.close()
    if backend == "memory":
        MemoryStorage.discard(tmp_path / "data")
