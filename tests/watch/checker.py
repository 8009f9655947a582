"""A checker for recorded watch streams, against an independent record of what was applied.

The truth is recorded by a sink chained in front of the hub's (every applied revision and
its events, as the store produced them); ``prev_kv`` is checked against a model rebuilt
from that record, not against the events' own prev_kv.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from raftnode.mvcc.messages import Event, EventType
from raftnode.mvcc.store import MVCCStore

# (revision, type, key, value, prev value or None)
Seen = tuple[int, str, bytes, bytes, bytes | None]


@dataclass
class Recorder:
    """Chained in front of the store's sink: records every applied revision."""

    store: MVCCStore
    log: list[tuple[int, list[Event]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        inner = self.store.event_sink

        def sink(rev: int, events: list[Event]) -> None:
            self.log.append((rev, list(events)))
            if inner is not None:
                inner(rev, events)
        self.store.event_sink = sink

    def expected(self, key: bytes, range_end: bytes, start: int, final: int,
                 filters: frozenset[str] = frozenset()) -> list[Seen]:
        """What a watcher on [key, range_end) from ``start`` must see up to ``final``,
        with prev values from the model (None for creations)."""
        model: dict[bytes, bytes] = {}
        out: list[Seen] = []
        for rev, events in self.log:
            before = dict(model)  # etcd reads prev_kv at revision - 1
            for e in events:
                k = e.kv.key
                if rev >= start and rev <= final and covers(k, key, range_end):
                    kind = "DELETE" if e.type is EventType.DELETE else "PUT"
                    if ("NO" + kind) not in filters:
                        out.append((rev, kind, k, e.kv.value, before.get(k)))
                if e.type is EventType.PUT:
                    model[k] = e.kv.value
                else:
                    model.pop(k, None)
        return out


def covers(k: bytes, key: bytes, range_end: bytes) -> bool:
    key = key or b"\x00"
    if not range_end:
        return k == key
    return key <= k and (range_end == b"\x00" or k < range_end)


def seen_from_results(results: list[dict[str, Any]], watch_id: str) -> list[Seen]:
    """Flatten one watcher's event responses, checking the per-response invariants:
    revisions never decrease, and a revision never continues in a later response (all
    events of a revision are in one response; none is delivered twice)."""
    out: list[Seen] = []
    last = 0
    for r in results:
        if r.get("watch_id", "0") != watch_id or "events" not in r:
            continue
        first = True
        for e in r["events"]:
            kv = e["kv"]
            rev = int(kv["mod_revision"])
            if first:
                assert rev > last, f"revision {rev} after {last}: split, repeated or reordered"
                first = False
            assert rev >= last, f"revision {rev} after {last} within a response"
            last = rev
            prev = e.get("prev_kv")
            out.append((rev, e.get("type", "PUT"), base64.b64decode(kv["key"]),
                        base64.b64decode(kv.get("value", "")),
                        None if prev is None else base64.b64decode(prev.get("value", ""))))
    return out


def check(seen: list[Seen], want: list[Seen]) -> None:
    """Same events, same order: no gap, no duplicate, prev values right."""
    if seen == want:
        return
    for i, (a, b) in enumerate(zip(seen, want)):
        assert a == b, f"event {i}: saw {a}, expected {b}"
    raise AssertionError(f"saw {len(seen)} events, expected {len(want)}: "
                         f"first extra/missing {seen[len(want):][:1] or want[len(seen):][:1]}")
