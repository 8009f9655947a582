"""Corruption is reported, typed, with file and offset; random bytes never crash the decoder."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.wal.helpers import segments
from wal import WAL, CRCMismatchError, Entry, HardState, UnexpectedEOFError, WALError, verify
from wal.decoder import Decoder
from wal.framing import FRAME_SIZE_BYTES, decode_frame_size


def _frames(path: Path) -> list[tuple[int, int]]:
    """(offset, end) of each frame in a segment, walked from the length words."""
    raw = path.read_bytes()
    out = []
    off = 0
    while off + 8 <= len(raw):
        word = int.from_bytes(raw[off : off + 8], "little")
        if word == 0:
            break
        n, pad = decode_frame_size(word)
        end = off + FRAME_SIZE_BYTES + n + pad
        out.append((off, end))
        off = end
    return out


_GOLDEN: dict[str, bytes] = {}


def _golden(tmp: Path) -> dict[str, bytes]:
    """A multi-segment WAL with random payloads, kept as bytes to restore between examples."""
    if _GOLDEN:
        return _GOLDEN
    d = tmp / "golden"
    rnd = random.Random(7)
    w = WAL.create(str(d), b"meta", segment_size=3000, preallocate=False)
    i = 0
    for _ in range(12):
        batch = [Entry(i + k + 1, 1, rnd.randbytes(rnd.randint(60, 500))) for k in range(3)]
        i += 3
        w.save(HardState(1, 1, i), batch)
    w.close()
    assert len(segments(d)) >= 3
    _GOLDEN.update({p.name: p.read_bytes() for p in segments(d)})
    return _GOLDEN


def _restore(d: Path, golden: dict[str, bytes]) -> None:
    d.mkdir(parents=True, exist_ok=True)
    for p in d.iterdir():
        p.unlink()
    for name, raw in golden.items():
        (d / name).write_bytes(raw)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_bit_flip_before_the_tail_is_crc_mismatch_naming_file_and_offset(
    tmp_path: Path, data: st.DataObject
) -> None:
    d = tmp_path / "wal"
    _restore(d, _golden(tmp_path))
    paths = segments(d)
    seg = data.draw(st.integers(0, len(paths) - 1), label="segment")
    frames = _frames(paths[seg])
    if seg == 0:
        frames = frames[1:]  # the first crc record starts the chain: any value is accepted
    if seg == len(paths) - 1:
        frames = frames[:-1]  # the very last record is the tail
    off, end = data.draw(st.sampled_from(frames), label="frame")
    # anywhere in the record or its padding (the length word may legitimately read as a
    # torn tail in the last segment, so it is covered for earlier segments only)
    lo = off if seg < len(paths) - 1 else off + FRAME_SIZE_BYTES
    pos = data.draw(st.integers(lo, end - 1), label="byte")
    bit = data.draw(st.integers(0, 7), label="bit")
    raw = bytearray(paths[seg].read_bytes())
    raw[pos] ^= 1 << bit
    paths[seg].write_bytes(bytes(raw))
    for reader in (
        lambda: WAL.open_for_read(str(d)).read_all(),
        lambda: verify(str(d)),
    ):
        with pytest.raises(CRCMismatchError) as exc:
            reader()
        msg = str(exc.value)
        assert paths[seg].name in msg
        got = int(re.search(r"offset (\d+)", msg).group(1))  # type: ignore[union-attr]
        if pos >= off + FRAME_SIZE_BYTES or seg == len(paths) - 1:
            assert got == off
        else:  # a flipped length word mis-frames this record; it is caught at or after it
            assert got >= off


@settings(max_examples=300, deadline=None)
@given(blob=st.binary(max_size=4096), last=st.booleans())
def test_decoder_fuzz_raises_only_wal_errors(tmp_path_factory: pytest.TempPathFactory,
                                             blob: bytes, last: bool) -> None:
    d = tmp_path_factory.mktemp("fuzz")
    p = d / "f.wal"
    p.write_bytes(blob)
    paths = [str(p)] if last else [str(p), str(p)]
    dec = Decoder(paths)
    n = 0
    try:
        for _ in dec.records():
            n += 1
            assert n <= len(blob) // 8 * 2 + 2  # every record consumes at least one frame
    except WALError:
        pass


@settings(max_examples=100, deadline=None)
@given(blob=st.binary(min_size=8, max_size=2048))
def test_random_tail_on_a_real_log_is_typed(tmp_path_factory: pytest.TempPathFactory,
                                            blob: bytes) -> None:
    d = tmp_path_factory.mktemp("fz") / "wal"
    w = WAL.create(str(d), b"m", preallocate=False)
    w.save(HardState(1, 1, 1), [Entry(1, 1, b"x")])
    w.close()
    with open(segments(d)[-1], "ab") as f:
        f.write(blob)
    try:
        WAL.open_for_read(str(d)).read_all()
    except WALError:
        pass


def test_corruption_in_an_earlier_segment_is_never_a_torn_tail(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m", segment_size=512, preallocate=False)
    for i in range(1, 30):
        w.save(None, [Entry(i, 1, os.urandom(40))])
    w.close()
    first = segments(wdir)[0]
    os.truncate(first, first.stat().st_size - 3)
    with pytest.raises(CRCMismatchError, match=first.name):
        WAL.open_for_read(str(wdir)).read_all()
    with pytest.raises(CRCMismatchError):
        verify(str(wdir))


def test_torn_tail_tolerated_by_readers_but_not_by_writers(wdir: Path) -> None:
    w = WAL.create(str(wdir), b"m", preallocate=False)
    w.save(None, [Entry(i, 1, b"a" * 100) for i in range(1, 6)])
    w.close()
    last = segments(wdir)[-1]
    os.truncate(last, last.stat().st_size - 50)
    assert [e.index for e in WAL.open_for_read(str(wdir)).read_all()[2]] == [1, 2, 3, 4]
    verify(str(wdir))
    w = WAL.open(str(wdir))
    with pytest.raises(UnexpectedEOFError, match=last.name):
        w.read_all()
    w.close()
