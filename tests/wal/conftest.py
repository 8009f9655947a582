from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import wal.wal as walmod
from wal.hooks import HOOKS


@pytest.fixture
def wdir(tmp_path: Path) -> Path:
    return tmp_path / "member" / "wal"


@pytest.fixture
def small_segments(monkeypatch: pytest.MonkeyPatch) -> int:
    """Shrink the module-wide segment size so rotation is cheap to exercise."""
    monkeypatch.setattr(walmod, "SEGMENT_SIZE_BYTES", 2048)
    return 2048


@pytest.fixture(autouse=True)
def _clean_hooks() -> Iterator[None]:
    """The module-wide hooks must not leak between tests."""
    yield
    HOOKS.failpoint = None
    HOOKS.on_fsync = None
    HOOKS.on_write = None
