"""``python -m chaos``: list, re-check a saved history, and typed refusals of bad input."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.__main__ import main
from chaos.history import History
from tests.chaos.fake import FakeStore

ROOT = Path(__file__).resolve().parents[2]


def _saved(tmp_path: Path, *, lose_one: bool) -> Path:
    fake = FakeStore("register", ["a", "b"], random.Random(9))
    fake.run(150, concurrency=4)
    fake.final_reads()
    events = fake.history.events
    if lose_one:  # the final read of "a" returns a value from before its last write
        i = max(i for i, e in enumerate(events) if e.process == -1 and e.key == "a")
        firsts = [e.value for e in events if e.type == "invoke" and e.f == "write"
                  and e.key == "a"]
        events[i] = type(events[i])(**{**events[i].to_json(), "value": firsts[0]})
    path = tmp_path / "history.jsonl"
    History(events).save(path)
    return path


def test_module_entry_point_lists_scenarios() -> None:
    out = subprocess.run([sys.executable, "-m", "chaos", "list"], cwd=ROOT, text=True,
                         capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    for name in ("leader-kill", "power-cut", "fsync-storm", "partition", "member-replace"):
        assert name in out.stdout


def test_check_valid_history_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) \
        -> None:
    assert main(["check", str(_saved(tmp_path, lose_one=False)), "--workload",
                 "register"]) == 0
    assert "linearizable: valid" in capsys.readouterr().out


def test_check_broken_history_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) \
        -> None:
    assert main(["check", str(_saved(tmp_path, lose_one=True)), "--workload",
                 "register"]) == 1
    assert "linearizable: invalid" in capsys.readouterr().out


def test_unreadable_history_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "h.jsonl"
    bad.write_text("not json\n")
    assert main(["check", str(bad), "--workload", "append"]) == 2
    assert "not JSON" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["run", "leader-kill", "--cluster-file", "somewhere/else.json"], "cluster.json"),
    (["run", "leader-kill", "--duration", "0"], "positive"),
    (["run", "fsync-storm", "--modes", "default,turbo"], "unknown modes"),
])
def test_bad_run_options_exit_2(argv: list[str], message: str,
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_missing_cluster_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) \
        -> None:
    assert main(["run", "leader-kill", "--cluster-file",
                 str(tmp_path / "cluster.json")]) == 2
    assert "no cluster file" in capsys.readouterr().err


def test_unknown_scenario_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as e:
        main(["run", "meteor-strike"])
    assert e.value.code == 2
