"""Linearizability checking (Wing & Gong / Lowe, as in Porcupine), partitioned per key.

The search walks the history as a list of call and return entries sorted by time. At a call
it tries to linearize that operation now (the model must accept it); at a return entry of an
operation not yet linearized, every choice so far failed and it backtracks. A cache of
(linearized set, model state) pairs already explored prunes the search (Lowe's
memoization), which keeps it fast on real histories.

Indeterminate (``info``) operations return at NEVER, after everything else, and the model
accepts any output for them: they may take effect at any point after their invocation, or
(linearized last) effectively never. Failed writes and reads without a result are dropped:
they constrain nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from chaos.history import FAIL, INFO, NEVER, OK, Op, by_key
from chaos.result import INVALID, UNKNOWN, VALID, CheckResult


class Model(Protocol):
    """A sequential specification: pure, with hashable states."""

    def init(self) -> Hashable: ...

    def step(self, state: Any, op: Op) -> tuple[bool, Hashable]:
        """(does the model allow op's output in this state, the state after op)."""
        ...


@dataclass(slots=True, frozen=True)
class Register:
    """An etcd key as a register: read, write (put) and cas (txn value-compare then put).

    A cas on a missing key fails, as in etcd (a value compare on an absent key is false).
    A cas result is True (it applied), ``{"current": v}`` (it did not, and the txn's
    failure branch read v) or False (it did not; nothing known about the value).
    """

    initial: str | None = None

    def init(self) -> Hashable:
        return self.initial

    def step(self, state: Any, op: Op) -> tuple[bool, Hashable]:
        if op.f == "read":
            return (op.outcome == INFO or op.result == state), state
        if op.f == "write":
            return True, op.value
        if op.f == "cas":
            old, new = op.value
            applies = state is not None and state == old
            if op.outcome == INFO:
                return True, (new if applies else state)
            if op.result is True:
                return applies, new
            if isinstance(op.result, dict):
                return not applies and op.result.get("current") == state, state
            return not applies, state
        raise ValueError(f"register model: unknown operation {op.f!r}")


def relevant(ops: Iterable[Op]) -> list[Op]:
    """Drop operations that constrain nothing: failures and reads that never returned."""
    return [op for op in ops if op.outcome != FAIL and not (op.f == "read" and op.outcome == INFO)]


def _written(op: Op) -> Any:
    return op.value[1] if op.f == "cas" else op.value


def bound_indeterminate(ops: list[Op]) -> list[Op]:
    """Tighten indeterminate register writes without changing the verdict (one key's ops).

    An indeterminate write (or cas) of a value that only it writes, and that nothing can
    have observed (no read returned it, no cas expected it, no failed cas without a read
    value may have failed because of it), can always be linearized last, where it affects
    nothing: drop it. If it was observed, it took effect before its first
    observer returned: that return bounds it (an indeterminate cas observes its expected
    value no later than its own bound). Without this, every lost write stays pending to the
    end and the search state doubles with each one.
    """
    writers: dict[Any, int] = {}
    for op in ops:
        if op.f in ("write", "cas"):
            v = _written(op)
            writers[v] = writers.get(v, 0) + 1
    seen: dict[Any, int] = {}
    blind = -1  # return of the last failed cas that saw no value: it may need any write
    for op in ops:
        if op.outcome != OK or op.f not in ("read", "cas"):
            continue
        if op.f == "read":
            v = op.result
        elif op.result is True:
            v = op.value[0]
        elif isinstance(op.result, dict):
            v = op.result.get("current")
        else:
            blind = max(blind, op.ret)
            continue
        seen[v] = min(seen.get(v, op.ret), op.ret)
    pending_cas = [op for op in ops if op.f == "cas" and op.outcome == INFO]
    # an indeterminate cas of a unique value is itself dropped unless its value was seen
    # (then the loop below marks its expected value seen); others keep what they expect
    expected = {op.value[0] for op in pending_cas if writers[op.value[1]] > 1}
    changed = True
    while changed:  # chains of indeterminate cas: old <- new <- observed
        changed = False
        for c in pending_cas:
            old, new = c.value
            if new in seen and writers[new] == 1 and seen.get(old, NEVER) > seen[new]:
                seen[old] = seen[new]
                changed = True
    out = []
    for op in ops:
        if op.outcome == INFO and op.f in ("write", "cas") and writers[_written(op)] == 1:
            v = _written(op)
            if v in seen:
                op = replace(op, ret=max(seen[v], op.call))
            elif v not in expected and op.call > blind:
                continue
        out.append(op)
    return out


@dataclass(slots=True, eq=False)
class _Entry:
    id: int  # index of the op in the partition
    call: bool
    match: _Entry | None = None  # a call's return entry
    prev: _Entry | None = None
    next: _Entry | None = None


def _build(ops: list[Op]) -> _Entry:
    """The doubly linked entry list behind a sentinel head; calls before returns on ties."""
    rows = []
    for i, op in enumerate(ops):
        rows.append((op.call, 0, i))
        rows.append((op.ret, 1, i))
    rows.sort()
    head = _Entry(-1, False)
    calls: dict[int, _Entry] = {}
    prev = head
    for _, kind, i in rows:
        e = _Entry(i, kind == 0)
        if kind == 0:
            calls[i] = e
        else:
            calls[i].match = e
        e.prev = prev
        prev.next = e
        prev = e
    return head


def _lift(e: _Entry) -> None:
    assert e.prev is not None and e.next is not None and e.match is not None
    e.prev.next = e.next
    e.next.prev = e.prev
    m = e.match
    assert m.prev is not None
    m.prev.next = m.next
    if m.next is not None:
        m.next.prev = m.prev


def _unlift(e: _Entry) -> None:
    m = e.match
    assert m is not None and m.prev is not None and e.prev is not None and e.next is not None
    m.prev.next = m
    if m.next is not None:
        m.next.prev = m
    e.prev.next = e
    e.next.prev = e


@dataclass(slots=True, frozen=True)
class PartitionResult:
    verdict: str
    explored: int
    # on INVALID: the deepest linearization found and the op that could not follow it
    prefix: tuple[int, ...] = ()
    stuck: int = -1
    state: Any = None


def check_partition(ops: list[Op], model: Model, *, max_states: int = 2_000_000) -> \
        PartitionResult:
    """Is this (single-partition) history linearizable under model?"""
    if not ops:
        return PartitionResult(VALID, 0)
    head = _build(ops)
    entry = head.next
    state = model.init()
    linearized = 0
    stack: list[tuple[_Entry, Hashable]] = []
    cache: set[tuple[int, Hashable]] = set()
    best: tuple[int, ...] = ()
    best_stuck, best_state = -1, state
    while head.next is not None:
        assert entry is not None
        if entry.call:
            ok, new_state = model.step(state, ops[entry.id])
            if ok:
                key = (linearized | (1 << entry.id), new_state)
                if key not in cache:
                    if len(cache) >= max_states:
                        return PartitionResult(UNKNOWN, len(cache))
                    cache.add(key)
                    stack.append((entry, state))
                    state, linearized = new_state, key[0]
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if len(stack) >= len(best) and (len(stack) > len(best) or best_stuck < 0):
                best = tuple(e.id for e, _ in stack)
                best_stuck, best_state = entry.id, state
            if not stack:
                return PartitionResult(INVALID, len(cache), best, best_stuck, best_state)
            top, state = stack.pop()
            linearized &= ~(1 << top.id)
            _unlift(top)
            entry = top.next
    return PartitionResult(VALID, len(cache))


def describe(op: Op) -> dict[str, Any]:
    """A JSON-able view of an op for reports."""
    return {"process": op.process, "f": op.f, "key": op.key, "value": op.value,
            "result": op.result, "outcome": op.outcome, "call": op.call,
            "return": None if op.outcome == INFO else op.ret}


def check(ops: Iterable[Op], model_for: Callable[[str], Model] = lambda _k: Register(), *,
          max_states: int = 2_000_000, name: str = "linearizable") -> CheckResult:
    """Check every key's sub-history on its own (P-compositionality: a history is
    linearizable iff each per-key sub-history is)."""
    parts = by_key(relevant(ops))
    register_ops = isinstance(model_for(""), Register)
    anomalies: list[dict[str, Any]] = []
    unknown: list[str] = []
    explored = 0
    for key in sorted(parts):
        sub = bound_indeterminate(parts[key]) if register_ops else parts[key]
        r = check_partition(sub, model_for(key), max_states=max_states)
        explored += r.explored
        if r.verdict == UNKNOWN:
            unknown.append(key)
        elif r.verdict == INVALID:
            anomalies.append({
                "type": "nonlinearizable", "key": key,
                "state": r.state,
                "linearized_tail": [describe(sub[i]) for i in r.prefix[-5:]],
                "could_not_linearize": describe(sub[r.stuck]),
            })
    stats = {"keys": len(parts), "ops": sum(len(v) for v in parts.values()),
             "explored": explored}
    if anomalies:
        return CheckResult(name, INVALID,
                           f"not linearizable on {len(anomalies)} key(s): "
                           + ", ".join(a["key"] for a in anomalies[:5]),
                           tuple(anomalies[:10]), stats)
    if unknown:
        return CheckResult(name, UNKNOWN, f"search budget exhausted on keys {unknown[:5]}",
                           (), stats)
    return CheckResult(name, VALID, f"linearizable ({stats['ops']} ops on {len(parts)} keys)",
                       (), stats)
