"""Async storage writes: the Readies waiting for the disk thread are persisted in one save.

The loop does not wait for the disk in this mode, so while one fsync runs it makes many
small Readies; persisted one save (one fsync) each, the mode did ~30% fewer puts per second
than the default mode (README). ``_save_readies`` merges them the way raft would have
applied them one by one; the file storage, reopened, shows the result.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from raftnode.driver import Driver
from raftnode.mvcc.messages import PutRequest
from raftnode.raft.types import (
    ConfState,
    Entry,
    EntryType,
    HardState,
    Ready,
    Snapshot,
    SnapshotMeta,
)
from tests.node.test_driver_inproc import leader_of, make_cluster, running
from wal.backends import open_backend
from wal.errors import StorageFailedError


def _ready(entries: list[Entry], hs: HardState | None = None,
           snap: Snapshot | None = None) -> Ready:
    return Ready(None, hs, entries, snap, [], [], [], [])


def _ents(lo: int, hi: int, term: int = 1) -> list[Entry]:
    return [Entry(i, term, EntryType.NORMAL, b"e%d.%d" % (i, term)) for i in range(lo, hi + 1)]


class _CountingSaves:
    """The member's real storage, with its saves counted (the rest passes through)."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.saves: list[int] = []

    def save(self, hs: object, entries: list[object]) -> None:
        self.saves.append(len(entries))
        self.real.save(hs, entries)  # type: ignore[attr-defined]

    def __getattr__(self, name: str) -> object:
        return getattr(self.real, name)


def _driver(tmp_path: Path) -> tuple[Driver, list[int]]:
    """A booted member on the file backend, never started, whose saves are counted."""
    _, (d,) = make_cluster(tmp_path, 1, async_writes=True, backend="file")
    counting = _CountingSaves(d.storage)
    d.storage = counting  # type: ignore[assignment]
    return d, counting.saves


def _reloaded(tmp_path: Path, d: Driver):  # type: ignore[no-untyped-def]
    d.storage.close()  # (the real one, through the counter)
    s = open_backend("file", tmp_path / "m0")
    try:
        return s.load()
    finally:
        s.close()


def test_queued_readies_become_one_save_with_raft_conflict_truncation(tmp_path: Path) -> None:
    d, saves = _driver(tmp_path)
    d._save_readies([_ready(_ents(1, 4), HardState(1, 0, 2))])
    d._save_readies([
        _ready(_ents(5, 7), HardState(1, 0, 4)),
        _ready(_ents(8, 9)),
        _ready(_ents(9, 10, term=2), HardState(2, 0, 8)),  # a new leader's 9 replaces ours
        _ready([], HardState(2, 0, 9)),
    ])
    assert saves == [4, 6]  # one save for the four Readies: 5..8 of term 1, 9..10 of term 2
    state = _reloaded(tmp_path, d)
    assert [(e.index, e.term) for e in state.entries] == \
        [*((i, 1) for i in range(1, 9)), (9, 2), (10, 2)]
    assert state.entries[8].data == b"e9.2"
    assert (state.hard_state.term, state.hard_state.commit) == (2, 9)


def test_a_snapshot_splits_the_batch_and_goes_in_its_place(tmp_path: Path) -> None:
    d, saves = _driver(tmp_path)
    snap = Snapshot(SnapshotMeta(20, 3, ConfState((d.member_id,), ())), b"state")
    d._save_readies([
        _ready(_ents(1, 5), HardState(1, 0, 3)),
        _ready([], HardState(3, 0, 3), snap),  # a leader's snapshot past our log
        _ready(_ents(21, 22, term=3), HardState(3, 0, 21)),
    ])
    assert saves == [5, 2]
    state = _reloaded(tmp_path, d)
    assert state.snapshot is not None and state.snapshot.index == 20
    assert [(e.index, e.term) for e in state.entries] == [(21, 3), (22, 3)]
    assert state.hard_state.commit == 21


@pytest.mark.parametrize("backend", ["file", "memory"])
async def test_async_writes_commit_and_converge_with_batched_persists(tmp_path: Path,
                                                                    backend: str) -> None:
    async with running(tmp_path, async_writes=True, backend=backend) as (_net, drivers):
        leader = await leader_of(drivers)
        results = await asyncio.gather(*(leader.propose(PutRequest(b"k%d" % i, b"v"))
                                         for i in range(300)))
        assert len({r.revision for r in results}) == 300
        target = max(d.applied for d in drivers)
        for d in drivers:
            await d.wait_applied(target)
        assert len({d.sm.store.hash() for d in drivers}) == 1


def test_after_a_failed_batch_no_later_call_reports_success(tmp_path: Path) -> None:
    """Two Readies queued, two calls: the first takes both and its save fails. The second
    finds nothing queued, but must not return normally: its Ready's acknowledgements
    (persist_messages) would then go out for data that never reached the disk."""
    d, _ = _driver(tmp_path)
    counting = d.storage

    def eio(hs: object, entries: list[object]) -> None:
        raise OSError(5, "Input/output error")
    counting.save = eio  # type: ignore[method-assign]
    d._persist_queue.extend([_ready(_ents(1, 2)), _ready(_ents(3, 4))])
    with pytest.raises(OSError, match="Input/output"):
        d._persist_queued()
    assert not d._persist_queue
    with pytest.raises(StorageFailedError):
        d._persist_queued()
