"""Histories: what clients asked, when, and what they learned (Jepsen's invoke/complete events).

A history is an append-only list of events. Every operation has one ``invoke`` event and at
most one completion: ``ok`` (it took effect, with its result), ``fail`` (it certainly did not
take effect) or ``info`` (unknown: it may take effect at any time after its invocation, or
never). An operation without completion (the run ended first) is treated as ``info``.
Timestamps are ``time.monotonic_ns()`` of the recording process, so real-time order between
operations of different client tasks is meaningful.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INVOKE, OK, FAIL, INFO = "invoke", "ok", "fail", "info"
OUTCOMES = (OK, FAIL, INFO)
# Return time of an operation whose outcome is unknown: after every real event (Porcupine #8).
NEVER = 1 << 62

Value = Any  # JSON-able: str, int, list[int], bool, [old, new], None


class HistoryError(ValueError):
    """A history (file or events) is malformed: a completion without invoke, bad JSON, ..."""


@dataclass(slots=True, frozen=True)
class Event:
    """One line of a history: ``type`` is invoke, ok, fail or info."""

    type: str
    process: int
    f: str  # read, write, cas, append, or a nemesis action
    key: str
    value: Value
    time: int  # monotonic ns
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        d = {"type": self.type, "process": self.process, "f": self.f, "key": self.key,
             "value": self.value, "time": self.time}
        if self.error:
            d["error"] = self.error
        return d

    @classmethod
    def from_json(cls, d: Any, where: str = "event") -> Event:
        if not isinstance(d, dict):
            raise HistoryError(f"{where}: not an object")
        try:
            ev = cls(str(d["type"]), int(d["process"]), str(d["f"]), str(d["key"]),
                     d.get("value"), int(d["time"]), str(d.get("error", "")))
        except (KeyError, TypeError, ValueError) as e:
            raise HistoryError(f"{where}: {e!r}") from e
        if ev.type not in (INVOKE, *OUTCOMES):
            raise HistoryError(f"{where}: unknown event type {ev.type!r}")
        return ev


@dataclass(slots=True, frozen=True)
class Op:
    """An invocation paired with its completion; ``ret`` is NEVER for info ops.

    ``value`` is what was asked (write value, [old, new] of a cas, appended element) and
    ``result`` what came back (the value read, whether a cas succeeded, a list read).
    """

    id: int
    process: int
    f: str
    key: str
    value: Value
    result: Value
    outcome: str
    call: int
    ret: int
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.outcome == OK

    @property
    def info(self) -> bool:
        return self.outcome == INFO


@dataclass(slots=True)
class History:
    """An append-only, single-event-loop recorder; `ops()` pairs the events up."""

    events: list[Event] = field(default_factory=list)

    def invoke(self, process: int, f: str, key: str, value: Value, time: int) -> None:
        self.events.append(Event(INVOKE, process, f, key, value, time))

    def complete(self, process: int, outcome: str, f: str, key: str, result: Value,
                 time: int, error: str = "") -> None:
        assert outcome in OUTCOMES, outcome
        self.events.append(Event(outcome, process, f, key, result, time, error))

    def extend(self, events: Iterable[Event]) -> None:
        self.events.extend(events)

    def ops(self) -> list[Op]:
        return pair(self.events)

    def to_json(self) -> list[dict[str, Any]]:
        return [e.to_json() for e in self.events]

    def save(self, path: Path) -> None:
        """One JSON event per line (easy to grep, diff and stream)."""
        with open(path, "w") as f:
            for e in self.events:
                f.write(json.dumps(e.to_json(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: Path) -> History:
        events = []
        try:
            lines = path.read_text().splitlines()
        except OSError as e:
            raise HistoryError(f"{path}: {e.strerror}") from e
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as e:
                raise HistoryError(f"{path}:{n}: not JSON: {e}") from e
            events.append(Event.from_json(raw, f"{path}:{n}"))
        h = cls(events)
        h.ops()  # validate pairing now, with a clear error
        return h


def pair(events: Iterable[Event]) -> list[Op]:
    """Operations in invocation order. A process has at most one pending operation."""
    pending: dict[int, tuple[int, Event]] = {}
    done: dict[int, Op] = {}
    order: list[int] = []
    for n, e in enumerate(events):
        if e.type == INVOKE:
            if e.process in pending:
                raise HistoryError(f"event {n}: process {e.process} invoked {e.f} while its "
                                   f"{pending[e.process][1].f} is still pending")
            pending[e.process] = (n, e)
            order.append(n)
            continue
        if e.process not in pending:
            raise HistoryError(f"event {n}: {e.type} of process {e.process} without invoke")
        i, inv = pending.pop(e.process)
        if e.f != inv.f or e.key != inv.key:
            raise HistoryError(f"event {n}: completion {e.f} {e.key!r} does not match "
                               f"invocation {inv.f} {inv.key!r} of process {e.process}")
        if e.time < inv.time:
            raise HistoryError(f"event {n}: completes before it was invoked")
        ret = e.time if e.type != INFO else NEVER
        done[i] = Op(i, e.process, inv.f, inv.key, inv.value, e.value, e.type, inv.time, ret,
                     e.error)
    for i, inv in pending.values():
        done[i] = Op(i, inv.process, inv.f, inv.key, inv.value, None, INFO, inv.time, NEVER,
                     "no completion recorded")
    return [done[i] for i in order]


def by_key(ops: Iterable[Op]) -> dict[str, list[Op]]:
    out: dict[str, list[Op]] = {}
    for op in ops:
        out.setdefault(op.key, []).append(op)
    return out


def iter_outcomes(ops: Iterable[Op], outcome: str) -> Iterator[Op]:
    return (op for op in ops if op.outcome == outcome)
