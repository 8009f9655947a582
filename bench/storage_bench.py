"""The storage backends side by side: ``save()`` latency and throughput with fsync.

Each cell saves batches of N entries of 256 B plus a hard state (as a raft leader does per
Ready) on a fresh member directory and reports the median and p99 latency of ``save()`` and
entries/s. ``memory`` is the no-I/O ceiling; ``file`` and ``sqlite`` fsync every save
(``--unsafe-no-fsync`` turns that off for all of them).

    python -m bench.storage_bench [--dir PATH] [--batches 1,10,100] [--json]
    BENCH_QUICK=1 python -m bench.storage_bench      # < 30 s

Run it on the disk you care about (``--dir``): a tmpfs /tmp makes fsync free.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from wal.backends import open_backend
from wal.backends.memory import MemoryStorage
from wal.records import Entry, HardState

ENTRY_BYTES = 256


@dataclass(frozen=True, slots=True)
class Cell:
    backend: str
    batch: int
    saves: int
    median_ms: float
    p99_ms: float
    entries_per_s: float


def bench_cell(
    backend: str, batch: int, root: Path, *, max_saves: int, budget_s: float, no_fsync: bool
) -> Cell:
    """Time ``save()`` on a fresh member until ``max_saves`` or ``budget_s`` runs out."""
    data_dir = Path(tempfile.mkdtemp(prefix=f"{backend}-{batch}-", dir=root))
    opts = {"preallocate": True} if backend == "file" else {}
    s = open_backend(backend, data_dir, unsafe_no_fsync=no_fsync, **opts)
    payload = os.urandom(ENTRY_BYTES)
    try:
        s.bootstrap(b"bench")
        s.load()
        index = 0
        latencies: list[float] = []
        warmup = 3
        deadline = time.perf_counter() + budget_s
        while len(latencies) < max_saves and time.perf_counter() < deadline:
            ents = [Entry(index + i + 1, 1, payload) for i in range(batch)]
            hs = HardState(term=1, vote=1, commit=index)
            t0 = time.perf_counter()
            s.save(hs, ents)
            dt = time.perf_counter() - t0
            index += batch
            if warmup:
                warmup -= 1
            else:
                latencies.append(dt)
    finally:
        s.close()
        if backend == "memory":
            MemoryStorage.discard(data_dir)
        shutil.rmtree(data_dir, ignore_errors=True)
    latencies.sort()
    med = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Cell(backend, batch, len(latencies), med * 1e3, p99 * 1e3, batch / med)


def render(cells: list[Cell]) -> str:
    lines = [
        "| backend | batch | saves | median ms | p99 ms | entries/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in cells:
        lines.append(
            f"| {c.backend} | {c.batch} | {c.saves} | {c.median_ms:.3f} | {c.p99_ms:.3f} "
            f"| {c.entries_per_s:,.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    quick = os.environ.get("BENCH_QUICK") == "1"
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--dir", type=Path, default=None, help="where to create member dirs")
    ap.add_argument("--backends", default="file,sqlite,memory")
    ap.add_argument("--batches", default="1,10,100")
    ap.add_argument("--saves", type=int, default=300 if quick else 2000, help="per cell, at most")
    ap.add_argument("--budget", type=float, default=2.0 if quick else 20.0, help="s per cell")
    ap.add_argument("--unsafe-no-fsync", action="store_true")
    ap.add_argument("--json", action="store_true", help="print JSON rows instead of a table")
    args = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="storage-bench-", dir=args.dir))
    cells: list[Cell] = []
    try:
        for batch in (int(b) for b in args.batches.split(",")):
            for backend in args.backends.split(","):
                cells.append(
                    bench_cell(
                        backend,
                        batch,
                        root,
                        max_saves=args.saves,
                        budget_s=args.budget,
                        no_fsync=args.unsafe_no_fsync,
                    )
                )
    finally:
        shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps([asdict(c) for c in cells], indent=1))
    else:
        mode = "unsafe-no-fsync" if args.unsafe_no_fsync else "fsync on every save"
        print(f"storage backends, {ENTRY_BYTES} B entries, {mode}, dir {root.parent}")
        print(render(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
