"""Snapshot files: etcd's snap/snapshotter_test.go scenarios, plus corruption fuzzing."""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import crc32c
import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wal.errors import (
    EmptySnapshotError,
    NoSnapshotError,
    SliceOutOfRangeError,
    SnapshotBaseGoneError,
    SnapshotCorruptError,
    SnapshotCRCError,
    SnapshotReferenceError,
)
from wal.records import SnapshotRecord
from wal.snap import (
    MAX_CHAIN_FILES,
    MIN_REF_BYTES,
    Segment,
    Snapshot,
    Snapshotter,
    _encode,
    decode_snapshot,
    encode_snapshot,
    parse_snap_name,
    read_header,
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


# --- chained files (format 2) ---


def _chunk(n: int = MIN_REF_BYTES) -> bytes:
    """A large part: fresh random bytes, a new object each time."""
    return os.urandom(n)


def _save(s: Snapshotter, index: int, parts: list[bytes | memoryview | bytearray]) -> Path:
    return s.save_parts(SnapshotRecord(index, 1), parts, purge=False)


def _refs(s: Snapshotter, path: Path) -> set[str]:
    header = s.read_header(path.name)
    assert header is not None
    return header.references()


def _literal_bytes(s: Snapshotter, path: Path) -> int:
    header = s.read_header(path.name)
    assert header is not None
    return sum(seg.length for seg in header.segments if not seg.name)


def test_chained_saves_round_trip_and_write_only_new_bytes(tmp_path: Path) -> None:
    """Parts handed again (the same objects) are referenced, not written: each file holds
    about its new bytes, and every file reads back as the join of its parts."""
    s = Snapshotter(tmp_path, max_snapshots=0)
    chunks = [_chunk(4 * MIN_REF_BYTES) for _ in range(8)]  # 2 MiB of old state
    wanted: dict[str, bytes] = {}
    for i in range(1, 31):
        if i > 1:
            chunks.append(_chunk())
        if i % 7 == 0:
            chunks[i % 5] = _chunk(2 * MIN_REF_BYTES)  # a repacked chunk: new object
        parts: list[bytes | memoryview | bytearray] = [
            msgpack.packb(["head", i]), *chunks, memoryview(b"tail%d" % i)]
        path = _save(s, i, parts)
        wanted[path.name] = b"".join(parts)
        if i == 2:  # one new chunk and two small parts: the rest is referenced
            size = path.stat().st_size
            assert MIN_REF_BYTES < size < MIN_REF_BYTES + 4096
            assert size * 30 < len(wanted[path.name])
            assert _refs(s, path) == {snap_name(1, 1)}
    fresh = Snapshotter(tmp_path)  # nothing in memory: reads go by the files alone
    for name, data in wanted.items():
        assert fresh.read(name).data == data
    assert fresh.load().data == wanted[snap_name(1, 30)]
    total = sum(p.stat().st_size for p in tmp_path.iterdir())
    assert total < 0.1 * sum(map(len, wanted.values()))


def test_only_the_same_large_immutable_object_is_referenced(tmp_path: Path) -> None:
    """Identity, not content: an equal copy, a bytearray (it may change) or a small part
    is written again."""
    s = Snapshotter(tmp_path)
    big, mutable, small = _chunk(), bytearray(_chunk()), b"s" * 100
    _save(s, 1, [big, mutable, small])
    path = _save(s, 2, [bytes(bytearray(big)), mutable, small, big, memoryview(big)])
    header = s.read_header(path.name)
    assert header is not None
    assert [seg.name for seg in header.segments] == ["", snap_name(1, 1), ""]  # `big`, once
    assert header.segments[1].length == len(big)
    assert s.read(path.name).data == big + mutable + small + big + big


def test_a_chain_references_at_most_max_chain_files(tmp_path: Path) -> None:
    """A new chunk per save: the references pile up to MAX_CHAIN_FILES, then the save folds
    the smaller files' bytes into itself (never the base's), size-tiered, so a byte is
    rewritten a few times over a long run, not once per save; and data still reads."""
    s = Snapshotter(tmp_path, max_snapshots=0)
    chunks = [_chunk(32 * MIN_REF_BYTES)]  # the base: 2 MiB
    wanted = {}
    written = folds = 0
    saves = 12 * MAX_CHAIN_FILES
    for i in range(1, saves + 1):
        chunks.append(_chunk())
        path = _save(s, i, list(chunks))
        if i % 10 == 0 or i == saves:
            wanted[path.name] = b"".join(chunks)
        refs = _refs(s, path)
        assert len(refs) <= MAX_CHAIN_FILES
        literal = _literal_bytes(s, path)
        written += literal
        if i > 1:
            assert snap_name(1, 1) in refs  # the base holds the most: never rewritten
            folds += literal > 2 * MIN_REF_BYTES
    new = sum(map(len, chunks))  # what a perfect writer would write over the whole run
    assert folds >= 2 and written < 3 * new, (folds, written / new)
    fresh = Snapshotter(tmp_path)
    for name, data in wanted.items():
        assert fresh.read(name).data == data


def test_purge_keeps_referenced_ancestors_and_drops_the_rest(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path, max_snapshots=2)
    a, b = _chunk(), _chunk()
    for i in range(1, 6):  # each file: the base's a and b, plus a chunk of its own
        s.save_parts(SnapshotRecord(i, 1), [a, b, _chunk()])
    assert s.names() == [snap_name(1, 5), snap_name(1, 4), snap_name(1, 1)]
    assert s.load().data[: 2 * MIN_REF_BYTES] == a + b
    assert Snapshotter(tmp_path).read(snap_name(1, 4)).data[: 2 * MIN_REF_BYTES] == a + b
    # protect keeps a file, and what it references, beyond max_snapshots
    s2 = Snapshotter(tmp_path / "p", max_snapshots=1)
    for i in range(1, 4):
        s2.save_parts(SnapshotRecord(i, 1), [a, b, _chunk()], purge=False)
    s2.save_parts(SnapshotRecord(4, 1), [_chunk()], purge=False)  # references nothing
    assert s2.purge(protect=3) == [tmp_path / "p" / snap_name(1, 2)]
    assert s2.names() == [snap_name(1, 4), snap_name(1, 3), snap_name(1, 1)]


def _chain_of_three(tmp_path: Path) -> tuple[Snapshotter, Snapshot, Path, Path]:
    """An independent file at 1, a base at 2, and a file at 3 that references the base."""
    s = Snapshotter(tmp_path, max_snapshots=0)
    _save(s, 1, [b"one"])
    a, b = _chunk(), _chunk()
    base = _save(s, 2, [a, b])
    top = _save(s, 3, [a, b, b"tail"])
    assert _refs(s, top) == {base.name}
    return s, Snapshot(index=1, term=1, data=b"one"), base, top


def test_a_flipped_bit_in_a_referenced_file_names_that_file_and_offset(tmp_path: Path) -> None:
    s, one, base, top = _chain_of_three(tmp_path)
    header = s.read_header(top.name)
    assert header is not None
    second = header.segments[1]
    assert second.name == base.name
    raw = bytearray(base.read_bytes())
    raw[second.offset + 7] ^= 0x10
    base.write_bytes(bytes(raw))
    with pytest.raises(SnapshotCRCError, match=f"in .*{base.name} \\(referenced by .*{top.name}"
                                               f"\\) at offset {second.offset} "):
        s.read(top.name)
    assert s.load() == one  # both the referencing file and the base itself are broken
    assert sorted(os.listdir(tmp_path)) == [snap_name(1, 1), base.name + ".broken",
                                            top.name + ".broken"]


def test_a_file_whose_base_is_gone_is_skipped_not_renamed(tmp_path: Path) -> None:
    """A missing referenced file: the referencing one is not a snapshot any more, but it
    is not damaged either (newer files may still need its bytes): skipped, left as is."""
    s, one, base, top = _chain_of_three(tmp_path)
    base.unlink()
    with pytest.raises(SnapshotBaseGoneError, match=f"{top.name} references .*{base.name}"):
        s.read(top.name)
    assert s.load_newest_available([SnapshotRecord(1, 1), SnapshotRecord(3, 1)]) == one
    assert top.exists() and not list(tmp_path.glob("*.broken"))


def test_falling_back_past_a_base_whose_own_base_was_purged_keeps_it(tmp_path: Path) -> None:
    """Purge keeps a file that a kept one references, not what *it* references. Loading
    that falls back past such a base skips it without renaming it: a rename would break
    every file that still reads through it."""
    s = Snapshotter(tmp_path, max_snapshots=2)
    a, b, c, d = _chunk(), _chunk(), _chunk(), _chunk()
    f1 = s.save_parts(SnapshotRecord(1, 1), [a])
    f2 = s.save_parts(SnapshotRecord(2, 1), [a, b])  # a in f1
    f3 = s.save_parts(SnapshotRecord(3, 1), [b, c])  # b in f2
    f4 = s.save_parts(SnapshotRecord(4, 1), [b, c, d])  # b in f2, c in f3
    # kept: f4, f3 (the newest two) and f2 (their base); f1 (only f2's base) went
    assert s.names() == [f4.name, f3.name, f2.name] and not f1.exists()
    with pytest.raises(SnapshotBaseGoneError):
        s.read(f2.name)
    raw = bytearray(f4.read_bytes())
    raw[-1] ^= 1  # f4's own literal bytes: damaged
    f4.write_bytes(bytes(raw))
    wanted = [SnapshotRecord(2, 1), SnapshotRecord(4, 1)]  # f3 as if orphaned
    with pytest.raises(NoSnapshotError):
        Snapshotter(tmp_path).load_newest_available(wanted)
    assert (tmp_path / (f4.name + ".broken")).exists() and f2.exists()
    assert Snapshotter(tmp_path).load() == Snapshot(3, 1, b + c)  # still reads through f2


def test_a_reference_outside_literal_data_is_refused(tmp_path: Path) -> None:
    s, _, base, _ = _chain_of_three(tmp_path)
    header = s.read_header(base.name)
    assert header is not None
    head = base.read_bytes()[:20]  # the prefix and header: not literal data
    bad = Segment(base.name, 0, 20, crc32c.crc32c(head))
    name = snap_name(1, 4)
    parts, _ = _encode(name, 1, 4, [(head, bad)])
    (tmp_path / name).write_bytes(b"".join(parts))
    with pytest.raises(SnapshotReferenceError, match=f"{name} references bytes 0..20 of .*{base.name}"):
        s.read(name)
    past = Segment(base.name, header.end - 10, 20, 0)  # runs off the end of the base
    parts, _ = _encode(name, 1, 4, [(b"x" * 20, past)])
    (tmp_path / name).write_bytes(b"".join(parts))
    with pytest.raises(SnapshotReferenceError, match="not literal data"):
        s.read(name)


def test_a_torn_chained_file_is_corrupt_and_load_falls_back(tmp_path: Path) -> None:
    s, _, _, top = _chain_of_three(tmp_path)
    raw = top.read_bytes()
    for cut in (1, 3, 12, 30, len(raw) - 1):
        top.write_bytes(raw[:cut])
        with pytest.raises(SnapshotCorruptError):
            s.read(top.name)
    top.write_bytes(raw + b"\0")  # a tail past what the header says: not ours either
    with pytest.raises(SnapshotCorruptError, match="its header says"):
        s.read(top.name)
    top.write_bytes(raw[:-1])
    assert s.load().index == 2
    assert (tmp_path / (top.name + ".broken")).exists()


class _CountingFile(io.FileIO):
    def __init__(self, path: Path) -> None:
        super().__init__(path, "rb")
        self.count = 0

    def read(self, size: int | None = -1) -> bytes:
        got = super().read(size)
        self.count += len(got or b"")
        return got or b""


def test_the_header_is_read_without_the_payload(tmp_path: Path) -> None:
    s = Snapshotter(tmp_path)
    data = [_chunk(8 << 20)] + [_chunk() for _ in range(100)]
    path = _save(s, 1, data)
    path2 = _save(s, 2, [*data, b"more"])
    for p, extra in ((path, 0), (path2, 4)):
        with _CountingFile(p) as f:
            header = read_header(f, str(p))
        assert header.size == sum(map(len, data)) + extra
        assert f.count < 1 << 20
    first = s.read_header(path.name)
    assert first is not None and first.end > 8 << 20
    with open(path, "r+b") as f:  # the payload cut in half: the header still parses...
        f.truncate(first.end - first.size // 2)
    assert s.read_header(path.name) == first
    with pytest.raises(SnapshotCorruptError, match="torn"):  # ...the data does not
        s.read(path.name)


def test_format_1_files_still_load(tmp_path: Path) -> None:
    body = msgpack.packb([4, 9, b"old state" * 1000])
    (tmp_path / snap_name(4, 9)).write_bytes(msgpack.packb([1, crc32c.crc32c(body), body]))
    s = Snapshotter(tmp_path, max_snapshots=1)
    assert s.read_header(snap_name(4, 9)) is None
    assert s.load() == Snapshot(index=9, term=4, data=b"old state" * 1000)
    path = s.save(Snapshot(index=10, term=4, data=b"new"))  # format 2 beside it; purged
    assert s.names() == [path.name]
    assert s.load() == Snapshot(index=10, term=4, data=b"new")


def test_purge_spares_what_a_save_in_progress_references(tmp_path: Path) -> None:
    """A save in a worker thread references the old base; meanwhile the disk thread saves
    a newer snapshot and purges: the base survives on the in-progress save's pin."""
    s = Snapshotter(tmp_path, max_snapshots=1)
    a, b = _chunk(), _chunk()
    base = s.save_parts(SnapshotRecord(1, 1), [a, b])
    reached, go = threading.Event(), threading.Event()

    def hold() -> None:  # the worker's temp file is written; the rename waits for `go`
        reached.set()
        go.wait(30)
    s._before_rename = hold
    failed: list[BaseException] = []

    def worker() -> None:
        try:
            s.save_parts(SnapshotRecord(2, 1), [a, b, b"tail"], purge=False)
        except BaseException as exc:  # pragma: no cover - reported below
            failed.append(exc)
    t = threading.Thread(target=worker)
    t.start()
    assert reached.wait(30)
    s._before_rename = None
    newer = s.save(Snapshot(index=5, term=1, data=b"from the leader"))  # purges
    assert base.exists()  # only the pin keeps it: the newest file references nothing
    go.set()
    t.join(30)
    assert not failed
    assert Snapshotter(tmp_path).read(snap_name(1, 2)).data == a + b + b"tail"
    s.purge()  # the save is done: nothing pins the base any more
    assert s.names() == [newer.name]


def test_purge_looks_again_when_a_save_lands_while_it_reads_headers(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A save that renames its file (referencing an old one) and unpins between purge's
    listing and its decision would be missed by both: purge lists again."""
    s = Snapshotter(tmp_path, max_snapshots=1)
    a, b = _chunk(), _chunk()
    old = s.save_parts(SnapshotRecord(1, 1), [a, b])
    Snapshotter(tmp_path, max_snapshots=0).save(Snapshot(index=2, term=1, data=b"other"))
    references = Snapshotter._references
    landed: list[Path] = []

    def save_meanwhile(self: Snapshotter, name: str) -> set[str]:
        if not landed:
            landed.append(self.save_parts(SnapshotRecord(3, 1), [a, b, b"t"], purge=False))
        return references(self, name)
    monkeypatch.setattr(Snapshotter, "_references", save_meanwhile)
    assert s.purge() == [tmp_path / snap_name(1, 2)]
    assert s.names() == [landed[0].name, old.name]
    assert Snapshotter(tmp_path).load().data == a + b + b"t"
