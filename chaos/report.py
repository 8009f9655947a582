"""Run reports: numbers from a history (counts, latencies, unavailability) and the files
a scenario leaves behind: ``report.json``, ``summary.md`` and a ``history.jsonl`` per run."""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from chaos.history import OK, Op


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile of already sorted values (None when empty)."""
    if not sorted_values:
        return None
    rank = max(1, min(len(sorted_values), math.ceil(q * len(sorted_values))))
    return sorted_values[rank - 1]


def op_stats(ops: Sequence[Op], *, t0: int | None = None) -> dict[str, Any]:
    """Outcome counts (total and per operation), ok latencies in ms, and the longest span
    without an acknowledged write (the unavailability an election storm causes)."""
    client_ops = [o for o in ops if o.process >= 0]
    counts = Counter(o.outcome for o in client_ops)
    per_f: dict[str, dict[str, int]] = {}
    for o in client_ops:
        per_f.setdefault(o.f, {"ok": 0, "fail": 0, "info": 0})[o.outcome] += 1
    lat = sorted((o.ret - o.call) / 1e6 for o in client_ops if o.outcome == OK)
    writes = sorted(o.ret for o in client_ops if o.outcome == OK and o.f != "read")
    start = t0 if t0 is not None else min((o.call for o in client_ops), default=0)
    end = max((o.call for o in client_ops), default=start)
    stop = max([end, *writes[-1:]])
    gaps = [b - a for a, b in zip([start, *writes], [*writes, stop])]
    return {
        "ops": len(client_ops), "ok": counts.get("ok", 0), "fail": counts.get("fail", 0),
        "info": counts.get("info", 0), "by_op": per_f,
        "latency_ms": {"p50": _r(percentile(lat, 0.5)), "p99": _r(percentile(lat, 0.99)),
                       "max": _r(lat[-1] if lat else None)},
        "longest_write_gap_s": _r(max(gaps, default=0) / 1e9),
    }


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 3)


def write_report(directory: Path, report: dict[str, Any]) -> None:
    """``report.json`` and ``summary.md`` at the top, each run's ``<label>/history.jsonl``
    (one event per line) beside them; the report itself stays small."""
    directory.mkdir(parents=True, exist_ok=True)
    runs = report.get("runs", [])
    slim = {**report, "runs": [{k: v for k, v in r.items() if k != "history"} for r in runs]}
    (directory / "report.json").write_text(json.dumps(slim, indent=2, default=str) + "\n")
    (directory / "summary.md").write_text(summary_md(slim))
    for r in runs:
        sub = directory / r["label"]
        sub.mkdir(parents=True, exist_ok=True)
        with open(sub / "history.jsonl", "w") as f:
            for e in r.get("history", ()):
                f.write(json.dumps(e, separators=(",", ":")) + "\n")


def summary_md(report: dict[str, Any]) -> str:
    """A short human summary: what ran, how it went, what the checkers said, how to replay."""
    lines = [f"# chaos run: {report['scenario']}", ""]
    lines.append(f"verdict: **{report['verdict']}**  ")
    lines.append(f"replay: `{report['replay']}`")
    lines.append("")
    runs = report.get("runs", [])
    lines.append("| run | flags | ops | ok | fail | info | p50 ms | p99 ms | longest write gap s "
                 "| leader changes | elections (term +) | verdict |")
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for run in runs:
        s = run["stats"]
        lines.append(
            f"| {run['label']} | `{' '.join(run.get('mode_flags', [])) or '-'}` | {s['ops']} "
            f"| {s['ok']} | {s['fail']} | {s['info']} | {s['latency_ms']['p50']} "
            f"| {s['latency_ms']['p99']} | {s['longest_write_gap_s']} "
            f"| {run['leader_changes'].get('max_member')} | {run['leader_changes'].get('term_delta')} "
            f"| {run['verdict']} |")
    for run in runs:
        lines += ["", f"## {run['label']}", ""]
        for c in run["checks"]:
            lines.append(f"- {c['checker']}: **{c['verdict']}** — {c['summary']}")
        faults = Counter(f"{e['fault']} {e['phase']}" for e in run.get("nemesis", []))
        if faults:
            lines.append("- nemesis: " + ", ".join(f"{k} x{v}" for k, v in sorted(faults.items())))
        if run.get("errors"):
            lines.append("- errors: " + "; ".join(run["errors"]))
    return "\n".join(lines) + "\n"
