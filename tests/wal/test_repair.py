"""etcd's repair_test.go: torn tails are repaired with a .broken copy; nothing else is."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.wal.helpers import ents, read, reopen, segments, write_at
from wal import WAL, Entry, UnexpectedEOFError, repair


def _harness(
    wdir: Path, entries: list[Entry], corrupt: Callable[[Path, list[int]], None], expect: int
) -> None:
    w = WAL.create(str(wdir), b"m")
    offsets = []
    for e in entries:
        assert w._pw is not None
        w.save(None, [e])
        offsets.append(w._pw.end)
    w.close()
    last = segments(wdir)[-1]
    corrupt(last, offsets)
    w = WAL.open(str(wdir))
    with pytest.raises(UnexpectedEOFError):
        w.read_all()
    w.close()
    assert repair(str(wdir))
    broken = Path(str(last) + ".broken")
    assert broken.exists() and stat.S_IMODE(broken.stat().st_mode) == 0o600
    w, (_, _, got) = reopen(wdir)
    assert got == entries[:expect]
    w.save(None, ents(expect + 1, expect + 10))
    w.close()
    assert read(wdir)[2] == entries[:expect] + ents(expect + 1, expect + 10)


def test_repair_truncate(wdir: Path) -> None:
    _harness(wdir, ents(1, 10), lambda p, offs: os.truncate(p, offs[-1] - 4), 9)


def test_repair_write_tear_last(wdir: Path) -> None:
    def tear(p: Path, offs: list[int]) -> None:
        end = offs[-1]
        os.truncate(p, 1024)  # drops the bytes past 1024 ...
        os.truncate(p, end)  # ... and extends with zeros: a torn multi-sector write

    entries = ents(1, 50, size=30)
    # as etcd's test: the entries that ended within the first 1024 bytes survive
    w_off = _offsets_for(entries)
    _harness(wdir, entries, tear, sum(1 for o in w_off if o <= 1024))


def test_repair_write_tear_middle(wdir: Path) -> None:
    entries = [Entry(i, 1, os.urandom(4096)) for i in range(1, 6)]
    _harness(wdir, entries, lambda p, offs: write_at(p, 4096 + 512, b"\0" * 512), 1)


def _offsets_for(entries: list[Entry]) -> list[int]:
    """End offsets a fresh WAL would write these single-entry saves at."""
    from wal.framing import CRC, METADATA, SNAPSHOT, Encoder, pack_snapshot
    from wal.records import SnapshotRecord

    enc = Encoder(0)
    off = len(
        enc.encode(CRC, b"")
        + enc.encode(METADATA, b"m")
        + enc.encode(SNAPSHOT, pack_snapshot(SnapshotRecord()))
    )
    out = []
    for e in entries:
        parts: list[bytes] = []
        enc.encode_entries([e], parts)
        off += sum(map(len, parts))
        out.append(off)
    return out


def test_repair_fails_on_a_deleted_dir(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m", segment_size=64)
    for i in range(1, 51):
        w.save(None, [Entry(i, 1)])
    w.close()
    os.truncate(segments(wdir)[-1], 20)
    w = WAL.open(str(wdir))
    with pytest.raises(UnexpectedEOFError):
        w.read_all()
    w.close()
    for p in wdir.iterdir():
        p.unlink()
    wdir.rmdir()
    assert not repair(str(wdir))


def test_repair_refuses_corruption_and_leaves_files_alone(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    w.save(None, [Entry(i, 1, os.urandom(100)) for i in range(1, 11)])
    w.close()
    last = segments(wdir)[-1]
    raw = bytearray(last.read_bytes())
    raw[200] ^= 0x01
    last.write_bytes(bytes(raw))
    assert not repair(str(wdir))
    assert last.read_bytes() == bytes(raw)
    assert not Path(str(last) + ".broken").exists()


def test_repair_of_a_clean_log_changes_nothing(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    w.save(None, ents(1, 3))
    w.close()
    before = segments(wdir)[-1].read_bytes()
    assert repair(str(wdir))
    assert segments(wdir)[-1].read_bytes() == before


def test_repair_refuses_a_locked_log(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m")
    w.save(None, ents(1, 3))
    assert not repair(str(wdir))
    w.close()
