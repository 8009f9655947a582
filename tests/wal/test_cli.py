"""``python -m wal`` dump / verify / repair, run as a real subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.wal.helpers import ents, segments
from wal import WAL, HardState, SnapshotRecord
from wal.decoder import Decoder
from wal.framing import ENTRY, FRAME_SIZE_BYTES

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wal", *args], capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def _make(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"meta")
    w.save(HardState(2, 1, 3), ents(1, 5))
    w.save_snapshot(SnapshotRecord(3, 2))
    w.close()


def test_dump_json_lists_every_record(wdir: Path) -> None:
    _make(wdir)
    r = _cli("dump", str(wdir), "--json")
    assert r.returncode == 0, r.stderr
    recs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [x["type"] for x in recs] == (
        ["crc", "metadata", "snapshot"] + ["entry"] * 5 + ["state", "snapshot"]
    )
    assert [x["index"] for x in recs if x["type"] == "entry"] == [1, 2, 3, 4, 5]
    assert recs[-2]["commit"] == 3 and recs[-1] == {**recs[-1], "index": 3, "term": 2}
    offs = [x["offset"] for x in recs]
    assert offs == sorted(offs) and all(o % 8 == 0 for o in offs)
    r = _cli("dump", str(wdir), "--json", "--from-index", "4")
    assert [json.loads(x).get("index") for x in r.stdout.splitlines()
            if json.loads(x)["type"] == "entry"] == [4, 5]
    text = _cli("dump", str(wdir))
    assert text.returncode == 0 and "entry" in text.stdout and segments(wdir)[0].name in text.stdout


def test_verify_exit_codes(wdir: Path) -> None:
    _make(wdir)
    r = _cli("verify", str(wdir))
    assert r.returncode == 0 and "commit=3" in r.stdout
    seg = segments(wdir)[0]
    second_entry = [off for rtype, _data, off in Decoder([str(seg)]).records() if rtype == ENTRY][1]
    raw = bytearray(seg.read_bytes())
    raw[second_entry + FRAME_SIZE_BYTES + 4] ^= 0x40  # its type byte, well before the tail
    seg.write_bytes(bytes(raw))
    r = _cli("verify", str(wdir))
    assert r.returncode == 1 and "offset" in r.stderr and segments(wdir)[0].name in r.stderr
    assert _cli("verify", str(wdir.parent / "nope")).returncode == 1


def test_repair_cli(wdir: Path) -> None:
    _make(wdir)
    last = segments(wdir)[-1]
    w = WAL.open_for_read(str(wdir))
    w.read_all()
    end = len(last.read_bytes().rstrip(b"\0"))
    os.truncate(last, end - 3)
    r = _cli("repair", str(wdir))
    assert r.returncode == 0, r.stderr
    assert Path(str(last) + ".broken").exists()
    assert _cli("verify", str(wdir)).returncode == 0
    raw = bytearray(last.read_bytes())
    raw[56 + 8 + 6] ^= 0x01  # inside the first entry's payload (a corrupt length word
    last.write_bytes(bytes(raw))  # here would read as a torn tail, as in etcd)
    assert _cli("repair", str(wdir)).returncode == 1
