"""One conformance suite, run against every storage backend."""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.storage.conftest import BACKEND_OPTS, Factory
from wal.backends import available_backends, open_backend
from wal.backends.memory import MemoryStorage
from wal.errors import (
    FsyncError,
    SliceOutOfRangeError,
    StorageClosedError,
    StorageFailedError,
    StorageStateError,
    UnknownBackendError,
    WALError,
    WALExistsError,
    WALLockedError,
    WALNotFoundError,
)
from wal.hooks import HOOKS
from wal.records import Entry, HardState
from wal.snap import Snapshot
from wal.storage import WAL_AFTER_FSYNC, WAL_BEFORE_FSYNC, WAL_WRITE, LoadedState, Storage

META = b"member-id=1;cluster-id=7"


def ents(first: int, last: int, term: int = 1, size: int = 40) -> list[Entry]:
    return [
        Entry(index=i, term=term, data=(f"{i}:{term}:".encode() * size)[:size], type=i % 2)
        for i in range(first, last + 1)
    ]


def fresh(make: Factory, **opts: object) -> tuple[Storage, LoadedState]:
    s = make(**opts)
    if not s.exists():
        s.bootstrap(META)
    return s, s.load()


def reopen(s: Storage, make: Factory, **opts: object) -> LoadedState:
    """Close ``s``, then read the state back through a new object (closed again after)."""
    s.close()
    t = make(**opts)
    state = t.load()
    t.close()
    return state


def test_new_member_bootstrap_and_empty_load(make: Factory) -> None:
    s = make()
    assert isinstance(s, Storage)
    assert not s.exists()
    with pytest.raises(WALNotFoundError):
        s.load()
    s.bootstrap(META)
    assert s.exists()
    state = s.load()
    assert state == LoadedState(metadata=META, hard_state=HardState(), snapshot=None, entries=[])
    assert (state.first_index, state.last_index) == (1, 0)


def test_bootstrap_twice_is_refused_and_loses_nothing(make: Factory) -> None:
    s, _ = fresh(make)
    s.save(HardState(1, 1, 2), ents(1, 2))
    s.close()
    with pytest.raises(WALExistsError):
        make().bootstrap(b"other metadata")
    state = make().load()
    assert state.metadata == META
    assert state.entries == ents(1, 2)


def test_save_load_round_trip(make: Factory) -> None:
    s, _ = fresh(make)
    batch = [*ents(1, 10), Entry(11, 1, b""), Entry(12, 2, bytes(range(256)) * 20, type=1)]
    s.save(HardState(term=2, vote=3, commit=9), batch[:5])
    s.save(None, batch[5:])
    state = reopen(s, make)
    assert state.metadata == META
    assert state.hard_state == HardState(term=2, vote=3, commit=9)
    assert state.snapshot is None
    assert state.entries == batch
    assert state.last_index == 12


def test_overwrite_of_a_suffix_drops_everything_after(make: Factory) -> None:
    s, _ = fresh(make)
    s.save(HardState(1, 1, 3), ents(1, 10, term=1))
    s.save(HardState(2, 2, 3), ents(6, 8, term=2))
    expected = ents(1, 5, term=1) + ents(6, 8, term=2)
    state = reopen(s, make)
    assert state.entries == expected
    assert state.hard_state == HardState(2, 2, 3)
    # Appending right after the shortened log works and reads back intact.
    s2 = make()
    s2.load()
    s2.save(None, ents(9, 9, term=2))
    assert reopen(s2, make).entries == [*expected, *ents(9, 9, term=2)]


def test_overwrite_from_the_first_entry(make: Factory) -> None:
    s, _ = fresh(make)
    s.save(None, ents(1, 4, term=1))
    s.save(None, ents(1, 2, term=3))
    assert reopen(s, make).entries == ents(1, 2, term=3)


def test_hard_state_only(make: Factory) -> None:
    s, _ = fresh(make)
    s.save(HardState(term=5, vote=2, commit=0), [])
    s.save(HardState(term=6, vote=0, commit=0), [])
    state = reopen(s, make)
    assert state.hard_state == HardState(term=6, vote=0, commit=0)
    assert state.entries == []


def test_empty_save_is_a_no_op(make: Factory) -> None:
    s, _ = fresh(make)
    s.save(None, [])
    assert reopen(s, make).hard_state == HardState()


def test_snapshot_compaction_and_reload(make: Factory) -> None:
    s, _ = fresh(make)
    for first in range(1, 200, 20):  # ~16 KiB of entries: several file segments
        s.save(HardState(1, 1, first + 19), ents(first, first + 19, size=80))
    snap = Snapshot(index=150, term=1, data=b"kv-state" * 100)
    s.save_snapshot(snap)
    s.compact(150)
    s.save(HardState(1, 1, 205), ents(201, 205, size=80))
    state = reopen(s, make)
    assert state.snapshot == snap
    assert state.hard_state == HardState(1, 1, 205)
    assert state.entries == ents(151, 200, size=80) + ents(201, 205, size=80)
    assert (state.first_index, state.last_index) == (151, 205)
    # And it keeps working after the reload: a second snapshot, compaction, reload.
    s2 = make()
    s2.load()
    s2.save_snapshot(Snapshot(index=204, term=1, data=b"newer"))
    s2.compact(204)
    state = reopen(s2, make)
    assert state.snapshot == Snapshot(index=204, term=1, data=b"newer")
    assert state.entries == ents(205, 205, size=80)


def test_snapshot_above_commit_is_an_orphan_until_committed(make: Factory) -> None:
    s, _ = fresh(make)
    s.save(HardState(1, 1, 3), ents(1, 10))
    s.save_snapshot(Snapshot(index=2, term=1, data=b"old"))
    s.save_snapshot(Snapshot(index=8, term=1, data=b"ahead of commit"))
    state = reopen(s, make)
    assert state.snapshot == Snapshot(index=2, term=1, data=b"old")
    assert state.entries == ents(3, 10)
    s2 = make()
    s2.load()
    s2.save(HardState(1, 1, 9), [])
    state = reopen(s2, make)
    assert state.snapshot == Snapshot(index=8, term=1, data=b"ahead of commit")
    assert state.entries == ents(9, 10)


def test_keep_one_snapshot_never_drops_the_committed_one(make: Factory) -> None:
    """max_snapshots=1 and a crash between a new snapshot and the hard state committing it:
    the reload must still find the older, committed snapshot the log was compacted to."""
    s, _ = fresh(make, max_snapshots=1)
    s.save(HardState(1, 1, 6), ents(1, 6))
    s.save_snapshot(Snapshot(index=5, term=1, data=b"five"))
    s.compact(5)
    s.save(None, ents(7, 10))
    s.save_snapshot(Snapshot(index=9, term=1, data=b"nine, uncommitted"))
    state = reopen(s, make, max_snapshots=1)  # "crash": commit never reached 9
    assert state.snapshot == Snapshot(index=5, term=1, data=b"five")
    assert state.entries == ents(6, 10)
    s2 = make(max_snapshots=1)
    s2.load()
    s2.save(HardState(1, 1, 10), [])
    s2.save_snapshot(Snapshot(index=10, term=1, data=b"ten"))
    s2.compact(10)
    state = reopen(s2, make, max_snapshots=1)
    assert state.snapshot == Snapshot(index=10, term=1, data=b"ten")


def test_follower_restores_snapshot_past_its_log(make: Factory) -> None:
    """etcd's order: snapshot first, then the Ready's hard state and entries."""
    s, _ = fresh(make)
    s.save(HardState(1, 1, 3), ents(1, 5))
    snap = Snapshot(index=100, term=3, data=b"leader state")
    s.save_snapshot(snap)
    s.save(HardState(3, 2, 100), [])
    s.save(HardState(3, 2, 102), ents(101, 103, term=3))
    s.compact(100)
    state = reopen(s, make)
    assert state.snapshot == snap
    assert state.entries == ents(101, 103, term=3)
    assert state.hard_state == HardState(3, 2, 102)


def test_overwrite_below_a_later_snapshot_does_not_resurrect_entries(make: Factory) -> None:
    """etcd-io/etcd#22442: 1..5@1, then 3..4@2 (raft dropped 5@1), then snapshot 4@2.

    The stale 5@1 must not come back: a ghost last entry would make the node judge vote
    requests against a log it does not have.
    """
    s, _ = fresh(make)
    s.save(HardState(1, 1, 2), ents(1, 5, term=1))
    s.save(HardState(2, 2, 4), ents(3, 4, term=2))
    snap = Snapshot(index=4, term=2, data=b"state@4")
    s.save_snapshot(snap)
    state = reopen(s, make)
    assert state.snapshot == snap
    assert state.entries == []
    assert state.last_index == 4


def test_snapshot_from_leader_replaces_a_conflicting_log(make: Factory) -> None:
    """A received snapshot over an uncommitted conflicting tail: raft replaces its log."""
    s, _ = fresh(make)
    s.save(HardState(1, 1, 3), ents(1, 8, term=1))
    snap = Snapshot(index=6, term=2, data=b"leader@6")  # entry 6 has term 1 here
    s.save_snapshot(snap)
    s.save(HardState(2, 0, 6), [])
    with pytest.raises(SliceOutOfRangeError, match="gap"):
        s.save(None, ents(8, 8, term=2))  # the log now ends at the snapshot
    state = reopen(s, make)
    assert state.snapshot == snap
    assert state.entries == []
    s2 = make()
    s2.load()
    s2.save(HardState(2, 0, 7), ents(7, 7, term=2))
    assert reopen(s2, make).entries == ents(7, 7, term=2)


def test_local_snapshot_keeps_the_log_after_it(make: Factory) -> None:
    s, _ = fresh(make)
    s.save(HardState(2, 1, 6), [*ents(1, 3, term=1), *ents(4, 9, term=2)])
    s.save_snapshot(Snapshot(index=5, term=2, data=b"applied@5"))  # matches entry 5@2
    s.save(None, ents(10, 10, term=2))
    state = reopen(s, make)
    assert state.entries == ents(6, 10, term=2)


def test_bad_input_is_a_typed_error_that_loses_nothing(make: Factory) -> None:
    s, _ = fresh(make)
    s.save(HardState(1, 1, 5), ents(1, 5))
    s.save_snapshot(Snapshot(index=3, term=1, data=b"s"))
    with pytest.raises(SliceOutOfRangeError, match="gap"):
        s.save(HardState(9, 9, 9), ents(7, 8))  # index 6 missing
    with pytest.raises(SliceOutOfRangeError, match="not contiguous"):
        s.save(None, [*ents(6, 6), *ents(8, 8)])
    with pytest.raises(SliceOutOfRangeError, match="snapshot"):
        s.save(None, ents(3, 6))  # would rewrite what the snapshot covers
    with pytest.raises(SliceOutOfRangeError):
        s.compact(4)  # beyond the latest snapshot
    with pytest.raises(SliceOutOfRangeError):
        s.save_snapshot(Snapshot(index=0, term=0, data=b""))
    with pytest.raises(SliceOutOfRangeError, match="older"):
        s.save_snapshot(Snapshot(index=2, term=1, data=b"older"))
    s.save(None, ents(6, 6))  # the object is still healthy
    state = reopen(s, make)
    assert state.hard_state == HardState(1, 1, 5)
    assert state.snapshot == Snapshot(index=3, term=1, data=b"s")
    assert state.entries == ents(4, 6)


def test_calls_out_of_order_raise(make: Factory) -> None:
    s = make()
    s.bootstrap(META)
    with pytest.raises(StorageStateError):
        s.save(HardState(1, 0, 0), [])
    with pytest.raises(StorageStateError):
        s.compact(0)
    s.load()
    with pytest.raises(StorageStateError):
        s.load()
    with pytest.raises(StorageStateError):
        s.bootstrap(META)


def test_closed_backend_raises_on_every_call(make: Factory) -> None:
    s, _ = fresh(make)
    s.save(HardState(1, 1, 1), ents(1, 1))
    s.close()
    s.close()  # idempotent
    for call in (
        lambda: s.save(None, ents(2, 2)),
        lambda: s.save_snapshot(Snapshot(1, 1, b"x")),
        lambda: s.compact(0),
        s.load,
        s.exists,
        lambda: s.bootstrap(META),
    ):
        with pytest.raises(StorageClosedError):
            call()
    assert make().load().entries == ents(1, 1)


def test_second_writer_is_locked_out_until_close(make: Factory) -> None:
    s, _ = fresh(make)
    s.save(None, ents(1, 3))
    other = make()
    with pytest.raises(WALLockedError):
        other.load()
    s.close()
    assert make().load().entries == ents(1, 3)


def test_write_fault_fails_the_backend_for_good(make: Factory) -> None:
    armed = {"on": False}

    def hook(point: str) -> None:
        if armed["on"] and point == WAL_BEFORE_FSYNC:
            raise OSError(errno.EIO, "injected EIO")

    s, _ = fresh(make, hook=hook)
    s.save(HardState(1, 1, 2), ents(1, 2))
    armed["on"] = True
    with pytest.raises(FsyncError) as info:
        s.save(HardState(1, 1, 3), ents(3, 3))
    assert not isinstance(info.value, StorageFailedError)  # the original fault, typed
    armed["on"] = False  # even once the disk "recovers", nothing is retried
    calls: list[Callable[[], None]] = [
        lambda: s.save(None, ents(3, 3)),
        lambda: s.save_snapshot(Snapshot(1, 1, b"x")),
        lambda: s.compact(0),
    ]
    for call in calls:
        with pytest.raises(StorageFailedError):
            call()
    s.close()
    state = make().load()
    # What was acknowledged survives; the failed batch may or may not have reached the medium.
    assert state.entries[:2] == ents(1, 2)
    assert state.entries in (ents(1, 2), ents(1, 3))


def test_snapshot_write_fault_fails_the_backend(make: Factory) -> None:
    armed = {"on": False}

    def hook(point: str) -> None:
        if armed["on"] and point == WAL_WRITE:
            raise OSError(errno.ENOSPC, "injected ENOSPC")

    s, _ = fresh(make, hook=hook)
    s.save(HardState(1, 1, 4), ents(1, 4))
    armed["on"] = True
    with pytest.raises(FsyncError, match=r"ENOSPC|No space"):
        s.save_snapshot(Snapshot(index=4, term=1, data=b"never acknowledged"))
    with pytest.raises(StorageFailedError):
        s.save(None, ents(5, 5))
    s.close()
    armed["on"] = False
    t = make()
    state = t.load()
    t.close()
    assert state.hard_state == HardState(1, 1, 4)
    # Unacknowledged: the snapshot may or may not have landed, but the log is intact.
    snap = Snapshot(index=4, term=1, data=b"never acknowledged")
    assert (state.snapshot, state.entries) in ((None, ents(1, 4)), (snap, []))


def test_relative_data_dir(backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = open_backend(backend, "rel", **BACKEND_OPTS[backend])
    try:
        s.bootstrap(META)
        s.load()
        s.save(HardState(1, 1, 1), ents(1, 1))
    finally:
        s.close()
    t = open_backend(backend, "rel", **BACKEND_OPTS[backend])
    try:
        assert t.load().entries == ents(1, 1)
    finally:
        t.close()
        if backend == "memory":
            MemoryStorage.discard("rel")


def test_process_wide_failpoint_reaches_every_backend(
    make: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []
    s, _ = fresh(make)
    monkeypatch.setattr(HOOKS, "failpoint", seen.append)
    s.save(HardState(1, 1, 1), ents(1, 2))
    assert WAL_WRITE in seen
    assert seen.index(WAL_BEFORE_FSYNC) < seen.index(WAL_AFTER_FSYNC)


def test_unsafe_no_fsync_still_round_trips(make: Factory) -> None:
    s, _ = fresh(make, unsafe_no_fsync=True)
    s.save(HardState(2, 1, 4), ents(1, 4))
    s.save_snapshot(Snapshot(index=2, term=1, data=b"snap"))
    state = reopen(s, make)
    assert state.entries == ents(3, 4)
    assert state.snapshot == Snapshot(index=2, term=1, data=b"snap")


def test_registry_knows_the_builtins_and_rejects_unknown_names(tmp_path: Path) -> None:
    assert {"file", "memory", "sqlite"} <= set(available_backends())
    with pytest.raises(UnknownBackendError, match="file, memory, sqlite"):
        open_backend("bolt", tmp_path)
    assert issubclass(UnknownBackendError, WALError)


def test_snapshot_data_written_beside_the_worker(make: Factory, tmp_path: Path) -> None:
    """A backend that offers a data writer lets the big write run elsewhere (the node runs
    it in a forked child) while saves go on; ``data_written`` then saves only the record.
    A backend without one refuses ``data_written``, changing nothing."""
    s, _ = fresh(make)
    s.save(HardState(1, 1, 40), ents(1, 40))
    snap = Snapshot(index=30, term=1, data=b"state" * 10_000)
    write = s.snapshot_data_writer()
    if write is None:
        with pytest.raises(ValueError, match="data_written"):
            s.save_snapshot(snap, data_written=True)
        assert reopen(s, make).snapshot is None
        return
    with pytest.raises(WALError, match="said written"):  # nothing written yet: refused
        s.save_snapshot(snap, data_written=True)
    done: list[BaseException | None] = []
    t = threading.Thread(target=lambda: (write(snap.record, [b"state" * 4_000, b"state" * 6_000]),
                                         done.append(None)))
    t.start()
    s.save(HardState(1, 1, 45), ents(41, 45))  # the log goes on meanwhile
    t.join()
    assert done == [None]
    s.save_snapshot(snap, data_written=True)
    s.compact(30)
    state = reopen(s, make)
    assert state.snapshot == snap
    assert state.entries == ents(31, 45) and state.hard_state == HardState(1, 1, 45)
