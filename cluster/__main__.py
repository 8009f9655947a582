"""``raft-cluster``: a local cluster of raftnode processes, and the verbs to break it.

    raft-cluster up -n 3 [--dir .cluster] [--unsafe-no-fsync] [--async-storage-writes]
                         [--wal-backend file] [--detach] [-- extra raftnode flags]
    raft-cluster status | down | kill NAME | stop NAME | start NAME | restart NAME
    raft-cluster add NAME [--learner] | remove NAME | replace NAME | logs NAME [-f]

  network-namespace mode (root; see docs/netns.md):
    raft-cluster up --netns -n 3 [-- raftnode flags]
    raft-cluster partition n1,n2 / n3 | heal | net
    raft-cluster delay NAME 200ms|off | loss NAME 10%|off
    raft-cluster down --force [--tag TAG]     (after a crash of the launcher)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from cluster import netns
from cluster.clusterfile import ClusterFileError
from cluster.errors import ClusterError
from cluster.launcher import Launcher, LaunchError
from cluster.live import LiveView


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="raft-cluster", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", default=os.environ.get("RAFT_CLUSTER_DIR", ".cluster"),
                   help="where the cluster file, data dirs and logs live (default .cluster)")
    sub = p.add_subparsers(dest="verb", required=True)
    up = sub.add_parser("up", help="start a new cluster")
    up.add_argument("-n", type=int, default=3, help="members (default 3)")
    up.add_argument("--unsafe-no-fsync", action="store_true")
    up.add_argument("--async-storage-writes", action="store_true")
    up.add_argument("--wal-backend", choices=["file", "memory", "sqlite"])
    up.add_argument("--ports", choices=["default", "auto"], default="default",
                    help="etcd's 2379/22379/32379... or any free ports")
    up.add_argument("--detach", action="store_true",
                    help="return once healthy instead of showing the live view")
    up.add_argument("--timeout", type=float, default=30.0, help="seconds to become healthy")
    up.add_argument("--netns", action="store_true",
                    help="each member in its own network namespace (root; falls back to "
                         "loopback with a message otherwise)")
    up.add_argument("extra", nargs=argparse.REMAINDER,
                    help="after --: extra raftnode flags for every member")
    sub.add_parser("status", help="live view (Ctrl-C leaves the cluster running)")
    dn = sub.add_parser("down", help="stop every member")
    dn.add_argument("--wipe", action="store_true", help="also delete data dirs and logs")
    dn.add_argument("--force", action="store_true",
                    help="after a launcher crash: SIGKILL members, remove namespaces found by "
                         "the cluster file and by name prefix")
    dn.add_argument("--tag", help="with --force: remove namespaces rn-TAG-* even without a "
                                  "cluster file")
    part = sub.add_parser("partition", help="netns: cut the cluster, e.g. `n1,n2 / n3`")
    part.add_argument("sides", nargs="+", help="comma-separated members, sides split by /")
    sub.add_parser("heal", help="netns: remove the partition")
    sub.add_parser("net", help="netns: addresses, namespaces and injected faults")
    for verb, text in (("delay", "netns: delay packets a member sends (200ms, 1s, off)"),
                       ("loss", "netns: drop a share of packets a member sends (10%, off)")):
        sp = sub.add_parser(verb, help=text)
        sp.add_argument("name")
        sp.add_argument("value")
    for verb, text in (("kill", "SIGKILL a member (power cut)"),
                       ("stop", "SIGTERM a member (orderly shutdown)"),
                       ("start", "start a stopped member"), ("restart", "stop then start"),
                       ("remove", "member remove, then stop it"),
                       ("replace", "remove, wipe, add back, start with state existing")):
        sp = sub.add_parser(verb, help=text)
        sp.add_argument("name")
    add = sub.add_parser("add", help="member add, then start it with state existing")
    add.add_argument("name")
    add.add_argument("--learner", action="store_true")
    logs = sub.add_parser("logs", help="print a member's log")
    logs.add_argument("name")
    logs.add_argument("-f", "--follow", action="store_true")
    return p


def _live(launcher: Launcher, *, stop_on_exit: bool) -> int:
    from rich.console import Console
    from rich.live import Live

    view = LiveView()
    console = Console()

    async def loop() -> None:
        cf = launcher.load()
        await view.refresh(cf)
        with Live(view.render(cf), console=console, refresh_per_second=4) as live:
            while True:
                await asyncio.sleep(1.0)
                cf = launcher.load()
                with contextlib.suppress(ClusterError):
                    await view.refresh(cf)
                live.update(view.render(cf))

    try:
        asyncio.run(loop())
    except KeyboardInterrupt:
        pass
    if stop_on_exit:
        stopped = launcher.down()
        print(f"stopped {', '.join(stopped) or 'nothing'}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    launcher = Launcher(Path(args.dir))
    try:
        if args.verb == "up":
            flags = [f for f in args.extra if f != "--"]
            if args.unsafe_no_fsync:
                flags.append("--unsafe-no-fsync")
            if args.async_storage_writes:
                flags.append("--async-storage-writes")
            if args.wal_backend:
                flags += ["--wal-backend", args.wal_backend]
            use_netns = args.netns
            if use_netns and (reason := netns.unavailable_reason()):
                print(f"raft-cluster: --netns unavailable: {reason}.\n"
                      "raft-cluster: falling back to loopback mode (no partition, heal, delay "
                      "or loss in this cluster)", file=sys.stderr)
                use_netns = False
            cf = launcher.create(args.n, flags=flags, auto_ports=args.ports == "auto",
                                 use_netns=use_netns)
            for m in cf.members:
                launcher.start(m.name)
            try:
                leader = launcher.wait_healthy(args.timeout)
            except LaunchError:
                launcher.down()
                for m in launcher.load().members:
                    tail = Path(m.log_path).read_text(errors="replace")[-1500:]
                    print(f"--- {m.name} log tail ---\n{tail}", file=sys.stderr)
                raise
            endpoints = ",".join(launcher.load().endpoints)
            print(f"cluster up: {len(cf.members)} members, leader {leader:x}\n"
                  f"  export RAFTCTL_ENDPOINTS={endpoints}")
            if args.detach:
                return 0
            time.sleep(0.5)
            return _live(launcher, stop_on_exit=True)
        if args.verb == "status":
            return _live(launcher, stop_on_exit=False)
        if args.verb == "down" and args.force:
            print("removed", ", ".join(launcher.down_force(tag=args.tag)) or "nothing")
            return 0
        if args.verb == "down":
            print("stopped", ", ".join(launcher.down()) or "nothing")
            if args.wipe:
                launcher.wipe()
            return 0
        if args.verb == "kill":
            launcher.kill(args.name)
        elif args.verb == "stop":
            launcher.stop(args.name)
        elif args.verb == "start":
            launcher.start(args.name)
        elif args.verb == "restart":
            launcher.restart(args.name)
        elif args.verb == "add":
            launcher.add(args.name, learner=args.learner)
        elif args.verb == "remove":
            launcher.remove(args.name)
        elif args.verb == "replace":
            launcher.replace_member(args.name)
        elif args.verb == "logs":
            return _logs(launcher, args.name, args.follow)
        elif args.verb == "partition":
            sides = launcher.partition(" ".join(args.sides))
            print("partitioned:", " / ".join(",".join(sorted(s)) for s in sides))
            return 0
        elif args.verb == "heal":
            launcher.heal()
            print("healed")
            return 0
        elif args.verb == "net":
            return _net(launcher)
        elif args.verb == "delay":
            how = launcher.delay(args.name, args.value)
            print(f"delay {args.name} {args.value}: ok ({how})")
            return 0
        elif args.verb == "loss":
            launcher.loss(args.name, args.value)
            print(f"loss {args.name} {args.value}: ok")
            return 0
        print(f"{args.verb} {args.name}: ok")
        return 0
    except (LaunchError, ClusterFileError, ClusterError, KeyError, netns.NetnsError,
            netns.FaultSpecError) as e:
        print(f"raft-cluster: {e}", file=sys.stderr)
        return 1


def _net(launcher: Launcher) -> int:
    cf = launcher.load()
    rec = cf.extra.get("netns")
    if not rec:
        print("loopback cluster: no network namespaces (start with `up --netns`)")
        return 0
    sides = rec.get("partition") or []
    print(f"subnet {rec['subnet']}  hub {rec['hub']}  host {rec['host_ip']} "
          f"(root namespace, via {rec['uplink']})")
    print("partition: " + (" / ".join(",".join(s) for s in sides) if sides else "none"))
    print(f"{'member':<10} {'namespace':<22} {'address':<15} {'delay':>8} {'loss':>7}")
    for m in cf.members:
        n = m.extra.get("netns") or {}
        print(f"{m.name:<10} {n.get('ns', '-'):<22} {n.get('ip', '-'):<15} "
              f"{str(n.get('delay_ms', 0)) + 'ms':>8} {str(n.get('loss_pct', 0)) + '%':>7}")
    return 0


def _logs(launcher: Launcher, name: str, follow: bool) -> int:
    path = Path(launcher.load().member(name).log_path)
    with open(path, errors="replace") as f:
        sys.stdout.write(f.read())
        while follow:
            line = f.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
