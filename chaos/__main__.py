"""``python -m chaos``: run a scenario, list them, or re-check a recorded history.

    python -m chaos run leader-kill --seed 7 --duration 30 --members 3 --report out/
    python -m chaos run fsync-storm --modes default,async-storage-writes
    python -m chaos check out/default/history.jsonl --workload register
    python -m chaos list

Exit status: 0 every checker passed, 1 a checker found an anomaly, 3 a verdict is unknown,
2 the command was wrong (bad option, unreadable file).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
from pathlib import Path

from chaos.checker import check_workload
from chaos.history import History, HistoryError
from chaos.report import summary_md
from chaos.result import INVALID, VALID, combine
from chaos.scenarios import MODES, SCENARIOS, RunConfig, ScenarioError, final_from_history
from chaos.scenarios import run as run_scenario
from chaos.workload import KINDS, WorkloadError
from cluster.clusterfile import ClusterFileError
from cluster.launcher import LaunchError

EXIT = {VALID: 0, INVALID: 1}
EXIT_UNKNOWN, EXIT_USAGE = 3, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a scenario and check it")
    r.add_argument("scenario", choices=sorted(SCENARIOS))
    r.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    r.add_argument("--duration", type=float, default=30.0, help="seconds of workload")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--cluster-file", type=Path, default=None,
                       help="attach to the cluster a launcher started (its cluster.json)")
    where.add_argument("--members", type=int, default=3, help="members of a fresh cluster")
    r.add_argument("--report", type=Path, default=None, help="directory for the report")
    r.add_argument("--workload", choices=KINDS, default=None)
    r.add_argument("--concurrency", type=int, default=6)
    r.add_argument("--keys", type=int, default=4)
    r.add_argument("--modes", default="", help=f"comma list of {', '.join(MODES)}")
    r.add_argument("--serializable-reads", action="store_true",
                   help="read without quorum (not linearizable: the checker should object)")
    r.add_argument("--heartbeat-interval", type=int, default=100, metavar="MS")
    r.add_argument("--election-timeout", type=int, default=1000, metavar="MS")
    c = sub.add_parser("check", help="re-check a recorded history.jsonl")
    c.add_argument("history", type=Path)
    c.add_argument("--workload", choices=KINDS, required=True)
    sub.add_parser("list", help="list the scenarios")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.cmd == "list":
            for name, sc in SCENARIOS.items():
                print(f"{name:16} {sc.workload:9} {sc.description}")
            return 0
        if args.cmd == "check":
            ops = History.load(args.history).ops()
            results = check_workload(args.workload, ops, final_from_history(ops))
            for res in results:
                print(f"{res.checker}: {res.verdict}: {res.summary}")
                for a in res.anomalies[:3]:
                    print(f"  {a}")
            verdict = combine(results)
            return EXIT.get(verdict, EXIT_UNKNOWN)
        seed = args.seed if args.seed is not None else secrets.randbelow(1 << 31)
        cfg = RunConfig(args.scenario, seed=seed, duration=args.duration, members=args.members,
                        cluster_file=args.cluster_file, report_dir=args.report,
                        workload=args.workload, concurrency=args.concurrency, keys=args.keys,
                        heartbeat_ms=args.heartbeat_interval,
                        election_ms=args.election_timeout,
                        modes=tuple(m for m in args.modes.split(",") if m),
                        serializable_reads=args.serializable_reads)
        print(f"chaos: {cfg.scenario} seed={seed} (replay: {cfg.replay()})", flush=True)
        report = asyncio.run(run_scenario(cfg))
        print(summary_md(report))
        if cfg.report_dir is not None:
            print(f"report: {cfg.report_dir / 'report.json'}")
        return EXIT.get(report["verdict"], EXIT_UNKNOWN)
    except (ScenarioError, WorkloadError, HistoryError, ClusterFileError, LaunchError) as e:
        print(f"chaos: {e}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
