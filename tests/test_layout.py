"""The layering rules of the design brief, checked on the source tree itself."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# package -> top-level modules it must never import
FORBIDDEN = {
    "wal": {"raftnode", "cluster", "chaos", "bench"},
    "raftnode/raft": {"asyncio", "socket", "aiohttp", "threading", "time", "os", "random",
                      "wal", "cluster", "chaos", "msgpack", "subprocess", "selectors"},
    "raftnode": {"cluster", "chaos", "bench"},
    "cluster": {"raftnode", "chaos", "bench"},
    "chaos": {"raftnode", "wal", "bench"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found


def test_no_upward_imports() -> None:
    bad: list[str] = []
    for pkg, forbidden in FORBIDDEN.items():
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if pkg == "raftnode" and "raft" in path.relative_to(ROOT / pkg).parts[:1]:
                continue  # raftnode/raft is checked by its own, stricter rule
            hit = _imports(path) & forbidden
            if hit:
                bad.append(f"{path.relative_to(ROOT)} imports {sorted(hit)}")
    assert not bad, "\n".join(bad)

