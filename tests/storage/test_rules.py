"""The pure rules every backend shares (wal/storage.py): term runs, append and snapshot checks."""

from __future__ import annotations

import pytest

from wal.errors import SliceOutOfRangeError
from wal.records import Entry, HardState
from wal.snap import Snapshot
from wal.storage import (
    LoadedState,
    LogBounds,
    after_append,
    after_snapshot,
    check_append,
    check_compact,
    snapshot_replaces_log,
)


def _log(*terms: int, first: int = 1) -> list[Entry]:
    return [Entry(first + k, t) for k, t in enumerate(terms)]


def test_term_runs_follow_appends_and_overwrites() -> None:
    b = LogBounds()
    after_append(b, None, _log(1, 1, 1, 2, 2, 3))
    assert [b.term_at(i) for i in range(0, 8)] == [None, 1, 1, 1, 2, 2, 3, None]
    assert len(b.run_starts) == 3  # one run per term, not per entry
    after_append(b, None, _log(4, 4, first=3))  # overwrite from 3
    assert [b.term_at(i) for i in range(1, 6)] == [1, 1, 4, 4, None]
    assert b.last_index == 4


def test_runs_rebuilt_from_a_loaded_state() -> None:
    state = LoadedState(b"", HardState(3, 0, 12), Snapshot(10, 2, b""), _log(2, 3, first=11))
    b = LogBounds.of(state)
    assert (b.term_at(9), b.term_at(10), b.term_at(11), b.term_at(12)) == (None, 2, 2, 3)
    assert (b.snapshot_index, b.last_index, b.commit) == (10, 12, 12)


def test_matching_snapshot_keeps_log_and_other_snapshots_replace_it() -> None:
    b = LogBounds()
    after_append(b, HardState(2, 0, 3), _log(1, 1, 2, 2, 2))
    assert not snapshot_replaces_log(b, Snapshot(3, 2, b""))
    assert snapshot_replaces_log(b, Snapshot(3, 1, b""))  # conflicting term at 3
    assert snapshot_replaces_log(b, Snapshot(9, 2, b""))  # past the end
    after_snapshot(b, Snapshot(3, 2, b""), replaced=False)
    assert (b.last_index, b.term_at(5)) == (5, 2)
    after_snapshot(b, Snapshot(4, 3, b""), replaced=True)
    assert (b.last_index, b.term_at(4), b.term_at(5)) == (4, 3, None)


def test_append_checks() -> None:
    b = LogBounds(snapshot_index=5, last_index=8)
    check_append(b, _log(1, 1, first=9))
    check_append(b, _log(1, first=6))
    with pytest.raises(SliceOutOfRangeError, match="gap"):
        check_append(b, _log(1, first=10))
    with pytest.raises(SliceOutOfRangeError, match="snapshot"):
        check_append(b, _log(1, first=5))
    with pytest.raises(SliceOutOfRangeError, match="not contiguous"):
        check_append(b, [Entry(7, 1), Entry(9, 1), Entry(8, 1)])


def test_compaction_stops_at_the_newest_committed_snapshot() -> None:
    b = LogBounds()
    after_append(b, HardState(1, 0, 6), _log(*([1] * 10)))
    after_snapshot(b, Snapshot(4, 1, b""), replaced=False)
    after_snapshot(b, Snapshot(8, 1, b""), replaced=False)  # above the commit: an orphan
    check_compact(b, 4)
    with pytest.raises(SliceOutOfRangeError):
        check_compact(b, 5)
    after_append(b, HardState(1, 0, 9), [])
    check_compact(b, 8)
