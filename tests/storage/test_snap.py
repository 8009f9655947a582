"""Snapshot files: etcd's snap/snapshotter_test.go scenarios, plus corruption fuzzing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wal.errors import (
    EmptySnapshotError,
    NoSnapshotError,
    SliceOutOfRangeError,
    SnapshotCorruptError,
    SnapshotCRCError,
)
from wal.records import SnapshotRecord
from wal.snap import (
    Snapshot,
    Snapshotter,
    decode_snapshot,
    encode_snapshot,
    parse_snap_name,
    snap_name,
)


def _snap(term: int, index: int) -> Snapshot:
    return Snapshot(index=index, term=term, data=f"state@{term}/{index}".encode() * 3)


def _flip_last_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF
    path.write_bytes(bytes(raw))


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path)
    snap = Snapshot(index=1, term=1, data=b"\x00hello\xff" * 100)
    path = s.save(snap)
    assert path.name == "0000000000000001-0000000000000001.snap"
    assert sorted(os.listdir(tmp_path)) == [path.name]  # no temp file left behind
    assert s.load() == snap
    assert Snapshotter(tmp_path).read(path.name) == snap


def test_name_encodes_term_then_index_in_fixed_width_hex() -> None:
    assert snap_name(term=0x1F, index=0xABC) == "000000000000001f-0000000000000abc.snap"
    assert parse_snap_name("000000000000001f-0000000000000abc.snap") == SnapshotRecord(0xABC, 0x1F)
    assert parse_snap_name("000000000000001f-0000000000000abc.snap.broken") is None
    assert parse_snap_name("db") is None


def test_bad_crc_is_a_crc_error(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path)
    path = s.save(_snap(1, 1))
    _flip_last_byte(path)  # last byte belongs to the data, covered by the CRC
    with pytest.raises(SnapshotCRCError, match=path.name):
        s.read(path.name)


def test_failback_renames_broken_newest_and_returns_older(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path)
    s.save(_snap(1, 1))
    newest = s.save(_snap(1, 2))
    _flip_last_byte(newest)
    assert s.load() == _snap(1, 1)
    assert not newest.exists()
    assert (tmp_path / (newest.name + ".broken")).exists()
    # The broken file no longer competes: a second load goes straight to the good one.
    assert s.names() == [snap_name(1, 1)]


def test_names_are_newest_first_by_term_then_index(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path, max_snapshots=0)
    for term, index in [(1, 5), (2, 3), (1, 9), (2, 1), (3, 2)]:
        s.save(_snap(term, index))
    (tmp_path / "db").write_bytes(b"not a snapshot")
    (tmp_path / "x.snap.broken").write_bytes(b"")
    assert s.names() == [snap_name(3, 2), snap_name(2, 3), snap_name(2, 1), snap_name(1, 9),
                         snap_name(1, 5)]
    assert s.load() == _snap(3, 2)


@pytest.mark.parametrize("order", ["sorted", "unsorted"])
def test_load_newest_available_picks_newest_listed_by_the_wal(tmp_path: Path, order: str) -> None:
    s = Snapshotter(tmp_path, max_snapshots=0)
    for i in (1, 5, 10):
        s.save(_snap(1, i))
    listed = [SnapshotRecord(1, 1), SnapshotRecord(5, 1)]
    if order == "unsorted":
        listed.reverse()
    assert s.load_newest_available(listed) == _snap(1, 5)  # 10 is an orphan: not in the WAL
    assert s.load_newest_available([*listed, SnapshotRecord(10, 1)]) == _snap(1, 10)
    # Same index, wrong term: not a match.
    assert s.load_newest_available([SnapshotRecord(10, 2), SnapshotRecord(1, 1)]) == _snap(1, 1)
    with pytest.raises(NoSnapshotError):
        s.load_newest_available([SnapshotRecord(7, 1)])
    assert len(s.names()) == 3  # non-matching files are not touched


def test_load_newest_available_skips_broken_match(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path)
    s.save(_snap(1, 1))
    _flip_last_byte(s.save(_snap(1, 5)))
    assert s.load_newest_available([SnapshotRecord(1, 1), SnapshotRecord(5, 1)]) == _snap(1, 1)
    assert (tmp_path / (snap_name(1, 5) + ".broken")).exists()


def test_no_snapshot_in_empty_or_missing_dir(tmp_path: Path) -> None:
    with pytest.raises(NoSnapshotError, match=str(tmp_path)):
        Snapshotter(tmp_path).load()
    with pytest.raises(NoSnapshotError):
        Snapshotter(tmp_path / "nope").load()


def test_empty_file_is_empty_snapshot_error(tmp_path: Path) -> None:
    name = snap_name(1, 1)
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(EmptySnapshotError):
        Snapshotter(tmp_path).read(name)


def test_all_snapshots_broken_is_no_snapshot(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path)
    (tmp_path / snap_name(1, 1)).write_bytes(b"")
    _flip_last_byte(s.save(_snap(1, 2)))
    with pytest.raises(NoSnapshotError):
        s.load()
    assert sorted(os.listdir(tmp_path)) == [snap_name(1, 1) + ".broken", snap_name(1, 2) + ".broken"]


def test_contents_disagreeing_with_name_is_broken(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path)
    s.save(_snap(1, 1))
    (tmp_path / snap_name(1, 9)).write_bytes(encode_snapshot(_snap(1, 8)))  # misnamed copy
    assert s.load() == _snap(1, 1)
    assert (tmp_path / (snap_name(1, 9) + ".broken")).exists()


def test_keeps_at_most_max_snapshots_newest(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path, max_snapshots=3)
    for i in range(1, 8):
        s.save(_snap(1, i))
    assert s.names() == [snap_name(1, i) for i in (7, 6, 5)]
    assert s.load() == _snap(1, 7)


def test_purge_never_removes_a_protected_snapshot(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path, max_snapshots=1)
    for i in (3, 5, 9):
        s.save(_snap(1, i), purge=False)
    assert s.purge(protect=5) == [tmp_path / snap_name(1, 3)]
    assert s.names() == [snap_name(1, 9), snap_name(1, 5)]
    s.purge()
    assert s.names() == [snap_name(1, 9)]


def test_leftover_temp_file_is_removed_and_ignored(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path)
    s.save(_snap(1, 1))
    (tmp_path / (snap_name(1, 2) + ".tmp")).write_bytes(b"half a write")
    assert s.load() == _snap(1, 1)
    assert sorted(os.listdir(tmp_path)) == [snap_name(1, 1)]


def test_refuses_empty_snapshot_and_bad_config(tmp_path: Path) -> None:
    with pytest.raises(SliceOutOfRangeError):
        Snapshotter(tmp_path).save(Snapshot(index=0, term=0, data=b"x"))
    assert os.listdir(tmp_path) == []
    with pytest.raises(ValueError, match="max_snapshots"):
        Snapshotter(tmp_path, max_snapshots=-1)


def test_unsafe_no_fsync_still_writes_a_readable_file(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path, unsafe_no_fsync=True)
    s.save(_snap(2, 3))
    assert Snapshotter(tmp_path).load() == _snap(2, 3)


def test_every_truncation_of_a_file_is_detected() -> None:
    raw = encode_snapshot(_snap(3, 7))
    for cut in range(len(raw)):
        with pytest.raises(SnapshotCorruptError):
            decode_snapshot(raw[:cut])


def test_every_single_bit_flip_is_detected() -> None:
    raw = encode_snapshot(Snapshot(index=7, term=3, data=bytes(range(40))))
    for pos in range(len(raw)):
        for bit in (0x01, 0x80):
            bad = bytearray(raw)
            bad[pos] ^= bit
            try:
                got = decode_snapshot(bytes(bad))
            except SnapshotCorruptError:
                continue
            # A flip may only survive where it cannot change meaning (none exist today).
            pytest.fail(f"flip at byte {pos} bit {bit:#x} decoded to {got!r}")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_decoder_fuzz_raises_only_snapshot_errors(raw: bytes) -> None:
    try:
        decode_snapshot(raw)
    except SnapshotCorruptError:
        pass


@settings(max_examples=100, deadline=None)
@given(st.integers(1, 2**63 - 1), st.integers(1, 2**63 - 1), st.binary(max_size=300))
def test_encode_decode_round_trip(index: int, term: int, data: bytes) -> None:
    snap = Snapshot(index=index, term=term, data=data)
    assert decode_snapshot(encode_snapshot(snap)) == snap
