"""Frame layout (etcd's length word), payload round trips, and the encoder's fast paths."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from wal import Entry, HardState, SnapshotRecord
from wal.framing import (
    CRC,
    ENTRY,
    FRAME_SIZE_BYTES,
    Encoder,
    decode_frame_size,
    encode_frame_size,
    frame,
    pack_snapshot,
    pack_state,
    unpack_entry,
    unpack_snapshot,
    unpack_state,
)


def test_frame_size_word_matches_etcd() -> None:
    # etcd TestLastRecordLengthExceedFileEnd: length 4 -> 04 00 00 00 00 00 00 84
    word, pad = encode_frame_size(4)
    assert word.to_bytes(8, "little") == bytes.fromhex("0400000000000084") and pad == 4
    assert encode_frame_size(8) == (8, 0)
    for n in range(0, 40):
        word, pad = encode_frame_size(n)
        assert (n + pad) % 8 == 0 and decode_frame_size(word) == (n, pad)
    assert decode_frame_size(0x0E) == (14, 0)  # legacy unpadded frame
    assert FRAME_SIZE_BYTES == 8


@given(st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1), st.integers(0, 255),
       st.binary(max_size=3000))
def test_entry_round_trip(index: int, term: int, etype: int, data: bytes) -> None:
    e = Entry(index, term, data, etype)
    assert unpack_entry(msgpack.packb((index, term, etype, data))) == e


@given(st.builds(HardState, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1),
                 st.integers(0, 2**64 - 1)))
def test_state_round_trip(hs: HardState) -> None:
    assert unpack_state(pack_state(hs)) == hs


@given(st.builds(SnapshotRecord, st.integers(0, 2**64 - 1), st.integers(0, 2**64 - 1)))
def test_snapshot_round_trip(s: SnapshotRecord) -> None:
    assert unpack_snapshot(pack_snapshot(s)) == s


@pytest.mark.parametrize("size", [0, 1, 255, 256, 1023, 1024, 65535, 65536, 70001])
def test_big_entry_fast_path_is_byte_identical(size: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"z" * (size % 256)
    ents = [Entry(7, 3, data, 1), Entry(8, 2**40, data[::-1], 0)]
    parts: list[bytes] = []
    enc = Encoder(0x1234)
    assert enc.encode_entries(ents, parts) == 8
    slow = Encoder(0x1234)
    want = b"".join(
        slow.encode(ENTRY, msgpack.packb((e.index, e.term, e.type, e.data))) for e in ents
    )
    assert b"".join(parts) == want and enc.crc == slow.crc


def test_crc_record_carries_the_chain_without_advancing_it() -> None:
    enc = Encoder(0xDEADBEEF)
    rec = enc.encode(CRC, b"")
    assert rec == frame(CRC, 0xDEADBEEF, b"") and enc.crc == 0xDEADBEEF
    assert len(rec) % 8 == 0


@pytest.mark.parametrize("bad", [b"", b"\xc1", b"\x94\x01", msgpack.packb((1, 2, 3, "s"))])
def test_malformed_payloads_raise_value_error(bad: bytes) -> None:
    with pytest.raises(ValueError):
        unpack_entry(bad)
    with pytest.raises(ValueError):
        unpack_state(bad)
