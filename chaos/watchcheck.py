"""Watches under faults: every watcher must see exactly the key space's history, in order.

Watchers (one preferring each member) watch the run's key prefix from the revision at which
the run began, across member failures (the client resumes a broken watch on another member
from the next revision it owes). After healing, a fresh watch from the same start revision,
read up to the last revision written, is the reference log. Each watcher's events must be
that log, in order, without a duplicate or a gap, up to the final revision.

What the client library already absorbs is not seen here: it drops events below the
revision it expects (a duplicate the server resent after a reconnect never reaches us). What
reaches the application is what is checked.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from chaos.result import INVALID, UNKNOWN, VALID, CheckResult
from cluster.client import Client
from cluster.errors import ClusterError, EtcdError, Unsupported
from cluster.watch import Watch

WEvent = tuple[int, str, str, str]  # (mod_revision, PUT|DELETE, key, value)
UNIMPLEMENTED = 12  # gRPC code of a route a member does not serve
NOT_OFFERED = "watch not offered by the members"


class WatchNotOffered(ClusterError):
    """The members refuse to serve watches at all (not a fault: nothing to check)."""


@dataclass(slots=True)
class WatchRecorder:
    endpoints: Sequence[str]
    prefix: str
    start_revision: int
    events: list[WEvent] = field(default_factory=list)
    error: str = ""
    not_offered: bool = False
    _watch: Watch | None = field(default=None, init=False, repr=False)

    @property
    def last_revision(self) -> int:
        return self.events[-1][0] if self.events else 0

    async def run(self) -> None:
        """Record until closed; a failure ends the recording and is kept in `error`."""
        try:
            async with Client(list(self.endpoints), timeout=2.0, connect_timeout=0.5) as c:
                w = c.watch(self.prefix, prefix=True, start_revision=self.start_revision,
                            reconnect_timeout=60.0)
                self._watch = w
                async with w:
                    async for ev in w:
                        self.events.append((ev.kv.mod_revision, ev.type,
                                            ev.kv.key.decode("utf-8", "replace"),
                                            ev.kv.value.decode("utf-8", "replace")))
        except (ClusterError, AssertionError) as e:  # the client asserts revision order
            self.error = f"{type(e).__name__}: {e}"
            self.not_offered = isinstance(e, Unsupported) or (
                isinstance(e, EtcdError) and e.code == UNIMPLEMENTED)

    async def close(self) -> None:
        if self._watch is not None:
            await self._watch.close()


@dataclass(slots=True)
class WatchSet:
    """The watchers of one run: `start()` before the workload, `finish()` after healing."""

    endpoints: Sequence[str]
    prefix: str
    recorders: list[WatchRecorder] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    start_revision: int = 0

    async def start(self) -> None:
        async with Client(list(self.endpoints), timeout=3.0) as c:
            self.start_revision = (await c.status()).header.revision + 1
        eps = list(self.endpoints)
        for i in range(len(eps)):
            rec = WatchRecorder(eps[i:] + eps[:i], self.prefix, self.start_revision)
            self.recorders.append(rec)
            self.tasks.append(asyncio.create_task(rec.run()))

    async def finish(self, *, catch_up: float = 15.0) -> CheckResult:
        """Wait for the watchers to reach the last revision written, stop them, check."""
        try:
            async with Client(list(self.endpoints), timeout=3.0) as c:
                r = await c.get(self.prefix, prefix=True)
            target = max((kv.mod_revision for kv in r.kvs), default=0)
            reference = await _reference(self.endpoints, self.prefix, self.start_revision,
                                         target, catch_up)
        except WatchNotOffered as e:
            await self._stop()
            return CheckResult("watch", UNKNOWN, f"{NOT_OFFERED}: {e}")
        except ClusterError as e:
            await self._stop()
            return CheckResult("watch", UNKNOWN, f"no reference log: {e}")
        deadline = time.monotonic() + catch_up
        while time.monotonic() < deadline and any(
                rec.last_revision < target and not rec.error for rec in self.recorders):
            await asyncio.sleep(0.1)
        await self._stop()
        current = {kv.key.decode("utf-8", "replace"): kv.value.decode("utf-8", "replace")
                   for kv in r.kvs}
        return check(reference, target, [(f"watcher{i}", rec.events, rec.error)
                                         for i, rec in enumerate(self.recorders)],
                     current=current)

    async def _stop(self) -> None:
        for rec in self.recorders:
            await rec.close()
        for t in self.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                try:
                    await asyncio.wait_for(t, 5.0)
                except TimeoutError:
                    t.cancel()


async def _reference(endpoints: Sequence[str], prefix: str, start: int, target: int,
                     timeout: float) -> list[WEvent]:
    if target < start:
        return []
    rec = WatchRecorder(endpoints, prefix, start)
    task = asyncio.create_task(rec.run())
    deadline = time.monotonic() + timeout
    while rec.last_revision < target and not rec.error and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    await rec.close()
    await asyncio.wait_for(task, 5.0)
    if rec.not_offered:
        raise WatchNotOffered(rec.error)
    if rec.error or rec.last_revision < target:
        raise ClusterError(f"reference watch reached revision {rec.last_revision} of "
                           f"{target}: {rec.error or 'timed out'}")
    return rec.events


def check(reference: Sequence[WEvent], target: int,
          watchers: Sequence[tuple[str, Sequence[WEvent], str]], *,
          current: Mapping[str, str] | None = None) -> CheckResult:
    """Each watcher's events must equal the reference log, in order, through `target`; the
    reference itself must end in the key space's `current` values (a range read)."""
    anomalies: list[dict[str, Any]] = []
    ref = [e for e in reference if e[0] <= target]
    revs = [e[0] for e in ref]
    if revs != sorted(set(revs)):
        anomalies.append({"type": "reference-out-of-order", "revisions": revs[:50]})
    if current is not None:
        last: dict[str, str] = {}
        for _, typ, key, val in ref:
            if typ == "DELETE":
                last.pop(key, None)
            else:
                last[key] = val
        if last != dict(current):
            anomalies.append({"type": "reference-disagrees-with-range",
                              "from_watch": last, "from_range": dict(current)})
    by_rev: Mapping[int, WEvent] = {e[0]: e for e in ref}
    for name, events, error in watchers:
        if error:
            anomalies.append({"type": "watch-error", "watcher": name, "error": error})
        seen = [e for e in events if e[0] <= target]
        bad = next((i for i in range(1, len(seen)) if seen[i][0] <= seen[i - 1][0]), None)
        if bad is not None:
            kind = "duplicate" if seen[bad][0] == seen[bad - 1][0] else "out-of-order"
            anomalies.append({"type": f"watch-{kind}", "watcher": name,
                              "previous": list(seen[bad - 1]), "event": list(seen[bad])})
            continue
        for i, ev in enumerate(seen):
            expected = ref[i] if i < len(ref) else None
            if expected != ev:
                if ev[0] in by_rev and by_rev[ev[0]] != ev:
                    kind = "wrong-event"
                elif expected is not None and expected[0] < ev[0]:
                    kind = "gap"
                else:
                    kind = "unknown-event"
                anomalies.append({"type": f"watch-{kind}", "watcher": name, "index": i,
                                  "expected": list(expected) if expected else None,
                                  "got": list(ev)})
                break
        else:
            if len(seen) < len(ref) and not error:
                anomalies.append({"type": "watch-incomplete", "watcher": name,
                                  "delivered": len(seen), "expected": len(ref),
                                  "last_revision": seen[-1][0] if seen else None})
    stats = {"watchers": len(watchers), "events": len(ref), "target_revision": target}
    if anomalies:
        return CheckResult("watch", INVALID, f"{len(anomalies)} watch anomalies: "
                           + ", ".join(sorted({a['type'] for a in anomalies})),
                           tuple(anomalies[:10]), stats)
    return CheckResult("watch", VALID, f"{len(watchers)} watchers saw all {len(ref)} events "
                       "in order", (), stats)
