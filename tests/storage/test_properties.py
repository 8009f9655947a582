"""Random raft-shaped histories against every backend, checked against a pure model.

Each history mixes appends (with conflict overwrites above the commit index), term bumps,
commit advances, local snapshots with compaction, snapshots received from a leader (past
the end of the log or over conflicting entries, which replace the log), and reopenings; after every reopening ``load`` must equal what the model says.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.storage.conftest import BACKEND_OPTS, BACKENDS
from wal.backends import open_backend
from wal.backends.memory import MemoryStorage
from wal.records import Entry, HardState
from wal.snap import Snapshot
from wal.storage import LoadedState, Storage


@dataclass
class Model:
    hs: HardState = field(default_factory=HardState)
    log: dict[int, Entry] = field(default_factory=dict)
    last: int = 0
    floor: int = 0  # newest snapshot index
    snaps: dict[int, Snapshot] = field(default_factory=dict)

    def append(self, entries: list[Entry]) -> None:
        for i in range(entries[0].index, self.last + 1):
            self.log.pop(i, None)
        for e in entries:
            self.log[e.index] = e
        self.last = entries[-1].index

    def expected(self) -> LoadedState:
        committed = [i for i in self.snaps if i <= self.hs.commit]
        snap = self.snaps[max(committed)] if committed else None
        after = snap.index if snap else 0
        entries = []
        i = after + 1
        while i in self.log and i <= self.last:
            entries.append(self.log[i])
            i += 1
        return LoadedState(metadata=b"meta", hard_state=self.hs, snapshot=snap, entries=entries)


def _run(backend: str, data: st.DataObject, root: Path) -> None:
    def reopen(s: Storage) -> Storage:
        s.close()
        t = open_backend(backend, root, unsafe_no_fsync=True, **BACKEND_OPTS[backend])
        assert t.load() == m.expected()
        return t

    m = Model()
    s = open_backend(backend, root, unsafe_no_fsync=True, **BACKEND_OPTS[backend])
    s.bootstrap(b"meta")
    s.load()
    try:
        for _ in range(data.draw(st.integers(5, 25), label="ops")):
            op = data.draw(st.sampled_from(
                ["append", "append", "append", "term", "commit", "snap", "restore", "reopen"]
            ))
            term = max(m.hs.term, 1)
            if op == "append":
                lo = max(m.floor, m.hs.commit) + 1
                first = data.draw(st.integers(lo, m.last + 1), label="first")
                n = data.draw(st.integers(1, 6), label="n")
                size = data.draw(st.sampled_from([0, 10, 300, 3000]), label="size")
                ents = [Entry(i, term, bytes([i % 251]) * size, type=i % 2)
                        for i in range(first, first + n)]
                hs = HardState(term, m.hs.vote, m.hs.commit) if m.hs.term == 0 else None
                s.save(hs, ents)
                m.append(ents)
                if hs is not None:
                    m.hs = hs
            elif op == "term":
                hs = HardState(m.hs.term + 1, data.draw(st.integers(0, 5)), m.hs.commit)
                s.save(hs, [])
                m.hs = hs
            elif op == "commit" and m.last > m.hs.commit:
                c = data.draw(st.integers(m.hs.commit, m.last), label="commit")
                hs = HardState(term, m.hs.vote, c)
                s.save(hs, [])
                m.hs = hs
            elif op == "snap" and m.hs.commit > m.floor:
                idx = data.draw(st.integers(m.floor + 1, m.hs.commit), label="snap")
                snap = Snapshot(idx, m.log[idx].term, b"state@%d" % idx)
                s.save_snapshot(snap)
                m.snaps[idx] = snap
                m.floor = idx
                if data.draw(st.booleans(), label="compact"):
                    s.compact(idx)
            elif op == "restore":
                # A leader's snapshot: past the end of the log, or over an uncommitted
                # conflicting entry (with a newer term); either way raft replaces its log.
                lo = max(m.floor, m.hs.commit) + 1
                r = data.draw(st.integers(lo, m.last + 50), label="restore")
                if r <= m.last:
                    term += 1
                snap = Snapshot(r, term, b"leader@%d" % r)
                s.save_snapshot(snap)
                hs = HardState(term, m.hs.vote, r)
                s.save(hs, [])
                for i in range(r + 1, m.last + 1):
                    m.log.pop(i, None)
                m.snaps[r], m.floor, m.last, m.hs = snap, r, r, hs
                if data.draw(st.booleans(), label="compact"):
                    s.compact(r)
            elif op == "reopen":
                s = reopen(s)
        s = reopen(s)
    finally:
        s.close()


@pytest.mark.parametrize("backend", BACKENDS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_histories_reload_exactly(backend: str, data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d) / "data"
        try:
            _run(backend, data, root)
        finally:
            if backend == "memory":
                MemoryStorage.discard(root)
