"""file backend specifics: etcd's layout, start-up from the newest valid snapshot, torn-tail
repair, corruption refusal, purging of segments and snapshot files."""

from __future__ import annotations

import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from wal.backends import open_backend
from wal.backends.file import FileStorage
from wal.errors import CRCMismatchError, WALLockedError
from wal.records import Entry, HardState, SnapshotRecord
from wal.snap import MIN_REF_BYTES, Snapshot, Snapshotter, snap_name

SEG = 16 * 1024


def _ents(first: int, last: int, term: int = 1, size: int = 200) -> list[Entry]:
    return [Entry(i, term, (b"%d|" % i) * (size // 4)) for i in range(first, last + 1)]


def _open(root: Path, **opts: object) -> FileStorage:
    s = FileStorage(root, segment_size=SEG, preallocate=False, **opts)  # type: ignore[arg-type]
    if not s.exists():
        s.bootstrap(b"meta")
    s.load()
    return s


def _wals(root: Path) -> list[Path]:
    return sorted((root / "member" / "wal").glob("*.wal"))


def test_etcd_layout(tmp_path: Path) -> None:
    s = _open(tmp_path)
    s.save(HardState(1, 1, 3), _ents(1, 3))
    s.save_snapshot(Snapshot(index=3, term=1, data=b"state"))
    s.close()
    assert [p.name for p in _wals(tmp_path)] == ["0000000000000000-0000000000000000.wal"]
    assert os.listdir(tmp_path / "member" / "snap") == [snap_name(1, 3)]


def test_broken_newest_snapshot_falls_back_to_older(tmp_path: Path) -> None:
    s = _open(tmp_path)
    s.save(HardState(1, 1, 20), _ents(1, 20))
    s.save_snapshot(Snapshot(index=5, term=1, data=b"five"))
    s.save_snapshot(Snapshot(index=10, term=1, data=b"ten"))
    s.close()
    newest = tmp_path / "member" / "snap" / snap_name(1, 10)
    newest.write_bytes(newest.read_bytes()[:-3])
    t2 = FileStorage(tmp_path, segment_size=SEG, preallocate=False)
    state = t2.load()
    t2.close()
    assert state.snapshot == Snapshot(index=5, term=1, data=b"five")
    assert state.entries == _ents(6, 20)
    assert (newest.parent / (newest.name + ".broken")).exists()


def test_orphan_snapshot_file_is_ignored(tmp_path: Path) -> None:
    """A crash after the .snap file but before its WAL record leaves an orphan file."""
    s = _open(tmp_path)
    s.save(HardState(1, 1, 9), _ents(1, 9))
    s.close()
    Snapshotter(tmp_path / "member" / "snap").save(Snapshot(index=7, term=1, data=b"orphan"))
    t = FileStorage(tmp_path, segment_size=SEG, preallocate=False)
    state = t.load()
    t.close()
    assert state.snapshot is None
    assert state.entries == _ents(1, 9)
    assert (tmp_path / "member" / "snap" / snap_name(1, 7)).exists()  # left alone, not broken


def test_torn_tail_is_repaired_once_on_load(tmp_path: Path) -> None:
    s = _open(tmp_path)
    saved: list[Entry] = []
    for first in range(1, 31, 3):
        batch = _ents(first, first + 2)
        s.save(HardState(1, 1, first), batch)
        saved += batch
    s.close()
    tail = _wals(tmp_path)[-1]
    with open(tail, "r+b") as f:  # tear the last record
        f.truncate(os.path.getsize(tail) - 100)
    t = FileStorage(tmp_path, segment_size=SEG, preallocate=False)
    state = t.load()
    assert state.entries == saved[: len(state.entries)]
    assert len(state.entries) >= len(saved) - 3
    assert list(tail.parent.glob("*.broken")), "repair keeps a .broken copy"
    more = _ents(state.last_index + 1, state.last_index + 2, term=2)
    t.save(HardState(2, 1, 1), more)
    t.close()
    u = FileStorage(tmp_path, segment_size=SEG, preallocate=False)
    assert u.load().entries == [*state.entries, *more]
    u.close()


def test_corruption_before_the_tail_is_refused_and_nothing_is_deleted(tmp_path: Path) -> None:
    s = _open(tmp_path)
    for first in range(1, 200, 10):
        s.save(HardState(1, 1, first), _ents(first, first + 9))
    s.close()
    wals = _wals(tmp_path)
    assert len(wals) >= 3
    first_seg = wals[0]
    raw = bytearray(first_seg.read_bytes())
    raw[len(raw) // 2] ^= 0x40
    first_seg.write_bytes(bytes(raw))
    sizes = {p: p.stat().st_size for p in wals}
    t = FileStorage(tmp_path, segment_size=SEG, preallocate=False)
    with pytest.raises(CRCMismatchError, match=first_seg.name):
        t.load()
    assert {p: p.stat().st_size for p in _wals(tmp_path)} == sizes
    assert not list(first_seg.parent.glob("*.broken"))


def test_compaction_purges_old_segments_and_reload_still_works(tmp_path: Path) -> None:
    s = _open(tmp_path, max_wals=2)
    for first in range(1, 400, 10):
        s.save(HardState(1, 1, first + 9), _ents(first, first + 9))
    before = len(_wals(tmp_path))
    assert before >= 5
    s.save_snapshot(Snapshot(index=390, term=1, data=b"state@390"))
    s.compact(390)
    after = _wals(tmp_path)
    assert 1 <= len(after) < before
    s.save(HardState(1, 1, 401), _ents(401, 401))
    s.close()
    t = FileStorage(tmp_path, segment_size=SEG, preallocate=False)
    state = t.load()
    t.close()
    assert state.snapshot == Snapshot(index=390, term=1, data=b"state@390")
    assert state.entries == _ents(391, 401)


def test_keeps_at_most_max_snapshots_files(tmp_path: Path) -> None:
    s = _open(tmp_path, max_snapshots=2)
    s.save(HardState(1, 1, 8), _ents(1, 8))
    for i in (2, 4, 6, 8):
        s.save_snapshot(Snapshot(index=i, term=1, data=b"s%d" % i))
    s.close()
    assert sorted(os.listdir(tmp_path / "member" / "snap")) == [snap_name(1, 6), snap_name(1, 8)]


def test_the_data_writer_chains_files_and_purge_keeps_their_base(tmp_path: Path) -> None:
    """The writer (run in a worker thread, as the node does) uses the backend's one
    Snapshotter: parts handed again are referenced, so a later file holds only its new
    bytes, and purging on save_snapshot keeps the base that the newest file references."""
    s = _open(tmp_path, max_snapshots=1)
    s.save(HardState(1, 1, 30), _ents(1, 30))
    snap_dir = tmp_path / "member" / "snap"
    base = [os.urandom(1 << 20), os.urandom(1 << 20)]
    with ThreadPoolExecutor(1) as pool:
        for index in (10, 20, 30):
            parts = [b"head%d" % index, *base, os.urandom(MIN_REF_BYTES)]
            pool.submit(s.snapshot_data_writer(), SnapshotRecord(index, 1), parts).result()
            s.save_snapshot(Snapshot(index=index, term=1, data=b"".join(parts)),
                            data_written=True)
            s.compact(index)
            if index > 10:
                assert (snap_dir / snap_name(1, index)).stat().st_size < 2 * MIN_REF_BYTES
    assert sorted(os.listdir(snap_dir)) == [snap_name(1, 10), snap_name(1, 30)]
    s.close()
    t = FileStorage(tmp_path, segment_size=SEG, preallocate=False)
    state = t.load()
    t.close()
    assert state.snapshot == Snapshot(index=30, term=1, data=b"".join(parts))


_CHILD = """
import sys
from wal.backends import open_backend
from wal.errors import WALLockedError
s = open_backend(sys.argv[1], sys.argv[2])
try:
    s.load()
except WALLockedError as e:
    print("locked:", e)
    sys.exit(3)
sys.exit(0)
"""


@pytest.mark.parametrize("backend", ["file", "sqlite"])
def test_a_second_process_is_locked_out(tmp_path: Path, backend: str) -> None:
    s = open_backend(backend, tmp_path)
    s.bootstrap(b"m")
    s.load()
    try:
        child = subprocess.run(
            [sys.executable, "-c", _CHILD, backend, str(tmp_path)],
            capture_output=True, text=True, timeout=60,
        )
        assert child.returncode == 3, child.stdout + child.stderr
        assert "locked" in child.stdout
    finally:
        s.close()
    again = subprocess.run([sys.executable, "-c", _CHILD, backend, str(tmp_path)], timeout=60)
    assert again.returncode == 0
    with pytest.raises(WALLockedError):  # and in-process, the classic double open
        a = open_backend(backend, tmp_path)
        a.load()
        try:
            open_backend(backend, tmp_path).load()
        finally:
            a.close()
