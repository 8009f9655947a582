"""Report numbers and files."""

from __future__ import annotations

import json
from pathlib import Path

from chaos.history import History
from chaos.report import op_stats, percentile, summary_md, write_report


def test_percentile_nearest_rank() -> None:
    xs = [float(i) for i in range(1, 101)]
    assert percentile(xs, 0.5) == 50.0
    assert percentile(xs, 0.99) == 99.0
    assert percentile(xs, 1.0) == 100.0
    assert percentile([], 0.5) is None


def test_op_stats_counts_latencies_and_write_gap() -> None:
    h = History()
    ms = 1_000_000
    h.invoke(0, "write", "x", "1", 0)
    h.complete(0, "ok", "write", "x", None, 2 * ms)
    h.invoke(0, "write", "x", "2", 3 * ms)
    h.complete(0, "info", "write", "x", None, 5 * ms)
    h.invoke(1, "read", "x", None, 4 * ms)
    h.complete(1, "fail", "read", "x", None, 6 * ms)
    h.invoke(2, "write", "x", "3", 7 * ms)
    h.complete(2, "ok", "write", "x", None, 3000 * ms)
    h.invoke(-1, "read", "x", None, 3001 * ms)  # final reads are not client ops
    h.complete(-1, "ok", "read", "x", "3", 3002 * ms)
    s = op_stats(h.ops(), t0=0)
    assert (s["ops"], s["ok"], s["fail"], s["info"]) == (4, 2, 1, 1)
    assert s["by_op"]["write"] == {"ok": 2, "fail": 0, "info": 1}
    assert s["latency_ms"]["p50"] == 2.0
    assert s["latency_ms"]["max"] == 2993.0
    assert s["longest_write_gap_s"] == 2.998


def test_write_report_files(tmp_path: Path) -> None:
    run = {"label": "default", "mode_flags": [], "verdict": "valid",
           "stats": op_stats([]), "leader_changes": {"max_member": 1, "term_delta": 1},
           "checks": [{"checker": "linearizable", "verdict": "valid", "summary": "fine",
                       "anomalies": [], "stats": {}}],
           "nemesis": [{"time": 1.0, "fault": "kill", "phase": "inject", "detail": {}}],
           "errors": [], "history": [{"type": "invoke", "process": 0, "f": "read",
                                      "key": "x", "value": None, "time": 1}]}
    report = {"scenario": "leader-kill", "seed": 5, "replay": "python -m chaos run x",
              "verdict": "valid", "runs": [run]}
    write_report(tmp_path, report)
    saved = json.loads((tmp_path / "report.json").read_text())
    assert "history" not in saved["runs"][0]
    assert saved["seed"] == 5
    assert (tmp_path / "default" / "history.jsonl").read_text().count("\n") == 1
    md = (tmp_path / "summary.md").read_text()
    assert "leader-kill" in md and "python -m chaos run x" in md and "kill inject x1" in md
    assert summary_md(saved) == md
