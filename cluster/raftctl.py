"""raftctl: etcdctl's verbs and output styles over the v3 JSON gateway.

    raftctl --endpoints=127.0.0.1:2379 put foo bar
    raftctl get foo --prefix -w json
    raftctl endpoint status -w table

Endpoints come from --endpoints, else --cluster-file, else $RAFTCTL_ENDPOINTS, else
$ETCDCTL_ENDPOINTS, else 127.0.0.1:2379. Exit codes follow etcdctl: 0 ok, 1 request error,
2 cannot reach the cluster, 3 bad input, 4 unsupported by the member, 6 local I/O error,
128 bad arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from cluster import clusterfile, metrics
from cluster import printer as P
from cluster.client import Client
from cluster.errors import (
    ClusterError,
    EtcdError,
    IndeterminateError,
    Timeout,
    Unavailable,
    Unsupported,
)
from cluster.txnparse import TxnSyntaxError, parse_txn
from cluster.types import Status

EXIT_ERROR, EXIT_BAD_CONNECTION, EXIT_INVALID_INPUT, EXIT_BAD_FEATURE, EXIT_IO = 1, 2, 3, 4, 6
EXIT_BAD_ARGS = 128


class _Parser(argparse.ArgumentParser):
    """Usage errors end like etcdctl's: `Error: ...` and exit code 128."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        _fail(EXIT_BAD_ARGS, message)


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _json(obj: Any) -> None:
    _out(json.dumps(obj, separators=(",", ":"), ensure_ascii=False))


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)?$")


def duration(text: str) -> float:
    """Go-style durations as etcdctl takes them (`5s`, `500ms`, `1m`); bare numbers are s."""
    m = _DURATION.match(text.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"bad duration {text!r} (e.g. 5s, 500ms)")
    n, unit = float(m.group(1)), m.group(2) or "s"
    return n * {"ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def hex_id(text: str) -> int:
    try:
        v = int(text, 16)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad hex ID {text!r}") from None
    if v <= 0 or v >= 1 << 64:
        raise argparse.ArgumentTypeError(f"ID {text!r} out of range")
    return v


def _globals(p: argparse.ArgumentParser, *, sub: bool) -> None:
    d = argparse.SUPPRESS if sub else None
    p.add_argument("--endpoints", default=d, help="comma-separated client URLs")
    p.add_argument("--cluster-file", default=d, help="read endpoints from a cluster file")
    p.add_argument("--command-timeout", type=duration, default=d if sub else 5.0)
    p.add_argument("--dial-timeout", type=duration, default=d if sub else 2.0)
    p.add_argument("-w", "--write-out", choices=["simple", "json", "table"],
                   default=d if sub else "simple")


def build_parser() -> argparse.ArgumentParser:
    root = _Parser(prog="raftctl", description=__doc__.split("\n")[0])
    _globals(root, sub=False)
    subs = root.add_subparsers(dest="verb", required=True)

    def cmd(name: str, help: str, parent: Any = subs) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = parent.add_parser(name, help=help)
        _globals(p, sub=True)
        return p

    p = cmd("put", "put a key")
    p.add_argument("key")
    p.add_argument("value", nargs="?", help="read from stdin when omitted")
    p.add_argument("--lease", type=hex_id, default=0, help="lease ID (hex)")
    p.add_argument("--prev-kv", action="store_true")
    p.add_argument("--ignore-value", action="store_true")
    p.add_argument("--ignore-lease", action="store_true")

    p = cmd("get", "get keys")
    p.add_argument("key")
    p.add_argument("range_end", nargs="?")
    p.add_argument("--prefix", action="store_true")
    p.add_argument("--from-key", action="store_true")
    p.add_argument("--rev", type=int, default=0)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--keys-only", action="store_true")
    p.add_argument("--count-only", action="store_true")
    p.add_argument("--print-value-only", action="store_true")
    p.add_argument("--order", choices=["ASCEND", "DESCEND"], default=None)
    p.add_argument("--sort-by", choices=["CREATE", "KEY", "MODIFY", "VALUE", "VERSION"],
                   default=None)
    p.add_argument("--consistency", choices=["l", "s"], default="l")

    p = cmd("del", "delete keys")
    p.add_argument("key")
    p.add_argument("range_end", nargs="?")
    p.add_argument("--prefix", action="store_true")
    p.add_argument("--from-key", action="store_true")
    p.add_argument("--prev-kv", action="store_true")

    p = cmd("txn", "run a transaction read from stdin (or --file)")
    p.add_argument("-i", "--interactive", action="store_true")
    p.add_argument("--file", help="read the txn from this file instead of stdin")

    p = cmd("compaction", "compact the history up to a revision")
    p.add_argument("revision", type=int)
    p.add_argument("--physical", action="store_true")

    p = cmd("watch", "watch keys (until interrupted)")
    p.add_argument("key")
    p.add_argument("range_end", nargs="?")
    p.add_argument("--prefix", action="store_true")
    p.add_argument("--rev", type=int, default=0)
    p.add_argument("--prev-kv", action="store_true")
    p.add_argument("--max-events", type=int, default=0,
                   help="exit after this many events (raftctl extension, for scripts)")

    lease = cmd("lease", "lease verbs").add_subparsers(dest="lease_verb", required=True)
    p = cmd("grant", "grant a lease", lease)
    p.add_argument("ttl", type=int)
    p = cmd("revoke", "revoke a lease", lease)
    p.add_argument("id", type=hex_id)
    p = cmd("timetolive", "show a lease's remaining TTL", lease)
    p.add_argument("id", type=hex_id)
    p.add_argument("--keys", action="store_true")
    p = cmd("keep-alive", "keep a lease alive", lease)
    p.add_argument("id", type=hex_id)
    p.add_argument("--once", action="store_true")
    cmd("list", "list leases", lease)

    member = cmd("member", "member verbs").add_subparsers(dest="member_verb", required=True)
    cmd("list", "list members", member)
    p = cmd("add", "add a member", member)
    p.add_argument("name")
    p.add_argument("--peer-urls", required=True)
    p.add_argument("--learner", action="store_true")
    p = cmd("remove", "remove a member", member)
    p.add_argument("id", type=hex_id)
    p = cmd("update", "update a member's peer URLs", member)
    p.add_argument("id", type=hex_id)
    p.add_argument("--peer-urls", required=True)
    p = cmd("promote", "promote a learner", member)
    p.add_argument("id", type=hex_id)

    ep = cmd("endpoint", "endpoint verbs").add_subparsers(dest="endpoint_verb", required=True)
    for name in ("status", "health"):
        p = cmd(name, f"endpoint {name}", ep)
        p.add_argument("--cluster", action="store_true",
                       help="use every member's client URLs from member list")

    p = cmd("move-leader", "transfer leadership to a member")
    p.add_argument("target", type=hex_id)

    snap = cmd("snapshot", "snapshot verbs").add_subparsers(dest="snapshot_verb", required=True)
    p = cmd("save", "stream a snapshot of one member to a file", snap)
    p.add_argument("file")

    fp = cmd("failpoint", "failpoints (raftnode)").add_subparsers(dest="fp_verb", required=True)
    p = cmd("set", "arm a failpoint on every endpoint", fp)
    p.add_argument("name")
    p.add_argument("term", help="gofail term, e.g. 'sleep(500)', 'return(\"EIO\")', '2*panic'")
    for name in ("get", "clear"):
        p = cmd(name, f"{name} a failpoint on every endpoint", fp)
        p.add_argument("name")
    cmd("list", "list armed failpoints on every endpoint", fp)
    return root


def resolve_endpoints(args: argparse.Namespace) -> list[str]:
    if args.endpoints:
        return [e for e in args.endpoints.split(",") if e.strip()]
    if args.cluster_file:
        return clusterfile.load(args.cluster_file).endpoints
    for var in ("RAFTCTL_ENDPOINTS", "ETCDCTL_ENDPOINTS"):
        if os.environ.get(var):
            return [e for e in os.environ[var].split(",") if e.strip()]
    return ["127.0.0.1:2379"]


class Runner:
    def __init__(self, args: argparse.Namespace, client: Client, endpoints: list[str]) -> None:
        self.a = args
        self.c = client
        self.eps = endpoints
        self.json = args.write_out == "json"
        self.table = args.write_out == "table"

    async def run(self) -> int:
        fn = getattr(self, "do_" + self.a.verb.replace("-", "_"))
        rc: int = await fn()
        return rc

    async def do_put(self) -> int:
        value = self.a.value
        if value is None:
            value = "" if self.a.ignore_value else sys.stdin.read()
        r = await self.c.put(self.a.key, value, lease=self.a.lease, prev_kv=self.a.prev_kv,
                             ignore_value=self.a.ignore_value, ignore_lease=self.a.ignore_lease)
        if self.json:
            _json(P.put_json(r))
        else:
            _out("OK")
            if r.prev_kv is not None:
                for line in P.kv_lines(r.prev_kv):
                    _out(line)
        return 0

    async def do_get(self) -> int:
        a = self.a
        sort_target = {None: "KEY", "MODIFY": "MOD"}.get(a.sort_by, a.sort_by)
        order = a.order or ("ASCEND" if a.sort_by else "NONE")
        r = await self.c.get(a.key, a.range_end, prefix=a.prefix, from_key=a.from_key,
                             revision=a.rev, limit=a.limit, keys_only=a.keys_only,
                             count_only=a.count_only, serializable=a.consistency == "s",
                             sort_order=order, sort_target=sort_target)
        if self.json:
            _json(P.range_json(r))
        elif self.table:
            rows = [[kv.key.decode("utf-8", "replace"), kv.value.decode("utf-8", "replace"),
                     str(kv.create_revision), str(kv.mod_revision), str(kv.version),
                     f"{kv.lease:x}" if kv.lease else ""] for kv in r.kvs]
            _out(P.table(["KEY", "VALUE", "CREATE REV", "MOD REV", "VERSION", "LEASE"], rows,
                         align_right=False))
        elif a.count_only:
            _out(str(r.count))
        else:
            for line in P.range_simple(r, value_only=a.print_value_only):
                _out(line)
        return 0

    async def do_del(self) -> int:
        a = self.a
        r = await self.c.delete(a.key, a.range_end, prefix=a.prefix, from_key=a.from_key,
                                prev_kv=a.prev_kv)
        if self.json:
            _json(P.delete_json(r))
        else:
            _out(str(r.deleted))
            for kv in r.prev_kvs:
                for line in P.kv_lines(kv):
                    _out(line)
        return 0

    async def do_txn(self) -> int:
        if self.a.file:
            with open(self.a.file) as f:
                text = f.read()
        elif self.a.interactive:
            text = _interactive_txn()
        else:
            text = sys.stdin.read()
        r = await self.c.commit(parse_txn(text.splitlines()))
        if self.json:
            _json(P.txn_json(r))
        else:
            for line in P.txn_simple(r):
                _out(line)
        return 0

    async def do_compaction(self) -> int:
        h = await self.c.compact(self.a.revision, physical=self.a.physical)
        if self.json:
            _json({"header": P.header_json(h)})
        else:
            _out(f"compacted revision {self.a.revision}")
        return 0

    async def do_watch(self) -> int:
        a = self.a
        w = self.c.watch(a.key, a.range_end, prefix=a.prefix, start_revision=a.rev,
                         prev_kv=a.prev_kv)
        seen = 0
        async with w:
            async for batch in w.batches():
                if self.json:
                    _json(P.watch_json(batch.header, batch.events))
                else:
                    for ev in batch.events:
                        for line in P.event_simple(ev):
                            _out(line)
                sys.stdout.flush()
                seen += len(batch.events)
                if a.max_events and seen >= a.max_events:
                    break
        return 0

    async def do_lease(self) -> int:
        a, v = self.a, self.a.lease_verb
        if v == "grant":
            r = await self.c.lease_grant(a.ttl)
            if self.json:
                _json(P.lease_grant_json(r))
            else:
                _out(f"lease {r.id:016x} granted with TTL({r.ttl}s)")
        elif v == "revoke":
            h = await self.c.lease_revoke(a.id)
            if self.json:
                _json({"header": P.header_json(h)})
            else:
                _out(f"lease {a.id:016x} revoked")
        elif v == "timetolive":
            t = await self.c.lease_time_to_live(a.id, keys=a.keys)
            if self.json:
                _json(P.lease_ttl_json(t))
            elif t.ttl == -1 and t.granted_ttl == 0:
                _out(f"lease {a.id:016x} already expired")
            else:
                line = f"lease {a.id:016x} granted with TTL({t.granted_ttl}s), remaining({t.ttl}s)"
                if a.keys:
                    keys = " ".join(k.decode("utf-8", "replace") for k in t.keys)
                    line += f", attached keys([{keys}])"
                _out(line)
        elif v == "list":
            ids = await self.c.lease_leases()
            if self.json:
                _json({"leases": [{"id": i} for i in ids]})
            else:
                _out(f"found {len(ids)} leases")
                for i in ids:
                    _out(f"{i:016x}")
        else:
            return await self._keep_alive()
        return 0

    async def _keep_alive(self) -> int:
        lease_id = self.a.id
        while True:
            st = await self.c.status() if self.json else None
            try:
                ttl = await self.c.lease_keepalive_once(lease_id)
            except EtcdError as e:
                if "lease not found" not in e.message:
                    raise
                _out(f"lease {lease_id:016x} expired or revoked.")
                return 0
            if st is not None:
                _json({**P.header_json(st.header), "ID": lease_id, "TTL": ttl})
            else:
                _out(f"lease {lease_id:016x} keepalived with TTL({ttl})")
            sys.stdout.flush()
            if self.a.once:
                return 0
            await asyncio.sleep(max(ttl / 3, 0.5))

    async def do_member(self) -> int:
        a, v = self.a, self.a.member_verb
        if v == "list":
            r = await self.c.member_list()
            if self.json:
                _json(P.members_json(r))
            elif self.table:
                _out(P.table(P.MEMBER_HEADER, [P.member_row(m) for m in r.members]))
            else:
                for m in r.members:
                    _out(", ".join(P.member_row(m)))
            return 0
        if v == "add":
            urls = [u for u in a.peer_urls.split(",") if u]
            r = await self.c.member_add(urls, is_learner=a.learner)
            if self.json:
                _json(P.members_json(r))
                return 0
            assert r.member is not None
            how = " as learner " if r.member.is_learner else " "
            _out(f"Member {r.member.id:16x} added{how}to cluster {r.header.cluster_id:16x}")
            parts = []
            for m in r.members:
                name = a.name if m.id == r.member.id else m.name
                parts += [f"{name}={u}" for u in m.peer_urls if name]
            _out("")
            _out(f'ETCD_NAME="{a.name}"')
            _out(f'ETCD_INITIAL_CLUSTER="{",".join(parts)}"')
            _out(f'ETCD_INITIAL_ADVERTISE_PEER_URLS="{",".join(urls)}"')
            _out('ETCD_INITIAL_CLUSTER_STATE="existing"')
            return 0
        if v == "remove":
            r = await self.c.member_remove(a.id)
            what = "removed from"
        elif v == "update":
            r = await self.c.member_update(a.id, [u for u in a.peer_urls.split(",") if u])
            what = "updated in"
        else:
            r = await self.c.member_promote(a.id)
            what = "promoted in"
        if self.json:
            _json(P.members_json(r))
        else:
            _out(f"Member {a.id:16x} {what} cluster {r.header.cluster_id:16x}")
        return 0

    async def _endpoints(self) -> list[str]:
        if getattr(self.a, "cluster", False):
            r = await self.c.member_list()
            return [u for m in r.members for u in m.client_urls]
        return self.eps

    async def do_endpoint(self) -> int:
        eps = await self._endpoints()
        if self.a.endpoint_verb == "health":
            hs = await asyncio.gather(*(self.c.health(ep) for ep in eps))
            if self.json:
                _json([{**P.health_json(h), "endpoint": ep} for ep, h in zip(eps, hs)])
            elif self.table:
                _out(P.table(["ENDPOINT", "HEALTH", "TOOK", "ERROR"],
                             [[ep, str(h.healthy).lower(), P.go_duration(h.took), h.error]
                              for ep, h in zip(eps, hs)]))
            else:
                for ep, h in zip(eps, hs):
                    if h.healthy:
                        _out(f"{ep} is healthy: successfully committed proposal: "
                             f"took = {P.go_duration(h.took)}")
                    else:
                        sys.stderr.write(f"{ep} is unhealthy: failed to commit proposal: "
                                         f"{h.error}\n")
            return 0 if all(h.healthy for h in hs) else EXIT_ERROR
        return await self._status(eps)

    async def _status(self, eps: list[str]) -> int:
        res = await asyncio.gather(*(self.c.status(ep) for ep in eps), return_exceptions=True)
        extra = await asyncio.gather(*(_extra_columns(self.c, ep) for ep in eps))
        ok: list[tuple[str, Status, dict[str, str]]] = []
        failed = 0
        for ep, r, x in zip(eps, res, extra):
            if isinstance(r, Status):
                ok.append((ep, r, x))
            elif isinstance(r, ClusterError):
                failed += 1
                sys.stderr.write(f"Failed to get the status of endpoint {ep} ({r})\n")
            else:
                raise r
        cols = [k for k in ("LEADER CHANGES", "ELECTIONS", "FSYNC P99")
                if any(k in x for _, _, x in ok)]
        if self.json:
            out = []
            for ep, st, x in ok:
                d: dict[str, Any] = {"Endpoint": ep, "Status": P.status_json(st)}
                if x:
                    d["Raftnode"] = {k.lower().replace(" ", "_"): v for k, v in x.items()}
                out.append(d)
            _json(out)
        elif self.table:
            _out(P.table(P.STATUS_HEADER + cols,
                         [P.status_row(ep, st) + [x.get(k, "") for k in cols]
                          for ep, st, x in ok]))
        else:
            for ep, st, x in ok:
                _out(", ".join(P.status_row(ep, st) + [x.get(k, "") for k in cols]))
        return EXIT_ERROR if failed else 0

    async def do_move_leader(self) -> int:
        old = await self.c.move_leader(self.a.target)
        if self.json:
            _json({"header": P.header_json(old.header)})
        else:
            _out(f"Leadership transferred from {old.header.member_id:x} to {self.a.target:x}")
        return 0

    async def do_snapshot(self) -> int:
        ep = self.eps[0] if len(self.eps) == 1 else None
        try:
            await self.c.snapshot(self.a.file, endpoint=ep)
        except OSError as e:
            _err(f"{self.a.file}: {e.strerror or e}")
            return EXIT_IO
        _out(f"Snapshot saved at {self.a.file}")
        return 0

    async def do_failpoint(self) -> int:
        v, rows = self.a.fp_verb, []
        for ep in self.eps:
            if v == "set":
                await self.c.failpoint_set(ep, self.a.name, self.a.term)
                rows.append({"endpoint": ep, "name": self.a.name, "term": self.a.term})
            elif v == "get":
                rows.append({"endpoint": ep, "name": self.a.name,
                             "term": await self.c.failpoint_get(ep, self.a.name)})
            elif v == "clear":
                await self.c.failpoint_clear(ep, self.a.name)
                rows.append({"endpoint": ep, "name": self.a.name, "term": ""})
            else:
                for name, term in (await self.c.failpoint_list(ep)).items():
                    rows.append({"endpoint": ep, "name": name, "term": term})
        if self.json:
            _json(rows)
        else:
            for r in rows:
                _out(f"{r['endpoint']}, {r['name']}, {r['term']}" if v != "clear"
                     else f"{r['endpoint']}, {r['name']} cleared")
        return 0


async def _extra_columns(c: Client, ep: str) -> dict[str, str]:
    """raftnode's extra status columns from /metrics; empty where the member has none."""
    try:
        samples = await c.metrics(ep)
    except ClusterError:
        return {}
    out: dict[str, str] = {}
    changes = metrics.total(samples, metrics.LEADER_CHANGES)
    if changes is not None:
        out["LEADER CHANGES"] = f"{changes:.0f}"
    elections = metrics.total(samples, metrics.ELECTIONS)
    if elections is not None:
        out["ELECTIONS"] = f"{elections:.0f}"
    p99 = metrics.quantile(samples, metrics.FSYNC, 0.99)
    if p99 is not None:
        out["FSYNC P99"] = "+Inf" if p99 == float("inf") else P.go_duration(p99)
    return out


def _interactive_txn() -> str:
    prompts = ["compares:", "success requests (get, put, del):",
               "failure requests (get, put, del):"]
    lines: list[str] = []
    for prompt in prompts:
        _out(prompt)
        sys.stdout.flush()
        while True:
            line = sys.stdin.readline()
            if not line or not line.strip():
                break
            lines.append(line.rstrip("\n"))
        lines.append("")
        if not line:
            break
    _out("")
    return "\n".join(lines)


def _err(msg: str) -> None:
    sys.stderr.write(f"Error: {msg}\n")


def _fail(code: int, msg: str) -> NoReturn:
    _err(msg)
    raise SystemExit(code)


async def _main(args: argparse.Namespace) -> int:
    try:
        eps = resolve_endpoints(args)
    except clusterfile.ClusterFileError as e:
        _fail(EXIT_INVALID_INPUT, str(e))
    try:
        client = Client(eps, timeout=args.command_timeout, connect_timeout=args.dial_timeout)
    except ValueError as e:
        _fail(EXIT_INVALID_INPUT, str(e))
    async with client:
        return await Runner(args, client, eps).run()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        rc = asyncio.run(_main(args))
    except KeyboardInterrupt:
        return 0 if args.verb in ("watch", "lease") else 130
    except (TxnSyntaxError, ValueError) as e:
        _fail(EXIT_INVALID_INPUT, str(e))
    except Unsupported as e:
        _fail(EXIT_BAD_FEATURE, str(e))
    except (Unavailable, Timeout) as e:
        _fail(EXIT_BAD_CONNECTION, str(e))
    except IndeterminateError as e:
        _fail(EXIT_ERROR, f"{e} (outcome unknown: the request may or may not have applied)")
    except ClusterError as e:
        _fail(EXIT_ERROR, str(e))
    except OSError as e:
        _fail(EXIT_IO, str(e))
    return rc


if __name__ == "__main__":
    sys.exit(main())
