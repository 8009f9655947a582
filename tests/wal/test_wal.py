"""etcd's wal_test.go acceptance scenarios, against real files and real fsync."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

import wal.wal as walmod
from tests.wal.helpers import data_end, ents, read, reopen, segments, write_at
from wal import (
    WAL,
    Entry,
    HardState,
    MetadataConflictError,
    SequenceGapError,
    SliceOutOfRangeError,
    SnapshotMismatchError,
    SnapshotNotFoundError,
    SnapshotRecord,
    UnexpectedEOFError,
    WALError,
    WALExistsError,
    WALNotFoundError,
    valid_snapshot_entries,
    verify,
)
from wal.framing import CRC, METADATA, SNAPSHOT, Encoder, pack_snapshot
from wal.segment import parse_wal_name, search_index, wal_name


def test_new_writes_crc_metadata_snapshot(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"somedata")
    assert w.tail_path == str(wdir / wal_name(0, 0))
    w.close()
    enc = Encoder(0)
    want = (
        enc.encode(CRC, b"")
        + enc.encode(METADATA, b"somedata")
        + enc.encode(SNAPSHOT, pack_snapshot(SnapshotRecord()))
    )
    raw = (wdir / wal_name(0, 0)).read_bytes()
    assert raw[: len(want)] == want
    assert raw[len(want) :].count(0) == len(raw) - len(want)  # preallocated zeros
    assert len(raw) == walmod.SEGMENT_SIZE_BYTES
    assert stat.S_IMODE(os.stat(wdir / wal_name(0, 0)).st_mode) == 0o600
    assert not Path(str(wdir) + ".tmp").exists()


def test_create_without_preallocation(wdir: Path) -> None:
    WAL.create(str(wdir), b"m", preallocate=False).close()
    assert (wdir / wal_name(0, 0)).stat().st_size == data_end(wdir / wal_name(0, 0))
    assert read(wdir)[0] == b"m"


def test_create_fails_from_polluted_dir(wdir: Path) -> None:
    wdir.mkdir(parents=True)
    (wdir / wal_name(0, 0)).write_bytes(b"")
    with pytest.raises(WALExistsError):
        WAL.create(str(wdir), b"x")
    (wdir / wal_name(0, 0)).unlink()
    (wdir / "other.txt").write_bytes(b"keep me")
    with pytest.raises(WALExistsError):
        WAL.create(str(wdir), b"x")
    assert (wdir / "other.txt").read_bytes() == b"keep me"


def test_create_fails_when_preallocation_impossible(wdir: Path) -> None:
    with pytest.raises(WALError):
        WAL.create(str(wdir), b"x", segment_size=1 << 62)
    assert not wdir.exists()
    assert not Path(str(wdir) + ".tmp").exists()


def test_restart_create_removes_stale_tmp(wdir: Path) -> None:
    tmp = Path(str(wdir) + ".tmp")
    tmp.mkdir(parents=True)
    (tmp / "junk").write_bytes(b"junk")
    WAL.create(str(wdir), b"abc").close()
    assert not tmp.exists()
    assert read(wdir)[0] == b"abc"


def test_open_at_index(wdir: Path) -> None:
    WAL.create(str(wdir), b"m").close()
    with WAL.open(str(wdir)) as w:
        w.read_all()
        assert w.tail_path == str(wdir / wal_name(0, 0))
    # a second segment starting at index 10: opening at 5 selects the first one still,
    # opening at 10 starts in the second (whose own crc record starts the chain).
    with WAL.open(str(wdir)) as w:
        w.read_all()
        w.save(HardState(1, 0, 0), ents(1, 9))
        w.save_snapshot(SnapshotRecord(9, 1))
        w._cut()
        w.save_snapshot(SnapshotRecord(10, 1))
    assert [p.name for p in segments(wdir)] == [wal_name(0, 0), wal_name(1, 10)]
    with WAL.open(str(wdir), SnapshotRecord(10, 1)) as w:
        assert w.locked_paths == [str(wdir / wal_name(1, 10))]
        assert w.read_all()[2] == []
    empty = wdir.parent / "empty"
    empty.mkdir()
    with pytest.raises(WALNotFoundError):
        WAL.open(str(empty))


def test_sequence_gap_is_an_error_even_after_seq_zero(wdir: Path) -> None:
    """etcd skips the gap check right after sequence 0; we do not."""
    w = WAL.create(str(wdir), b"m")
    w.save(None, ents(1, 9))
    w._cut()
    w.close()
    os.rename(wdir / wal_name(1, 10), wdir / wal_name(2, 10))
    with pytest.raises(SequenceGapError):
        WAL.open(str(wdir))
    with pytest.raises(SequenceGapError):
        verify(str(wdir))


def test_verify(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    for i in range(1, 6):
        w.save(None, [Entry(i, 1, b"x")])
        w._cut()
    w.save(HardState(1, 3, 5), [])
    w.close()
    assert verify(str(wdir)) == HardState(1, 3, 5)
    os.truncate(segments(wdir)[2], 0)
    with pytest.raises(WALError):
        verify(str(wdir))


def test_cut(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    st = HardState(term=1)
    w.save(st, [])
    w._cut()
    assert w.tail_path == str(wdir / wal_name(1, 1))
    w.save(None, [Entry(1, 1)])
    w._cut()
    w.save_snapshot(SnapshotRecord(2, 1))
    assert w.tail_path == str(wdir / wal_name(2, 2))
    w.close()
    # the new tail alone tells the hard state: cut re-writes it
    only = wdir.parent / "only"
    only.mkdir()
    os.link(wdir / wal_name(2, 2), only / wal_name(2, 2))
    _, hs, got = read(only, snapshot=SnapshotRecord(2, 1))
    assert hs == st and got == []


def test_save_with_cut(wdir: Path, small_segments: int) -> None:
    big = b"y" * 500
    w = WAL.create(str(wdir), b"meta")
    st = HardState(1, 1, 1)
    n = small_segments // len(big) + 1
    for i in range(1, n + 1):
        w.save(st, [Entry(i, 1, big)])
    w.close()
    seq, first = parse_wal_name(segments(wdir)[-1].name)
    assert seq == 1 and 1 < first <= n  # named after the entry that follows the cut
    meta, hs, got = read(wdir)
    assert meta == b"meta" and hs == st
    assert [e.index for e in got] == list(range(1, n + 1))
    assert all(e.data == big for e in got)


@pytest.mark.parametrize("mb", [10, 20, 40])
def test_recover_big_entries(wdir: Path, mb: int) -> None:
    data = os.urandom(1024) * (mb * 1024)
    w = WAL.create(str(wdir), b"meta")
    w.save(HardState(1, 1, 1), [Entry(1, 1, data)])
    w.save(HardState(2, 2, 2), [Entry(2, 2, data[::-1])])
    w.close()
    w, (meta, hs, got) = reopen(wdir)
    w.close()
    assert meta == b"meta" and hs == HardState(2, 2, 2)
    assert got == [Entry(1, 1, data), Entry(2, 2, data[::-1])]


def test_search_index() -> None:
    names = [wal_name(0, 0), wal_name(1, 0x1000), wal_name(2, 0x2000)]
    assert search_index(names, 0x1000) == 1
    assert search_index(names, 0x1FFF) == 1
    assert search_index([wal_name(0, 0), wal_name(1, 0x1000), wal_name(2, 0x800)], 0x4000) == 2
    assert search_index([wal_name(0, 0x10)], 5) == -1


def test_recover_after_cut_with_deleted_segment(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"meta")
    for i in range(10):
        w.save_snapshot(SnapshotRecord(i, 1))
        w.save(None, [Entry(i, 1)])
        w._cut()
    w.close()
    names = [p.name for p in segments(wdir)]
    assert names[4] == wal_name(4, 4)
    (wdir / wal_name(4, 4)).unlink()
    for i in range(10):
        if i <= 4:
            with pytest.raises(SequenceGapError):
                WAL.open(str(wdir), SnapshotRecord(i, 1))
            continue
        w = WAL.open(str(wdir), SnapshotRecord(i, 1))
        meta, _, got = w.read_all()
        w.close()
        assert meta == b"meta"
        assert [e.index for e in got] == list(range(i + 1, 10))


def test_open_at_uncommitted_index(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"")
    w.save(None, [Entry(0, 0)])
    w.close()
    w, (_, _, got) = reopen(wdir)
    w.close()
    assert got == []


def test_open_for_read_beside_writer(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    for i in range(1, 11):
        w.save(None, [Entry(i, 1)])
        w._cut()
    w.release_lock_to(5)
    _, _, got = read(wdir)
    assert got[-1].index == 10
    assert verify(str(wdir)) == HardState()
    w.save(HardState(1, 1, 3), [Entry(11, 1)])  # the writer is unaffected by readers
    w.close()
    assert read(wdir)[2][-1].index == 11


def test_open_with_max_index_entry(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"")
    w.save(None, [Entry(1, 1)])
    w.save(None, [Entry(1, 1)])
    w.close()
    # hand-append an entry at the largest index: must raise, not allocate or crash
    w = WAL.open(str(wdir))
    w.read_all()
    w.enti = (1 << 63) - 2  # bypass the gap check, as a buggy writer would
    w.save(None, [Entry((1 << 63) - 1, 1)])
    w.close()
    with pytest.raises(SliceOutOfRangeError, match=str((1 << 63) - 1)):
        WAL.open_for_read(str(wdir)).read_all()


def test_save_empty_writes_nothing(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    before = w._pw.end if w._pw else -1
    w.save(HardState(), [])
    w.save(None, [])
    assert w._pw is not None and w._pw.end == before
    w.close()


def test_release_lock_to(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    w.release_lock_to(10)  # nothing to release is fine
    assert len(w.locked_paths) == 1
    for i in range(10):
        w.save(None, [Entry(i, 1)])
        w._cut()
    assert len(w.locked_paths) == 11  # segments starting at 0, 1, ..., 10
    w.release_lock_to(5)  # keeps 4, the largest below 5
    assert [parse_wal_name(Path(p).name)[1] for p in w.locked_paths] == list(range(4, 11))
    w.release_lock_to(15)
    assert len(w.locked_paths) == 1
    assert w.locked_paths[0] == w.tail_path
    w.close()


def test_tail_write_without_slack_space(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    w.save(HardState(1, 1, 1), ents(1, 5))
    tail = Path(w.tail_path or "")
    w.close()
    os.truncate(tail, data_end(tail))
    w, (_, _, got) = reopen(wdir)
    assert len(got) == 5
    w.save(HardState(1, 1, 6), ents(6, 10))
    w.close()
    w, (_, hs, got) = reopen(wdir)
    w.close()
    assert got == ents(1, 10) and hs == HardState(1, 1, 6)


def test_torn_write_then_append(wdir: Path) -> None:
    """Zero record 20's bytes: open stops there, zeroes the rest, new appends read back."""
    w = WAL.create(str(wdir), b"m")
    offsets = []
    for i in range(1, 41):
        assert w._pw is not None
        offsets.append(w._pw.end)
        w.save(None, [Entry(i, 1, b"e%d" % i)])
    tail = Path(w.tail_path or "")
    w.close()
    start, end = offsets[19], offsets[20]
    write_at(tail, start, b"\0" * (end - start))
    w, (_, _, got) = reopen(wdir)
    assert [e.index for e in got] == list(range(1, 20))
    w.save(None, [Entry(i, 2, b"n%d" % i) for i in range(20, 25)])
    w.close()
    w, (_, _, got) = reopen(wdir)
    w.close()
    assert len(got) == 19 + 5 and got[-1] == Entry(24, 2, b"n24")


def test_read_all_needs_a_decoder(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    with pytest.raises(WALError, match="decoder"):
        w.read_all()
    w.close()
    w, _ = reopen(wdir)
    with pytest.raises(WALError, match="decoder"):
        w.read_all()
    w.close()


def test_valid_snapshot_entries(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    snaps = [SnapshotRecord(i, 1) for i in range(1, 5)]
    w.save_snapshot(snaps[0])
    w.save(HardState(1, 0, 1), [])
    w.save_snapshot(snaps[1])
    w.save_snapshot(snaps[2])
    w.save(HardState(1, 0, 3), [])
    w.save_snapshot(snaps[3])
    w.close()
    assert valid_snapshot_entries(str(wdir)) == [SnapshotRecord(), *snaps[:3]]


def test_valid_snapshot_entries_after_purged_first_segment(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m", segment_size=64)
    for i in range(1, 20):
        w.save_snapshot(SnapshotRecord(i, 1))
        w.save(HardState(1, 0, i), [Entry(i, 1)])
    w.close()
    assert len(segments(wdir)) > 5
    segments(wdir)[0].unlink()
    got = valid_snapshot_entries(str(wdir))
    assert got and got[-1] == SnapshotRecord(19, 1)


def test_last_record_length_exceeding_file_end_is_a_torn_tail(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m", preallocate=False)
    w.save(None, ents(1, 3))
    tail = Path(w.tail_path or "")
    w.close()
    with open(tail, "ab") as f:
        f.write((1000).to_bytes(8, "little") + b"\x01" * 16)
    _, _, got = read(wdir)
    assert got == ents(1, 3)
    w = WAL.open(str(wdir))
    with pytest.raises(UnexpectedEOFError, match="exceeds file end"):
        w.read_all()
    w.close()


def test_snapshot_not_found_in_write_mode_too(wdir: Path) -> None:
    WAL.create(str(wdir), b"m").close()
    w = WAL.open(str(wdir), SnapshotRecord(0, 7))
    with pytest.raises(SnapshotMismatchError):
        w.read_all()
    w.close()
    w = WAL.open(str(wdir), SnapshotRecord(3, 1))
    with pytest.raises(SnapshotNotFoundError):
        w.read_all()
    w.close()
    with pytest.raises(SnapshotNotFoundError):
        WAL.open_for_read(str(wdir), SnapshotRecord(3, 1)).read_all()
    with pytest.raises(SnapshotNotFoundError):
        verify(str(wdir), SnapshotRecord(3, 1))


def test_read_all_from_snapshot_and_overwrite(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    w.save(HardState(1, 1, 0), ents(1, 10))
    w.save_snapshot(SnapshotRecord(5, 1))
    w.save(HardState(2, 2, 5), ents(8, 12, term=2))  # a new leader overwrites 8..10
    w.close()
    _, hs, got = read(wdir, snapshot=SnapshotRecord(5, 1))
    assert hs == HardState(2, 2, 5)
    assert got == ents(6, 7) + ents(8, 12, term=2)


def test_metadata_conflict(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"one")
    assert w._encoder is not None
    w._write(w._encoder.encode(METADATA, b"two"))
    w.close()
    with pytest.raises(MetadataConflictError, match="offset"):
        read(wdir)


def test_bad_input_is_refused_and_loses_nothing(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    w.save(HardState(1, 1, 1), ents(1, 3))
    with pytest.raises(SliceOutOfRangeError):
        w.save(None, ents(5, 6))
    with pytest.raises(ValueError, match="contiguous"):
        w.save(None, [Entry(4, 1), Entry(6, 1)])
    with pytest.raises(TypeError):
        w.save(None, [Entry(4, 1, "text")])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        w.save(None, [Entry(4, -1)])
    with pytest.raises(ValueError):
        w.save(None, [Entry(4, 1), Entry(5, 1 << 64)])  # fails inside msgpack
    with pytest.raises(ValueError):
        w.save(HardState(1 << 64, 0, 0), ents(4, 4))
    w.save(HardState(1, 1, 4), ents(4, 4))
    w.close()
    _meta, hs, got = read(wdir)
    assert got == ents(1, 4) and hs == HardState(1, 1, 4)
    assert not w.failed


def test_mode_and_order_misuse(wdir: Path) -> None:
    WAL.create(str(wdir), b"m").close()
    r = WAL.open_for_read(str(wdir))
    r.read_all()
    with pytest.raises(WALError, match="read"):
        r.save(None, ents(1, 1))
    r.close()
    w = WAL.open(str(wdir))
    with pytest.raises(WALError, match="read_all"):
        w.save(None, ents(1, 1))
    w.read_all()
    w.close()
    with pytest.raises(WALError, match="closed"):
        w.save(None, ents(1, 1))


def test_commit_only_change_is_not_synced(wdir: Path) -> None:
    syncs: list[float] = []
    w = WAL.create(str(wdir), b"m")
    w.hooks = type(w.hooks)(on_fsync=syncs.append)
    w.save(HardState(1, 1, 0), ents(1, 2))
    assert len(syncs) == 1
    w.save(HardState(1, 1, 2), [])  # commit only
    assert len(syncs) == 1
    w.save(HardState(2, 1, 2), [])  # term change
    assert len(syncs) == 2
    w.close()  # close syncs what is buffered
    assert len(syncs) == 3
    assert read(wdir)[1] == HardState(2, 1, 2)


def test_overwrite_below_the_snapshot_does_not_resurrect_a_stale_tail(wdir: Path) -> None:
    """1..5@1, then 3..4@2 (dropping 5@1), then snapshot 4@2: 5@1 must stay dead."""
    w = WAL.create(str(wdir), b"m")
    w.save(HardState(1, 1, 2), ents(1, 5, term=1))
    w.save(HardState(2, 2, 4), ents(3, 4, term=2))
    w.save_snapshot(SnapshotRecord(4, 2))
    w.close()
    _, hs, got = read(wdir, snapshot=SnapshotRecord(4, 2))
    assert got == [] and hs == HardState(2, 2, 4)
    w = WAL.open(str(wdir), SnapshotRecord(4, 2))
    assert w.read_all()[2] == []
    w.save(None, ents(5, 5, term=2))  # and the next append continues right after 4
    w.close()
    assert read(wdir, snapshot=SnapshotRecord(4, 2))[2] == ents(5, 5, term=2)


def test_snapshot_over_a_conflicting_entry_replaces_the_log(wdir: Path) -> None:
    """raft's restore: entry 6 has term 1, the leader's snapshot says 6@2: drop 7, 8 too."""
    w = WAL.create(str(wdir), b"m")
    w.save(HardState(1, 1, 3), ents(1, 8, term=1))
    w.save_snapshot(SnapshotRecord(6, 2))
    w.save(HardState(2, 0, 6), [])
    w.close()
    assert read(wdir, snapshot=SnapshotRecord(6, 2))[2] == []
    w = WAL.open(str(wdir), SnapshotRecord(6, 2))
    w.read_all()
    w.save(HardState(2, 0, 7), ents(7, 7, term=2))
    w.close()
    assert read(wdir, snapshot=SnapshotRecord(6, 2))[2] == ents(7, 7, term=2)


def test_snapshot_matching_its_entry_keeps_the_log(wdir: Path) -> None:
    """A local compaction snapshot (5@2 over entry 5@2), written after 6..9: keep them."""
    w = WAL.create(str(wdir), b"m")
    w.save(HardState(2, 1, 6), ents(1, 4, term=2))
    w._cut()
    w.save(None, ents(5, 9, term=2))
    w.save_snapshot(SnapshotRecord(5, 2))
    w.close()
    assert read(wdir, snapshot=SnapshotRecord(5, 2))[2] == ents(6, 9, term=2)
    segments(wdir)[0].unlink()  # purged below the snapshot: still readable from it
    assert read(wdir, snapshot=SnapshotRecord(5, 2))[2] == ents(6, 9, term=2)


def test_unused_frame_flag_bits_are_corruption(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    w.save(None, [Entry(1, 1, b"abc")])
    w.save(None, [Entry(2, 1, b"def")])
    w.close()
    seg = segments(wdir)[0]
    raw = bytearray(seg.read_bytes())
    raw[7] |= 0x08  # the crc record's length word: 0x80|pad plus a stray bit
    seg.write_bytes(bytes(raw))
    from wal import CRCMismatchError

    with pytest.raises(CRCMismatchError, match="flags"):
        read(wdir)


def test_stale_pipeline_files_from_a_crash_are_never_reused_with_their_contents(
    wdir: Path,
) -> None:
    w = WAL.create(str(wdir), b"m")
    w.save(None, ents(1, 2))
    w.close()
    junk = os.urandom(5000)
    for name in ("0.tmp", "1.tmp"):
        (wdir / name).write_bytes(junk)
    w, _ = reopen(wdir)
    for i in range(3, 6):
        w.save(None, ents(i, i))
        w._cut()
    w.close()
    assert read(wdir)[2] == ents(1, 5)
    assert verify(str(wdir)) == HardState()
    assert not any(p.name.endswith(".tmp") and p.read_bytes() == junk for p in wdir.iterdir())
