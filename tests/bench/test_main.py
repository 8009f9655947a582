"""python -m bench: discovery, selection, isolated runs and the results document."""

from __future__ import annotations

import datetime as dt
import sys
import textwrap
from pathlib import Path

import pytest

from bench.__main__ import ORDER, discover, main, render, run_module, select


def _fake_package(tmp_path: Path) -> Path:
    pkg = tmp_path / "fakebench"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "zeta_bench.py").write_text("")
    (pkg / "ok_bench.py").write_text(textwrap.dedent("""
        import os
        print("| mode | value |")
        print("|---|---:|")
        print(f"| quick | {os.environ.get('BENCH_QUICK')} |")
    """))
    (pkg / "bad_bench.py").write_text(textwrap.dedent("""
        import sys
        print("| partial | table |")
        print("boom", file=sys.stderr)
        sys.exit(3)
    """))
    (pkg / "slow_bench.py").write_text("import time\nprint('started', flush=True)\ntime.sleep(60)\n")
    (pkg / "wal_bench.py").write_text("")
    (pkg / "helpers.py").write_text("")
    return pkg


def test_discover_orders_known_modules_first(tmp_path: Path) -> None:
    pkg = _fake_package(tmp_path)
    got = discover(pkg)
    assert got[0] == "wal_bench"  # known order first, then alphabetical
    assert got[1:] == ["bad_bench", "ok_bench", "slow_bench", "zeta_bench"]
    assert "helpers" not in got


def test_discover_finds_the_real_modules() -> None:
    found = discover()
    assert {"wal_bench", "storage_bench", "cluster_bench"} <= set(found)
    assert found.index("wal_bench") < found.index("cluster_bench")
    assert set(ORDER) >= {"wal_bench", "cluster_bench"}


def test_select_accepts_short_names_and_rejects_unknown() -> None:
    found = ["wal_bench", "cluster_bench"]
    assert select(found, []) == found
    assert select(found, ["cluster", "cluster_bench", "wal"]) == ["cluster_bench", "wal_bench"]
    with pytest.raises(SystemExit, match="no module 'nope_bench'"):
        select(found, ["nope"])


def test_run_module_captures_tables_and_passes_quick_mode(tmp_path: Path) -> None:
    _fake_package(tmp_path)
    quick = run_module("ok_bench", full=False, timeout=60, echo=False, package="fakebench",
                       cwd=tmp_path)
    assert quick.returncode == 0 and "| quick | 1 |" in quick.stdout
    full = run_module("ok_bench", full=True, timeout=60, echo=False, package="fakebench",
                      cwd=tmp_path)
    assert "| quick | 0 |" in full.stdout


def test_a_failing_module_is_reported_with_its_stderr(tmp_path: Path) -> None:
    _fake_package(tmp_path)
    ok = run_module("ok_bench", full=False, timeout=60, echo=False, package="fakebench",
                    cwd=tmp_path)
    bad = run_module("bad_bench", full=False, timeout=60, echo=False, package="fakebench",
                     cwd=tmp_path)
    assert bad.returncode == 3 and "boom" in bad.stderr_tail
    doc = render([ok, bad], full=False, facts={"nproc": "2", "python": sys.version.split()[0]},
                 started=dt.datetime(2026, 11, 25, 23, 0, tzinfo=dt.UTC))
    assert "2026-11-25 23:00 UTC" in doc and "| nproc | 2 |" in doc
    assert "| ok_bench | ok |" in doc and "| bad_bench | FAILED (exit 3) |" in doc
    assert "## ok_bench" in doc and "| quick | 1 |" in doc
    assert "| partial | table |" in doc and "boom" in doc


def test_a_hung_module_is_killed_at_its_timeout(tmp_path: Path) -> None:
    _fake_package(tmp_path)
    out = run_module("slow_bench", full=False, timeout=1.0, echo=False, package="fakebench",
                     cwd=tmp_path)
    assert out.returncode != 0 and "killed after" in out.stderr_tail
    assert out.seconds < 30


def test_main_lists_modules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    assert "cluster_bench" in capsys.readouterr().out.split()
