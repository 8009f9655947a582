"""Helpers shared by the benchmarks: quick mode, order statistics, markdown tables, machine facts.

Benchmarks on a shared 2-core VM are noisy, so every figure we publish is a median (or a
percentile of many samples) and every comparison is a ratio of runs interleaved in time.
These helpers are deliberately tiny and dependency-free so any bench module can use them.
"""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
from collections.abc import Iterable, Sequence

#: Set by ``python -m bench`` (quick by default) and honoured by every bench module.
QUICK_ENV = "BENCH_QUICK"


def quick() -> bool:
    """True when the caller asked for a short run (``BENCH_QUICK=1``)."""
    return os.environ.get(QUICK_ENV) == "1"


def median(xs: Iterable[float]) -> float:
    """Median of a non-empty sample; ValueError on an empty one (never a silent 0)."""
    data = list(xs)
    if not data:
        raise ValueError("median of an empty sample")
    return float(statistics.median(data))


def percentile(xs: Iterable[float], p: float) -> float:
    """The ``p``-th percentile (0..100) by linear interpolation between closest ranks.

    Same definition as numpy's default, so figures can be checked with any tool.
    """
    if not 0.0 <= p <= 100.0:
        raise ValueError(f"percentile must be within 0..100, got {p}")
    data = sorted(xs)
    if not data:
        raise ValueError("percentile of an empty sample")
    k = (len(data) - 1) * p / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(data) - 1)
    return float(data[lo] + (data[hi] - data[lo]) * (k - lo))


def md_table(headers: Sequence[str], rows: Sequence[Sequence[object]],
             align: str | None = None) -> str:
    """A GitHub markdown table. ``align`` has one char per column: ``l`` or ``r`` (default r
    for every column but the first)."""
    n = len(headers)
    if align is None:
        align = "l" + "r" * (n - 1)
    if len(align) != n or set(align) - {"l", "r"}:
        raise ValueError(f"align must be {n} chars of 'l'/'r', got {align!r}")
    for row in rows:
        if len(row) != n:
            raise ValueError(f"row has {len(row)} cells, table has {n} columns: {row!r}")
    sep = ["---" if a == "l" else "---:" for a in align]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(v: object) -> str:
    s = str(v)
    return s.replace("|", "\\|").replace("\n", " ")


def machine_facts() -> dict[str, str]:
    """What a reader needs to weigh the numbers: cores, Python, kernel, load at start."""
    try:
        load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "n/a"
    cpu = "n/a"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "nproc": str(os.cpu_count() or "n/a"),
        "cpu": cpu,
        "python": sys.version.split()[0],
        "kernel": f"{platform.system()} {platform.release()}",
        "loadavg (1/5/15 min)": load,
    }
