"""Backend registry: built-ins, third-party entry points (a real dist-info on sys.path)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from wal.backends import ENTRY_POINT_GROUP, available_backends, backend_class, open_backend
from wal.backends.file import FileStorage
from wal.backends.memory import MemoryStorage
from wal.errors import UnknownBackendError
from wal.records import Entry


@pytest.fixture
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Install a tiny third-party distribution declaring backends, the way pip would."""
    site = tmp_path / "site"
    dist = site / "raftnode_plugin_demo-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: raftnode-plugin-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\n"
        "demo = raftnode_plugin_demo:DemoStorage\n"
        "file = raftnode_plugin_demo:DemoStorage\n"  # must not shadow the built-in
        "broken = raftnode_plugin_missing:Nothing\n"
        "notastorage = raftnode_plugin_demo:NotAStorage\n"
    )
    (site / "raftnode_plugin_demo.py").write_text(
        "from wal.backends.memory import MemoryStorage\n"
        "class DemoStorage(MemoryStorage):\n"
        "    pass\n"
        "class NotAStorage:\n"
        "    def __init__(self, dirpath, **opts):\n"
        "        pass\n"
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("raftnode_plugin_demo", None)


def test_builtins() -> None:
    assert backend_class("file") is FileStorage
    assert backend_class("memory") is MemoryStorage
    assert set(available_backends()) >= {"file", "memory", "sqlite"}


def test_third_party_backend_is_found_and_works(plugin_path: Path, tmp_path: Path) -> None:
    assert available_backends()["demo"] == "raftnode_plugin_demo:DemoStorage"
    s = open_backend("demo", tmp_path / "d")
    assert type(s).__name__ == "DemoStorage"
    s.bootstrap(b"m")
    s.load()
    s.save(None, [Entry(1, 1, b"x")])
    s.close()
    MemoryStorage.discard(tmp_path / "d")


def test_third_party_cannot_shadow_a_builtin(plugin_path: Path) -> None:
    assert backend_class("file") is FileStorage


def test_broken_registrations_are_typed_errors(plugin_path: Path, tmp_path: Path) -> None:
    with pytest.raises(UnknownBackendError, match="cannot be loaded"):
        open_backend("broken", tmp_path)
    with pytest.raises(UnknownBackendError, match="does not implement"):
        open_backend("notastorage", tmp_path)
    with pytest.raises(UnknownBackendError, match=r"known backends: .*demo"):
        open_backend("nope", tmp_path)
