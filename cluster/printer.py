"""etcdctl's output styles for raftctl: simple, json (Go encoding/json of etcd's structs:
int64 as JSON numbers, bytes as base64) and table (tablewriter's ASCII boxes)."""

from __future__ import annotations

import base64
import math
from collections.abc import Sequence
from typing import Any

from cluster.types import (
    DeleteResult,
    Event,
    Health,
    KeyValue,
    LeaseGrant,
    LeaseTimeToLive,
    Member,
    MemberListResult,
    PutResult,
    RangeResult,
    ResponseHeader,
    Status,
    TxnResult,
)

Json = dict[str, Any]


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def _omit(d: Json) -> Json:
    """Go's `omitempty`: drop zero values."""
    return {k: v for k, v in d.items() if v not in (0, "", False, None, [], {})}


# ---- json (etcdctl -w json) ----------------------------------------------------------------

def header_json(h: ResponseHeader) -> Json:
    return _omit({"cluster_id": h.cluster_id, "member_id": h.member_id,
                  "revision": h.revision, "raft_term": h.raft_term})


def kv_json(kv: KeyValue) -> Json:
    return _omit({"key": _b64(kv.key), "create_revision": kv.create_revision,
                  "mod_revision": kv.mod_revision, "version": kv.version,
                  "value": _b64(kv.value) if kv.value else "", "lease": kv.lease})


def range_json(r: RangeResult) -> Json:
    return _omit({"header": header_json(r.header), "kvs": [kv_json(kv) for kv in r.kvs],
                  "more": r.more, "count": r.count})


def put_json(r: PutResult) -> Json:
    return _omit({"header": header_json(r.header),
                  "prev_kv": kv_json(r.prev_kv) if r.prev_kv else None})


def delete_json(r: DeleteResult) -> Json:
    return _omit({"header": header_json(r.header), "deleted": r.deleted,
                  "prev_kvs": [kv_json(kv) for kv in r.prev_kvs]})


def txn_json(r: TxnResult) -> Json:
    ops = []
    for op in r.responses:
        if isinstance(op, RangeResult):
            ops.append({"Response": {"ResponseRange": range_json(op)}})
        elif isinstance(op, PutResult):
            ops.append({"Response": {"ResponsePut": put_json(op)}})
        elif isinstance(op, DeleteResult):
            ops.append({"Response": {"ResponseDeleteRange": delete_json(op)}})
        else:
            ops.append({"Response": {"ResponseTxn": txn_json(op)}})
    return _omit({"header": header_json(r.header), "succeeded": r.succeeded, "responses": ops})


def event_json(ev: Event) -> Json:
    return _omit({"type": 1 if ev.type == "DELETE" else 0, "kv": kv_json(ev.kv),
                  "prev_kv": kv_json(ev.prev_kv) if ev.prev_kv else None})


def watch_json(header: ResponseHeader, events: Sequence[Event]) -> Json:
    return {"Header": header_json(header), "Events": [event_json(e) for e in events],
            "CompactRevision": 0, "Canceled": False, "Created": False}


def lease_grant_json(r: LeaseGrant) -> Json:
    return {**header_json(r.header), "ID": r.id, "TTL": r.ttl, "Error": ""}


def lease_ttl_json(r: LeaseTimeToLive) -> Json:
    return {**header_json(r.header), "id": r.id, "ttl": r.ttl, "granted-ttl": r.granted_ttl,
            "keys": [_b64(k) for k in r.keys] or None}


def member_json(m: Member) -> Json:
    return _omit({"ID": m.id, "name": m.name, "peerURLs": list(m.peer_urls),
                  "clientURLs": list(m.client_urls), "isLearner": m.is_learner})


def members_json(r: MemberListResult) -> Json:
    return _omit({"header": header_json(r.header),
                  "member": member_json(r.member) if r.member else None,
                  "members": [member_json(m) for m in r.members]})


def status_json(st: Status) -> Json:
    return _omit({"header": header_json(st.header), "version": st.version,
                  "dbSize": st.db_size, "leader": st.leader, "raftIndex": st.raft_index,
                  "raftTerm": st.raft_term, "raftAppliedIndex": st.raft_applied_index,
                  "errors": list(st.errors), "dbSizeInUse": st.db_size_in_use,
                  "isLearner": st.is_learner})


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String() for the magnitudes a request takes."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.3f}".rstrip("0").rstrip(".") + "µs"
    if seconds < 1:
        return f"{seconds * 1e3:.6f}".rstrip("0").rstrip(".") + "ms"
    return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"


def health_json(h: Health) -> Json:
    d: Json = {"endpoint": h.endpoint, "health": h.healthy, "took": go_duration(h.took)}
    if h.error:
        d["error"] = h.error
    return d


# ---- simple (etcdctl's default) ------------------------------------------------------------

def kv_lines(kv: KeyValue, *, value_only: bool = False) -> list[str]:
    k, v = kv.key.decode("utf-8", "replace"), kv.value.decode("utf-8", "replace")
    return [v] if value_only else [k, v]


def range_simple(r: RangeResult, *, value_only: bool = False) -> list[str]:
    return [line for kv in r.kvs for line in kv_lines(kv, value_only=value_only)]


def txn_simple(r: TxnResult) -> list[str]:
    out = ["SUCCESS" if r.succeeded else "FAILURE"]
    for op in r.responses:
        out.append("")
        if isinstance(op, RangeResult):
            out += range_simple(op)
        elif isinstance(op, PutResult):
            out.append("OK")
        elif isinstance(op, DeleteResult):
            out.append(str(op.deleted))
        else:
            out += txn_simple(op)
    return out


def event_simple(ev: Event) -> list[str]:
    out = [ev.type]
    if ev.prev_kv is not None:
        out += kv_lines(ev.prev_kv)
    return out + kv_lines(ev.kv)


def member_row(m: Member) -> list[str]:
    return [f"{m.id:x}", "started" if m.started else "unstarted", m.name,
            ",".join(m.peer_urls), ",".join(m.client_urls), str(m.is_learner).lower()]


MEMBER_HEADER = ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]
STATUS_HEADER = ["ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER",
                 "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"]


def human_bytes(n: int) -> str:
    """go-humanize's Bytes (SI units), as etcdctl prints DB SIZE."""
    if n < 10:
        return f"{n} B"
    sizes = ["B", "kB", "MB", "GB", "TB", "PB", "EB"]
    e = math.floor(math.log(n, 1000))
    val = math.floor(n / 1000 ** e * 10 + 0.5) / 10
    return f"{val:.1f} {sizes[e]}" if val < 10 else f"{val:.0f} {sizes[e]}"


def status_row(endpoint: str, st: Status) -> list[str]:
    return [endpoint, f"{st.header.member_id:x}", st.version, human_bytes(st.db_size),
            str(st.is_leader).lower(), str(st.is_learner).lower(), str(st.raft_term),
            str(st.raft_index), str(st.raft_applied_index), ", ".join(st.errors)]


# ---- table ----------------------------------------------------------------------------------

def table(header: Sequence[str], rows: Sequence[Sequence[str]], *,
          align_right: bool = True) -> str:
    """An ASCII table in tablewriter's style: centred header, one rule above and below."""
    widths = [len(h) for h in header]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def line(cells: Sequence[str], how: str) -> str:
        def fmt(c: str, w: int) -> str:
            if how == "center":
                return c.center(w)
            return c.rjust(w) if how == "right" else c.ljust(w)
        return "| " + " | ".join(fmt(c, w) for c, w in zip(cells, widths)) + " |"

    out = [rule, line(header, "center"), rule]
    out += [line(r, "right" if align_right else "left") for r in rows]
    out.append(rule)
    return "\n".join(out)
