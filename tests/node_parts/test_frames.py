"""Wire frames: round trips and typed rejection of malformed input."""

from __future__ import annotations

import msgpack
import pytest

from raftnode.transport.frames import (
    CHUNK_HEADER,
    KIND_MSGS,
    KIND_PROBE,
    KIND_PROBE_ACK,
    FrameError,
    check_chunk,
    chunk,
    decode,
    encode_msgs,
    encode_probe,
    trailer,
)

BIG = 2**64 - 1


def test_round_trips() -> None:
    f = decode(encode_msgs(BIG, 1, [b"", b"\x00" * 10, b"abc"]))
    assert (f.kind, f.cluster_id, f.sender, f.body) == (KIND_MSGS, BIG, 1, [b"", b"\x00" * 10,
                                                                           b"abc"])
    p = decode(encode_probe(KIND_PROBE_ACK, 5, 6, 99))
    assert (p.kind, p.body) == (KIND_PROBE_ACK, 99)
    assert decode(encode_probe(KIND_PROBE, 5, 6, 1)).kind == KIND_PROBE


@pytest.mark.parametrize("obj", [
    None, 5, [0, 1, 2], [0, 1, 2, [b"x"], 5], [9, 1, 2, []], [0, -1, 2, []], [0, 1, 2.5, []],
    [0, True, 2, []], [0, 1, 2, ["text"]], [0, 1, 2, b"x"], [1, 1, 2, "nonce"],
])
def test_malformed_frames_are_typed_errors(obj: object) -> None:
    with pytest.raises(FrameError):
        decode(msgpack.packb(obj))


def test_undecodable_bytes() -> None:
    for raw in (b"", b"\xc1", encode_msgs(1, 2, [b"abc"])[:-1]):
        with pytest.raises(FrameError):
            decode(raw)


def test_chunks() -> None:
    c = chunk(b"hello")
    length, crc = CHUNK_HEADER.unpack(c[:8])
    assert length == 5 and c[8:] == b"hello"
    check_chunk(length, crc, b"hello", 0)
    with pytest.raises(FrameError, match=r"chunk 3 .* CRC mismatch"):
        check_chunk(length, crc, b"hellp", 3)
    assert CHUNK_HEADER.unpack(trailer(7)) == (0, 7)
