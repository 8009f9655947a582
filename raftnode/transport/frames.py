"""Wire format of the peer transport: pure encode/decode, no I/O.

Stream frames (one websocket binary message each) are msgpack arrays
``[kind, cluster_id, sender_id, body]``: MSGS carries ``list[bytes]`` (a batch of
opaque raft messages), PROBE/PROBE_ACK carry a nonce for round-trip timing.

Snapshot bodies are a sequence of chunks ``u32 length | u32 crc32c | bytes``
(big-endian): the first chunk is the caller's metadata, then data chunks, then a
trailer chunk of length 0 whose CRC field holds crc32c over all data bytes.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import crc32c
import msgpack

KIND_MSGS = 0
KIND_PROBE = 1
KIND_PROBE_ACK = 2
KINDS = (KIND_MSGS, KIND_PROBE, KIND_PROBE_ACK)
MAX_ID = (1 << 64) - 1

CHUNK_HEADER = struct.Struct(">II")
MAX_CHUNK = 4 << 20  # a receiver refuses larger chunks: a bounded read per chunk

HDR_CLUSTER = "X-Raftnode-Cluster-ID"
HDR_FROM = "X-Raftnode-From"
HDR_TO = "X-Raftnode-To"


class FrameError(ValueError):
    """A frame or chunk is malformed, from the wrong cluster, or fails its CRC."""


@dataclass(frozen=True, slots=True)
class Frame:
    kind: int
    cluster_id: int
    sender: int
    body: list[bytes] | int


def encode_msgs(cluster_id: int, sender: int, payloads: list[bytes]) -> bytes:
    return msgpack.packb((KIND_MSGS, cluster_id, sender, payloads))


def encode_probe(kind: int, cluster_id: int, sender: int, nonce: int) -> bytes:
    assert kind in (KIND_PROBE, KIND_PROBE_ACK)
    return msgpack.packb((kind, cluster_id, sender, nonce))


def decode(data: bytes) -> Frame:
    """Decode and type-check one stream frame; raises FrameError on anything else."""
    try:
        obj = msgpack.unpackb(data, raw=False, use_list=True)
    except Exception as exc:  # msgpack raises several unrelated types
        raise FrameError(f"undecodable frame: {exc}") from None
    if not (isinstance(obj, list) and len(obj) == 4):
        raise FrameError("frame is not a 4-element array")
    kind, cid, sender, body = obj
    if kind not in KINDS or not _is_id(cid) or not _is_id(sender):
        raise FrameError(f"bad frame header kind={kind!r}")
    if kind == KIND_MSGS:
        if not isinstance(body, list) or not all(isinstance(p, bytes) for p in body):
            raise FrameError("message batch is not a list of byte strings")
    elif not isinstance(body, int):
        raise FrameError("probe nonce is not an integer")
    return Frame(kind, cid, sender, body)


def _is_id(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_ID


def chunk(data: bytes | memoryview) -> bytes:
    """Frame one snapshot chunk (metadata or data)."""
    assert 0 < len(data) <= MAX_CHUNK, len(data)
    return CHUNK_HEADER.pack(len(data), crc32c.crc32c(data)) + bytes(data)


def trailer(total_crc: int) -> bytes:
    return CHUNK_HEADER.pack(0, total_crc)


def check_chunk(length: int, crc: int, data: bytes, index: int) -> None:
    got = crc32c.crc32c(data)
    if got != crc:
        raise FrameError(f"snapshot chunk {index} ({length} bytes) CRC mismatch: "
                         f"header {crc:#010x}, computed {got:#010x}")
