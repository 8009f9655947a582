"""A strong, cheap checker for the list-append workload (Elle's list-append, one key at a time).

Each append adds a unique element to a key's list, through a txn that compares the key's
mod_revision, so a list only ever grows at its end. Every state of a key is therefore a
prefix of its final state, and strict serializability per key reduces to linear sweeps:

- every list read is a prefix of the final list, and no list holds an element twice;
- every element present was appended by an operation that was invoked (and did not fail);
- every acknowledged append is in the final list (no lost write);
- real time: a read sees at least what a read that finished before it began saw, and every
  append acknowledged before it began; it sees nothing appended only after it finished; two
  appends ordered in real time appear in that order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from chaos.history import FAIL, OK, Op, by_key
from chaos.linearizable import describe
from chaos.result import INVALID, UNKNOWN, VALID, CheckResult

WITNESSES_PER_KIND = 5


def witnesses(anomalies: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The first few anomalies of each kind: every kind found shows up in the report."""
    taken: Counter[str] = Counter()
    out = []
    for a in anomalies:
        if taken[a["type"]] < WITNESSES_PER_KIND:
            taken[a["type"]] += 1
            out.append(a)
    return out


def _prefix(a: Sequence[Any], b: Sequence[Any]) -> bool:
    return len(a) <= len(b) and list(a) == list(b[:len(a)])


def check(ops: Iterable[Op], final: Mapping[str, Sequence[int]]) -> CheckResult:
    """Check an append history against the final list of every key (read after healing)."""
    anomalies: list[dict[str, Any]] = []
    parts = by_key(ops)
    keys = sorted(set(parts) | set(final))
    missing_final = [k for k in keys if k not in final]
    n_reads = n_appends = 0
    for key in keys:
        kops = parts.get(key, [])
        fin = list(final.get(key, ()))
        reads = [o for o in kops if o.f == "read" and o.outcome == OK]
        appends = [o for o in kops if o.f == "append"]
        n_reads += len(reads)
        n_appends += len(appends)
        if key not in final:  # nothing to compare against: use the longest read
            lists: list[list[int]] = [o.result for o in reads if isinstance(o.result, list)]
            fin = max(lists, key=len, default=[])
        elif not isinstance(final[key], list):
            anomalies.append({"type": "corrupt-value", "key": key, "final": final[key]})
            continue
        anomalies += _check_key(key, reads, appends, fin)
    stats = {"keys": len(keys), "reads": n_reads, "appends": n_appends,
             "final_lengths": {k: len(final.get(k, ())) for k in keys}}
    if anomalies:
        counts = Counter(a["type"] for a in anomalies)
        stats["anomaly_counts"] = dict(counts)
        return CheckResult("append", INVALID,
                           ", ".join(f"{n} {t}" for t, n in sorted(counts.items())),
                           tuple(witnesses(anomalies)), stats)
    if missing_final:
        return CheckResult("append", UNKNOWN, f"no final read of keys {missing_final[:5]}",
                           (), stats)
    return CheckResult("append", VALID,
                       f"strict serializable per key ({n_appends} appends, {n_reads} reads)",
                       (), stats)


def _check_key(key: str, reads: list[Op], appends: list[Op], fin: list[int]) -> \
        list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    by_value: dict[Any, Op] = {}
    for a in appends:
        assert a.value not in by_value, f"append value {a.value!r} used twice on {key}"
        by_value[a.value] = a
    # -- shape of the lists -----------------------------------------------------------------
    if len(set(fin)) != len(fin):
        out.append({"type": "duplicate-element", "key": key, "list": fin})
    for r in reads:
        if not isinstance(r.result, list):
            out.append({"type": "corrupt-value", "key": key, "read": describe(r),
                        "detail": "the stored value is not a list of integers"})
            continue
        if len(set(r.result)) != len(r.result):
            out.append({"type": "duplicate-element", "key": key, "read": describe(r)})
        if not _prefix(r.result, fin):
            out.append({"type": "read-not-prefix-of-final", "key": key, "read": describe(r),
                        "final": fin})
    index: dict[Any, int] = {}
    for i, v in enumerate(fin):
        index.setdefault(v, i)
        src = by_value.get(v)
        if src is None:
            out.append({"type": "phantom-element", "key": key, "element": v,
                        "detail": "in the final list but never appended"})
        elif src.outcome == FAIL:
            out.append({"type": "failed-append-applied", "key": key,
                        "append": describe(src)})
    for a in appends:
        if a.outcome == OK and a.value not in index:
            out.append({"type": "lost-append", "key": key, "append": describe(a),
                        "detail": "acknowledged but absent from the final list"})
    if out:
        return out
    # -- real time (all reads are prefixes of fin from here on) -------------------------
    reads_by_call = sorted(reads, key=lambda o: o.call)
    reads_by_ret = sorted(reads, key=lambda o: o.ret)
    acked = sorted((a for a in appends if a.outcome == OK), key=lambda o: o.ret)
    j = k = 0
    seen_len, seen_by = 0, None
    acked_idx, acked_by = -1, None
    for r in reads_by_call:
        while j < len(reads_by_ret) and reads_by_ret[j].ret < r.call:
            if len(reads_by_ret[j].result) > seen_len:
                seen_len, seen_by = len(reads_by_ret[j].result), reads_by_ret[j]
            j += 1
        while k < len(acked) and acked[k].ret < r.call:
            if index[acked[k].value] > acked_idx:
                acked_idx, acked_by = index[acked[k].value], acked[k]
            k += 1
        if len(r.result) < seen_len:
            assert seen_by is not None
            out.append({"type": "nonmonotonic-read", "key": key, "earlier": describe(seen_by),
                        "later": describe(r)})
        if acked_idx >= len(r.result):
            assert acked_by is not None
            out.append({"type": "stale-read", "key": key, "acknowledged": describe(acked_by),
                        "read": describe(r),
                        "detail": "append acknowledged before the read began is missing"})
    # a read must not contain an element whose append was invoked after the read returned
    latest_call = []
    m = -1
    for v in fin:
        m = max(m, by_value[v].call)
        latest_call.append(m)
    for r in reads:
        if r.result and latest_call[len(r.result) - 1] > r.ret:
            out.append({"type": "read-from-future", "key": key, "read": describe(r)})
    # appends ordered in real time appear in that order
    present = sorted((a for a in appends if a.value in index), key=lambda o: o.call)
    done = sorted((a for a in present if a.outcome == OK), key=lambda o: o.ret)
    k = 0
    best, best_by = -1, None
    for a in present:
        while k < len(done) and done[k].ret < a.call:
            if index[done[k].value] > best:
                best, best_by = index[done[k].value], done[k]
            k += 1
        if best > index[a.value]:
            assert best_by is not None
            out.append({"type": "append-order", "key": key, "first": describe(best_by),
                        "second": describe(a),
                        "detail": "appended later in real time, but earlier in the list"})
    return out
