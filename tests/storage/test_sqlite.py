"""sqlite backend specifics: its on-disk layout, real SQLite faults, corrupted snapshots."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from wal.backends.sqlite import DB_NAME, SqliteStorage
from wal.errors import FsyncError, SnapshotCRCError, StorageFailedError, WALLockedError
from wal.records import Entry, HardState
from wal.snap import Snapshot


def _open(tmp_path: Path) -> SqliteStorage:
    s = SqliteStorage(tmp_path)
    if not s.exists():
        s.bootstrap(b"m")
    s.load()
    return s


def test_layout_and_pragmas(tmp_path: Path) -> None:
    s = _open(tmp_path)
    s.save(HardState(1, 1, 1), [Entry(1, 1, b"x")])
    s.close()
    db = sqlite3.connect(tmp_path / "member" / DB_NAME)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert tables == {"state", "log", "snapshot"}
        assert db.execute("SELECT idx, term, data FROM log").fetchall() == [(1, 1, b"x")]
    finally:
        db.close()


def test_disk_full_is_fatal_and_typed(tmp_path: Path) -> None:
    """A real SQLITE_FULL (the database hits max_page_count) is an FsyncError, then failed."""
    s = _open(tmp_path)
    s.save(HardState(1, 1, 1), [Entry(1, 1, b"ok")])
    assert s._db is not None
    pages = s._db.execute("PRAGMA page_count").fetchone()[0]
    s._db.execute(f"PRAGMA max_page_count = {pages + 2}")
    big = [Entry(i, 1, b"z" * 4096) for i in range(2, 50)]
    with pytest.raises(FsyncError, match="full"):
        s.save(None, big)
    with pytest.raises(StorageFailedError):
        s.save(None, [Entry(2, 1, b"small")])
    s.close()
    state = SqliteStorage(tmp_path).load()
    assert state.entries == [Entry(1, 1, b"ok")]  # the failed transaction rolled back whole


def test_corrupted_snapshot_row_is_a_crc_error(tmp_path: Path) -> None:
    s = _open(tmp_path)
    s.save(HardState(1, 1, 5), [Entry(i, 1) for i in range(1, 6)])
    s.save_snapshot(Snapshot(index=4, term=1, data=b"good state"))
    s.close()
    db = sqlite3.connect(tmp_path / "member" / DB_NAME)
    db.execute("UPDATE snapshot SET data = ? WHERE idx = 4", (b"evil state",))
    db.commit()
    db.close()
    with pytest.raises(SnapshotCRCError, match="index 4"):
        SqliteStorage(tmp_path).load()


def test_interrupted_bootstrap_is_redone(tmp_path: Path) -> None:
    (tmp_path / "member").mkdir()
    sqlite3.connect(tmp_path / "member" / DB_NAME).close()  # file exists, schema never committed
    s = SqliteStorage(tmp_path)
    assert not s.exists()
    s.bootstrap(b"meta")
    assert s.load().metadata == b"meta"
    s.close()


def test_lock_is_per_directory(tmp_path: Path) -> None:
    a = _open(tmp_path / "a")
    b = _open(tmp_path / "b")  # another member's directory is independent
    with pytest.raises(WALLockedError):
        SqliteStorage(tmp_path / "a").load()
    a.close()
    b.close()
