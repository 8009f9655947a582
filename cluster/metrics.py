"""Reading the few Prometheus metrics raftctl shows (text exposition format, no client lib)."""

from __future__ import annotations

import math
from dataclasses import dataclass

LEADER_CHANGES = "etcd_server_leader_changes_seen_total"
ELECTIONS = "raftnode_elections_started_total"
FSYNC = "etcd_disk_wal_fsync_duration_seconds"


@dataclass(slots=True, frozen=True)
class Sample:
    name: str
    labels: tuple[tuple[str, str], ...]
    value: float


def parse(text: str) -> list[Sample]:
    """Samples of a text exposition; comments and malformed lines are skipped."""
    out: list[Sample] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "{" in line:
            name, _, rest = line.partition("{")
            body, _, val = rest.rpartition("}")
            labels = []
            for part in _split_labels(body):
                k, _, v = part.partition("=")
                labels.append((k.strip(), v.strip().strip('"')))
        else:
            name, _, val = line.partition(" ")
            labels = []
        try:
            value = float(val.split()[0])
        except (IndexError, ValueError):
            continue
        out.append(Sample(name.strip(), tuple(labels), value))
    return out


def _split_labels(body: str) -> list[str]:
    parts, cur, quoted = [], "", False
    for ch in body:
        if ch == '"' and not cur.endswith("\\"):
            quoted = not quoted
        if ch == "," and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def total(samples: list[Sample], name: str) -> float | None:
    vals = [s.value for s in samples if s.name == name]
    return sum(vals) if vals else None


def quantile(samples: list[Sample], histogram: str, q: float) -> float | None:
    """Upper bound of the bucket holding quantile q (what Grafana's histogram_quantile
    interpolates; the bound is the honest answer without the raw observations)."""
    buckets: dict[float, float] = {}
    for s in samples:
        if s.name == histogram + "_bucket":
            le = dict(s.labels).get("le")
            if le is not None:
                bound = math.inf if le == "+Inf" else float(le)
                buckets[bound] = buckets.get(bound, 0.0) + s.value
    if not buckets:
        return None
    bounds = sorted(buckets)
    count = buckets[bounds[-1]]
    if count <= 0:
        return None
    rank = q * count
    for b in bounds:
        if buckets[b] >= rank:
            return b
    return bounds[-1]
