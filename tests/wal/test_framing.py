"""Frame layout (etcd's length word), payload round trips, and the encoder's fast paths."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given, settings
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


# -- the fixed-width entry payload written by encode_entries -----------------------------------

EDGE_UINTS = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**64 - 1]
EDGE_SIZES = [0, 1, 31, 32, 255, 256, 1023, 1024, 65535, 65536]


def _reference_payload(e: Entry, fixed: bool) -> bytes:
    """The payload as specified, written out independently of wal.framing's structs."""
    if not fixed:
        return msgpack.packb((e.index, e.term, e.type, e.data))
    n = len(e.data)
    binh = b"\xc5" + n.to_bytes(2, "big") if n < 65536 else b"\xc6" + n.to_bytes(4, "big")
    return (
        b"\x94\xce" + e.index.to_bytes(4, "big") + b"\xce" + e.term.to_bytes(4, "big")
        + b"\xcc" + bytes([e.type]) + binh + e.data
    )


def _fits_fixed(ents: list[Entry]) -> bool:
    return all(e.index < 2**32 and e.term < 2**32 and e.type < 256 for e in ents)


def _payloads(stream: bytes) -> list[bytes]:
    """Split a run of entry frames, checking the layout: word, crc, type 2, payload, zeros."""
    out = []
    pos = 0
    while pos < len(stream):
        n, pad = decode_frame_size(int.from_bytes(stream[pos : pos + 8], "little"))
        assert pos % 8 == 0 and (n + pad) % 8 == 0 and stream[pos + 12] == ENTRY
        assert stream[pos + 8 + n : pos + 8 + n + pad] == b"\0" * pad
        out.append(stream[pos + 13 : pos + 8 + n])
        pos += 8 + n + pad
    return out


def _check_batch(ents: list[Entry], prev_crc: int = 0x1234) -> None:
    """encode_entries writes the specified frames, and they read back as the entries."""
    parts: list[bytes] = []
    enc = Encoder(prev_crc)
    assert enc.encode_entries(ents, parts) == ents[-1].index
    fixed = _fits_fixed(ents)
    ref = Encoder(prev_crc)
    want = b"".join(ref.encode(ENTRY, _reference_payload(e, fixed)) for e in ents)
    got = b"".join(parts)
    assert got == want and enc.crc == ref.crc
    for e, payload in zip(ents, _payloads(got), strict=True):
        assert unpack_entry(payload) == e
        assert msgpack.unpackb(payload) == msgpack.unpackb(msgpack.packb(
            (e.index, e.term, e.type, e.data)))


@pytest.mark.parametrize("size", EDGE_SIZES)
@pytest.mark.parametrize("etype", [0, 1, 2, 127, 128, 255, 256])
def test_fixed_width_payload_round_trips_for_every_size_and_type(size: int, etype: int) -> None:
    data = bytes(range(256)) * (size // 256) + b"q" * (size % 256)
    _check_batch([Entry(7, 3, data, etype)])
    _check_batch([Entry(7, 3, data, etype), Entry(8, 3, data[::-1], 0), Entry(9, 4, b"", 1)])


@pytest.mark.parametrize("value", EDGE_UINTS)
def test_fixed_width_payload_round_trips_for_edge_ints(value: int) -> None:
    start = min(value, 2**64 - 3)
    _check_batch([Entry(start, 1, b"x" * 40), Entry(start + 1, 1, b"y" * 2000)])
    _check_batch([Entry(5, value, b"x" * 40, 2), Entry(6, value, b"z" * 1024, 1)])


def test_entries_that_fit_take_the_fixed_width_path() -> None:
    parts: list[bytes] = []
    Encoder().encode_entries([Entry(2**32 - 1, 2**32 - 1, b"abc", 255)], parts)
    assert _payloads(b"".join(parts))[0][:2] == b"\x94\xce"
    # one value out of range sends the whole batch to msgpack's minimal encoding
    parts = []
    Encoder().encode_entries([Entry(1, 1, b"abc"), Entry(2, 2**32, b"abc")], parts)
    assert _payloads(b"".join(parts)) == [msgpack.packb((1, 1, 0, b"abc")),
                                          msgpack.packb((2, 2**32, 0, b"abc"))]


_sizes = st.one_of(st.integers(0, 1200), st.integers(65530, 65600))


@settings(max_examples=150, deadline=None)
@given(
    start=st.one_of(st.integers(0, 2**32 + 2), st.integers(0, 2**64 - 41)),
    terms=st.lists(st.one_of(st.integers(0, 300), st.integers(2**32 - 2, 2**32 + 1)),
                   min_size=1, max_size=40),
    etypes=st.lists(st.integers(0, 260), min_size=40, max_size=40),
    sizes=st.lists(_sizes, min_size=40, max_size=40),
    prev_crc=st.integers(0, 2**32 - 1),
)
def test_any_batch_encodes_as_specified_and_reads_back(
    start: int, terms: list[int], etypes: list[int], sizes: list[int], prev_crc: int
) -> None:
    ents = [
        Entry(start + i, t, bytes([i & 0xFF]) * sizes[i], etypes[i]) for i, t in enumerate(terms)
    ]
    _check_batch(ents, prev_crc)
