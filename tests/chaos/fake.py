"""A trivially linearizable in-memory store that records histories like the workload does.

Each op is invoked, takes effect atomically at one random instant before it completes (or,
for an indeterminate op, later or never), and completes: so every history it produces is
linearizable by construction, including its info and fail operations.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from chaos.history import FAIL, INFO, OK, History


@dataclass(slots=True)
class _Pending:
    process: int
    f: str
    key: str
    value: Any
    applied: bool = False
    result: Any = None
    fate: str = OK  # ok, fail (never applies), info (applies or not, answer lost)


@dataclass(slots=True)
class FakeStore:
    kind: str  # register or append
    keys: list[str]
    rng: random.Random
    history: History = field(default_factory=History)
    state: dict[str, Any] = field(default_factory=dict)
    clock: int = 0
    next_value: int = 0
    lost: list[_Pending] = field(default_factory=list)  # info ops that may apply later
    p_blind_cas: float = 0.3  # a failed cas that did not read the value (result False)

    def tick(self) -> int:
        self.clock += self.rng.randint(1, 3)
        return self.clock

    def _apply(self, p: _Pending) -> None:
        cur = self.state.get(p.key)
        if p.f == "read":
            p.result = list(cur or []) if self.kind == "append" else cur
        elif p.f == "write":
            self.state[p.key] = p.value
        elif p.f == "cas":
            ok = cur is not None and cur == p.value[0]
            if ok:
                self.state[p.key] = p.value[1]
            # like the workload's txn: a failed cas reads the value (sometimes we forget it)
            blind = self.rng.random() < self.p_blind_cas
            p.result = True if ok else False if blind else {"current": cur}
        elif p.f == "append":
            self.state[p.key] = [*(cur or []), p.value]
        p.applied = True

    def _new_op(self, process: int) -> _Pending:
        key = self.rng.choice(self.keys)
        if self.rng.random() < 0.4:
            return _Pending(process, "read", key, None)
        self.next_value += 1
        if self.kind == "append":
            return _Pending(process, "append", key, self.next_value)
        if self.rng.random() < 0.3:
            old = str(self.rng.randint(max(1, self.next_value - 3), self.next_value))
            return _Pending(process, "cas", key, [old, str(self.next_value)])
        return _Pending(process, "write", key, str(self.next_value))

    def run(self, n_ops: int, concurrency: int = 4, p_fail: float = 0.05,
            p_info: float = 0.05) -> History:
        pending: dict[int, _Pending] = {}
        procs = list(range(concurrency))
        started = 0
        while started < n_ops or pending:
            slot = self.rng.randrange(concurrency)
            proc = procs[slot]
            p = pending.get(proc)
            if p is None:
                if started >= n_ops:
                    continue
                p = self._new_op(proc)
                if p.f != "read":
                    r = self.rng.random()
                    p.fate = FAIL if r < p_fail else INFO if r < p_fail + p_info else OK
                pending[proc] = p
                started += 1
                self.history.invoke(proc, p.f, p.key, p.value, self.tick())
            elif not p.applied and p.fate != FAIL and self.rng.random() < 0.5:
                if p.fate == INFO and self.rng.random() < 0.5:
                    self.lost.append(p)  # in flight: may apply later, or never
                    p.applied = True
                else:
                    self._apply(p)
                self.tick()
            elif p.applied or p.fate == FAIL:
                del pending[proc]
                result = p.result if p.fate == OK else None
                self.history.complete(proc, p.fate, p.f, p.key, result, self.tick())
                if p.fate == INFO:
                    procs[slot] = proc + concurrency
            if self.lost and self.rng.random() < 0.05:
                lost = self.lost.pop(self.rng.randrange(len(self.lost)))
                if self.rng.random() < 0.7:
                    self._apply(lost)
        return self.history

    def final_reads(self) -> dict[str, Any]:
        """Reads after healing, recorded as process -1 (as the workload does)."""
        out = {}
        for key in self.keys:
            t = self.tick()
            self.history.invoke(-1, "read", key, None, t)
            cur = self.state.get(key)
            val = list(cur or []) if self.kind == "append" else cur
            self.history.complete(-1, OK, "read", key, val, self.tick())
            out[key] = val
        return out
