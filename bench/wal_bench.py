"""WAL save() with fsync vs a raw os.write + os.fdatasync loop, and read_all replay speed.

    python -m bench.wal_bench            # full run
    BENCH_QUICK=1 python -m bench.wal_bench   # < 30 s
    BENCH_DIR=/mnt/disk python -m bench.wal_bench   # measure another file system

Both sides write the same bytes per iteration to a preallocated file on the same file
system, alternating iterations so that disk noise hits both alike. The figure is the
throughput ratio WAL/raw, the median over rounds of (raw latency / WAL latency) of the
same round: 1.0 means the WAL costs nothing over the bare syscalls. Each round also
times the encoder alone on the same batch (a throwaway ``Encoder``): the per-entry
Python cost that, against this disk's fdatasync, bounds the ratio of big batches. The
header says which encoder ran: the C accelerator, or pure Python (not built, or
``RAFTNODE_WAL_PURE_PYTHON=1``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

from wal import WAL, Entry, HardState, framing
from wal.fileutil import fdatasync, preallocate
from wal.framing import Encoder

QUICK = os.environ.get("BENCH_QUICK") == "1"
SIZES = (256, 4096)
BATCHES = (1, 10, 100, 1000)


def _rounds(batch: int, size: int) -> int:
    if QUICK:
        return 15 if batch * size >= 400_000 else 40
    return 50 if batch * size >= 400_000 else 300


def bench_save(root: str, size: int, batch: int) -> dict[str, float]:
    d = os.path.join(root, f"wal-{size}-{batch}")
    w = WAL.create(d, b"bench")
    raw_path = os.path.join(root, f"raw-{size}-{batch}")
    fd = os.open(raw_path, os.O_CREAT | os.O_RDWR, 0o600)
    seg = 64_000_000
    preallocate(fd, seg)
    payload = os.urandom(size)
    rounds = _rounds(batch, size)
    wal_t: list[float] = []
    raw_t: list[float] = []
    enc_t: list[float] = []
    nbytes: list[int] = []
    index = 0
    raw_off = 0
    enc = Encoder(0)  # a throwaway encoder: its chain is not the WAL's
    try:
        for r in range(rounds + 3):  # the first 3 rounds warm up and are not counted
            ents = [Entry(index + k + 1, 1, payload) for k in range(batch)]
            index += batch
            assert w._pw is not None
            before = w._pw.end
            t0 = time.perf_counter()
            w.save(HardState(1, 1, index), ents)
            t1 = time.perf_counter()
            n = w._pw.end - before if w._pw.end > before else len(payload) * batch
            buf = os.urandom(n)
            if raw_off + n > seg:  # a fresh preallocated file, as the WAL's next segment
                os.close(fd)
                os.remove(raw_path)
                fd = os.open(raw_path, os.O_CREAT | os.O_RDWR, 0o600)
                preallocate(fd, seg)
                raw_off = 0
            t2 = time.perf_counter()
            view = memoryview(buf)
            off = raw_off
            while view:
                k = os.pwrite(fd, view, off)
                view = view[k:]
                off += k
            fdatasync(fd)
            t3 = time.perf_counter()
            raw_off = off
            # the encoder alone, after both timed steps so it warms neither of them
            t_enc = time.perf_counter()
            enc.encode_entries(ents, [])
            t_enc = time.perf_counter() - t_enc
            if r >= 3:
                wal_t.append(t1 - t0)
                raw_t.append(t3 - t2)
                enc_t.append(t_enc)
                nbytes.append(n)
    finally:
        w.close()
        os.close(fd)
        shutil.rmtree(d, ignore_errors=True)
        os.remove(raw_path)
    wal_med = statistics.median(wal_t)
    raw_med = statistics.median(raw_t)
    return {
        "wal_ms": wal_med * 1e3,
        "raw_ms": raw_med * 1e3,
        # the median of per-round ratios: robust to a disk whose speed drifts mid-run
        "ratio": statistics.median(r / w for r, w in zip(raw_t, wal_t)),
        "entries_s": batch / wal_med,
        "mb_s": statistics.median(nbytes) / wal_med / 1e6,
        "enc_us": statistics.median(enc_t) / batch * 1e6,
    }


def bench_replay(root: str, size: int, count: int) -> dict[str, float]:
    d = os.path.join(root, f"replay-{size}")
    w = WAL.create(d, b"bench", unsafe_no_fsync=True)
    payload = os.urandom(size)
    for start in range(1, count + 1, 1000):
        w.save(None, [Entry(i, 1, payload) for i in range(start, min(start + 1000, count + 1))])
    w.close()
    on_disk = 0
    for n in os.listdir(d):
        with open(os.path.join(d, n), "rb") as f:
            on_disk += len(f.read().rstrip(b"\0"))
    best = float("inf")
    for _ in range(2 if QUICK else 3):
        t0 = time.perf_counter()
        with WAL.open_for_read(d) as r:
            got = r.read_all()[2]
        best = min(best, time.perf_counter() - t0)
        assert len(got) == count
    shutil.rmtree(d, ignore_errors=True)
    return {"entries_s": count / best, "mb_s": on_disk / best / 1e6, "seconds": best}


def main() -> int:
    root = tempfile.mkdtemp(prefix="walbench-", dir=os.environ.get("BENCH_DIR"))
    try:
        encoder = "C (wal._speedups)" if framing.ACCELERATED else "pure Python"
        print(f"WAL benchmark ({'quick' if QUICK else 'full'}), dir {root}, "
              f"python {sys.version.split()[0]}, encoder {encoder}\n")
        print("| entry size | batch | WAL save p50 (ms) | raw write+fdatasync p50 (ms) "
              "| WAL/raw | WAL entries/s | WAL MB/s | encode µs/entry |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for size in SIZES:
            for batch in BATCHES:
                r = bench_save(root, size, batch)
                print(f"| {size} B | {batch} | {r['wal_ms']:.3f} | {r['raw_ms']:.3f} | "
                      f"{r['ratio']:.2f} | {r['entries_s']:,.0f} | {r['mb_s']:.1f} | "
                      f"{r['enc_us']:.2f} |", flush=True)
        print("\n| replay (read_all) | entries | entries/s | MB/s |")
        print("|---|---:|---:|---:|")
        for size, count in ((256, 50_000 if QUICK else 200_000), (4096, 10_000 if QUICK else 40_000)):
            r = bench_replay(root, size, count)
            print(f"| {size} B entries | {count:,} | {r['entries_s']:,.0f} | {r['mb_s']:.1f} |",
                  flush=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
