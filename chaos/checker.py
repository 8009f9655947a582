"""Checkers beyond linearizability: lost acknowledged writes, replica convergence, and the
dispatch that runs the right set for a workload.

- `lost_writes`: the final value of every register key must be written by an operation that
  may be the last one to take effect: an acknowledged write that no acknowledged write
  followed in real time, or any indeterminate write. For the append workload the
  same property is part of `appendcheck` (every acknowledged append is in the final list).
- `convergence`: once the cluster is quiet, every member has the same revision and the same
  key-value hash there (HashKV; where a member lacks the route, as etcd 3.4's gateway does,
  a digest of a serializable range read of every key at that revision on each member).
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chaos import appendcheck, linearizable
from chaos.history import INFO, OK, Op, by_key
from chaos.linearizable import describe
from chaos.result import INVALID, UNKNOWN, VALID, CheckResult
from cluster.client import Client
from cluster.errors import ClusterError, Unsupported
from cluster.types import Status


def _writes(ops: Iterable[Op]) -> list[Op]:
    """Ops that may have written: acknowledged writes, successful cas, and unknown ones."""
    out = []
    for op in ops:
        wrote = op.outcome == INFO or (op.outcome == OK and (op.f == "write"
                                                              or op.result is True))
        if op.f in ("write", "cas") and wrote:
            out.append(op)
    return out


def _written(op: Op) -> Any:
    return op.value[1] if op.f == "cas" else op.value


def lost_writes(ops: Iterable[Op], final: Mapping[str, Any], *,
                initial: Any = None) -> CheckResult:
    """Register keys: is the final value one that a possibly-last write wrote?"""
    anomalies: list[dict[str, Any]] = []
    parts = by_key(ops)
    for key in sorted(set(parts) | set(final)):
        if key not in final:
            continue
        ws = _writes(parts.get(key, []))
        acked = [w for w in ws if w.outcome == OK]
        # w can be last iff no acknowledged write began after w was acknowledged
        latest_call = max((w.call for w in acked), default=-1)
        candidates = [w for w in ws if w.outcome == INFO or w.ret >= latest_call]
        allowed = {_written(w) for w in candidates}
        if not acked:
            allowed.add(initial)
        got = final[key]
        if got not in allowed:
            last = max(acked, key=lambda w: w.ret, default=None)
            where = [_written(w) for w in ws]
            anomalies.append({
                "type": "lost-write" if got in where or got == initial else "phantom-value",
                "key": key, "final": got, "may_be_last": sorted(map(str, allowed))[:10],
                "last_acknowledged": describe(last) if last else None})
    stats = {"keys": len(final)}
    if anomalies:
        return CheckResult("lost-writes", INVALID,
                           f"{len(anomalies)} key(s) lost an acknowledged write",
                           tuple(anomalies), stats)
    return CheckResult("lost-writes", VALID, "every key ends with a write that may be last",
                       (), stats)


def check_workload(kind: str, ops: Sequence[Op], final: Mapping[str, Any]) -> \
        list[CheckResult]:
    """The checkers that apply to a workload's history and its final reads."""
    if kind == "register":
        return [linearizable.check(ops), lost_writes(ops, final)]
    if kind == "append":
        return [appendcheck.check(ops, final)]
    raise ValueError(f"unknown workload kind {kind!r}")


# ---- convergence -------------------------------------------------------------------------

async def _quiet_revision(endpoints: Sequence[str], timeout: float) -> dict[str, Status]:
    """Wait until every member answers status with one revision and applied index."""
    deadline = time.monotonic() + timeout
    last: dict[str, Status] = {}
    async with Client(endpoints, timeout=1.0, connect_timeout=0.5) as c:
        while True:
            got = await c.statuses()
            last = {s.endpoint: s for s in got if isinstance(s, Status)}
            if len(last) == len(endpoints) \
                    and len({s.header.revision for s in last.values()}) == 1 \
                    and len({s.raft_applied_index for s in last.values()}) == 1:
                return last
            if time.monotonic() >= deadline:
                return last
            await asyncio.sleep(0.1)


async def _range_digest(endpoint: str, revision: int) -> str:
    async with Client([endpoint], timeout=3.0) as c:
        r = await c.get(b"\x00", from_key=True, revision=revision, serializable=True)
    h = hashlib.sha256()
    for kv in r.kvs:
        for part in (kv.key, kv.value, str(kv.create_revision).encode(),
                     str(kv.mod_revision).encode(), str(kv.version).encode()):
            h.update(len(part).to_bytes(4, "big"))
            h.update(part)
    return h.hexdigest()


async def convergence(endpoints: Sequence[str], *, timeout: float = 20.0) -> CheckResult:
    """All members at the same revision with the same key-value hash."""
    statuses = await _quiet_revision(endpoints, timeout)
    revs = {ep: s.header.revision for ep, s in statuses.items()}
    missing = [ep for ep in endpoints if ep not in statuses]
    if missing:
        return CheckResult("convergence", UNKNOWN, f"members not answering: {missing}",
                           (), {"revisions": revs})
    if len(set(revs.values())) != 1:
        return CheckResult("convergence", INVALID,
                           f"members did not reach one revision in {timeout:.0f}s",
                           ({"type": "revision-divergence", "revisions": revs},),
                           {"revisions": revs})
    rev = next(iter(revs.values()))
    hashes: dict[str, str] = {}
    method = "hashkv"
    try:
        async with Client(list(endpoints), timeout=3.0) as c:
            for ep in endpoints:
                hashes[ep] = str((await c.hashkv(ep, rev)).hash)
    except Unsupported:
        method = "range-digest"
        hashes = {ep: await _range_digest(ep, rev) for ep in endpoints}
    except ClusterError as e:
        return CheckResult("convergence", UNKNOWN, f"hash failed: {e}", (),
                           {"revision": rev})
    stats = {"revision": rev, "method": method, "hashes": hashes}
    if len(set(hashes.values())) != 1:
        return CheckResult("convergence", INVALID,
                           f"members disagree on the key-value state at revision {rev}",
                           ({"type": "hash-divergence", "revision": rev, "hashes": hashes},),
                           stats)
    return CheckResult("convergence", VALID,
                       f"{len(endpoints)} members agree at revision {rev} ({method})", (),
                       stats)
