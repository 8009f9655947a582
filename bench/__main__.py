"""Run every benchmark and collect their tables in ``bench/results.md``.

    python -m bench                 # every bench module, quick mode (about 2-3 minutes)
    python -m bench --full          # full runs (tens of minutes)
    python -m bench --only cluster  # one module (``cluster`` or ``cluster_bench``), repeatable
    python -m bench --list          # the modules found

A bench module is any ``bench/*_bench.py`` runnable as ``python -m bench.<name>`` that
prints markdown tables on stdout and honours ``BENCH_QUICK=1``. Each runs in its own
interpreter, one after another (never in parallel: they would measure each other), so a
module that crashes or hangs costs only its own section; the exit status is non-zero when
any module failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from bench.common import QUICK_ENV, machine_facts, md_table

BENCH_DIR = Path(__file__).resolve().parent
#: Preferred order: cheapest and most fundamental first; unknown modules follow by name.
ORDER = ("wal_bench", "storage_bench", "core_bench", "cluster_bench")
TIMEOUT_S = {"quick": 600.0, "full": 7200.0}


@dataclass(frozen=True, slots=True)
class Outcome:
    """What one module run produced: its stdout (the tables), exit status and wall time."""

    name: str
    returncode: int
    seconds: float
    stdout: str
    stderr_tail: str


def discover(bench_dir: Path = BENCH_DIR) -> list[str]:
    """Module names ``*_bench`` in ``bench_dir``, in :data:`ORDER` then alphabetically."""
    found = sorted(p.stem for p in bench_dir.glob("*_bench.py"))
    rank = {n: i for i, n in enumerate(ORDER)}
    return sorted(found, key=lambda n: (rank.get(n, len(ORDER)), n))


def select(found: Sequence[str], only: Sequence[str]) -> list[str]:
    """The modules named by ``--only`` (with or without the ``_bench`` suffix)."""
    if not only:
        return list(found)
    chosen = []
    for name in only:
        mod = name if name.endswith("_bench") else f"{name}_bench"
        if mod not in found:
            raise SystemExit(f"bench: no module {mod!r}; found {', '.join(found) or 'none'}")
        if mod not in chosen:
            chosen.append(mod)
    return chosen


def run_module(name: str, *, full: bool, timeout: float, echo: bool = True,
               package: str = "bench", cwd: Path | None = None) -> Outcome:
    """Run ``python -m <package>.<name>``, echoing its output live, and capture it.

    Past ``timeout`` the module gets SIGTERM (bench modules clean up their clusters on
    it), then SIGKILL for its whole process group 15 s later.
    """
    env = dict(os.environ)
    env[QUICK_ENV] = "0" if full else "1"
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", f"{package}.{name}"],
        cwd=str(cwd or BENCH_DIR.parent), env=env, stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    out: list[str] = []
    err: list[str] = []

    def drain(stream: IO[str], into: list[str], echo_to: IO[str]) -> None:
        for line in stream:
            into.append(line)
            if echo:
                echo_to.write(line)
                echo_to.flush()

    assert proc.stdout is not None and proc.stderr is not None
    readers = [threading.Thread(target=drain, args=(proc.stdout, out, sys.stdout), daemon=True),
               threading.Thread(target=drain, args=(proc.stderr, err, sys.stderr), daemon=True)]
    for t in readers:
        t.start()
    killed = False
    try:
        rc = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        killed = True
        proc.terminate()
        try:
            proc.wait(timeout=15.0)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        rc = proc.wait()
    for t in readers:
        t.join(timeout=5.0)
    if killed:
        err.append(f"bench: {name} killed after {timeout:.0f} s\n")
        rc = rc or -9
    return Outcome(name, rc, time.monotonic() - t0, "".join(out), "".join(err[-20:]))


def render(outcomes: Sequence[Outcome], *, full: bool, facts: dict[str, str],
           started: dt.datetime) -> str:
    """The results document: when, where, then each module's tables verbatim."""
    lines = [
        "# Benchmark results",
        "",
        f"Run {started.strftime('%Y-%m-%d %H:%M UTC')} with `python -m bench"
        f"{' --full' if full else ''}` ({'full' if full else 'quick'} mode). "
        "Generated file: see docs/bench.md for how to read it.",
        "",
        md_table(["machine", "value"], list(facts.items()), align="ll"),
        "",
        md_table(["module", "status", "seconds"],
                 [(o.name, "ok" if o.returncode == 0 else f"FAILED (exit {o.returncode})",
                   f"{o.seconds:.0f}") for o in outcomes], align="llr"),
    ]
    for o in outcomes:
        lines += ["", f"## {o.name}", ""]
        body = o.stdout.strip()
        lines.append(body if body else "(no output)")
        if o.returncode != 0:
            lines += ["", "```", o.stderr_tail.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--full", action="store_true", help="full runs instead of quick ones")
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only this module (repeatable)")
    p.add_argument("--list", action="store_true", help="list the modules and exit")
    p.add_argument("--out", type=Path, default=BENCH_DIR / "results.md",
                   help="where to write the results (default bench/results.md)")
    args = p.parse_args(argv)
    found = discover()
    if args.list:
        print("\n".join(found))
        return 0
    chosen = select(found, args.only)
    started = dt.datetime.now(dt.UTC)
    facts = machine_facts()
    timeout = TIMEOUT_S["full" if args.full else "quick"]
    outcomes = []
    for name in chosen:
        print(f"\n== {name} ({'full' if args.full else 'quick'}) ==", flush=True)
        outcomes.append(run_module(name, full=args.full, timeout=timeout))
    args.out.write_text(render(outcomes, full=args.full, facts=facts, started=started),
                        encoding="utf-8")
    failed = [o.name for o in outcomes if o.returncode != 0]
    print(f"\nwrote {args.out}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
