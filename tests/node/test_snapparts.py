"""Snapshot layers framed as parts: every layer's parts join to exactly the bytes that
``msgpack.packb`` of the whole wrote before (so files and peers see no change), and the
region the next incremental snapshot reuses is where the layers say it is."""

from __future__ import annotations

import os

import msgpack
import pytest

import wal.snap as snap_module
from raftnode.driver import pack_snapshot_data, pack_snapshot_parts, unpack_snapshot_data
from raftnode.mvcc.messages import LeaseGrantRequest, PutRequest
from raftnode.mvcc.store import MVCCStore
from raftnode.raft.types import ConfState
from raftnode.snapparts import array_header
from raftnode.statemachine import SNAPSHOT_FORMAT, StateMachine, encode_kv
from wal.records import SnapshotRecord
from wal.snap import (
    Snapshot,
    Snapshotter,
    bin_header,
    decode_snapshot,
    encode_snapshot,
    encode_snapshot_parts,
)


@pytest.mark.parametrize("n", [0, 1, 255, 256, 65535, 65536, 70000])
def test_headers_are_msgpacks_own(n: int) -> None:
    blob = b"x" * n
    assert bin_header(n) + blob == msgpack.packb(blob)
    items = [0] * n
    assert array_header(n) + b"\x00" * n == msgpack.packb(items)


@pytest.mark.parametrize("sizes", [[0], [10], [100, 200], [70_000, 1, 65_000]])
def test_a_snap_file_from_parts_is_the_file_from_bytes(sizes: list[int]) -> None:
    parts = [bytes([i % 251]) * n for i, n in enumerate(sizes)]
    snap = Snapshot(index=9, term=3, data=b"".join(parts))
    framed = b"".join(encode_snapshot_parts(3, 9, parts))
    assert framed == encode_snapshot(snap)
    assert framed.endswith(snap.data)  # a self-contained file: the data, after its header
    assert decode_snapshot(framed) == snap


def _machine() -> StateMachine:
    sm = StateMachine(MVCCStore())
    sm.store.apply(LeaseGrantRequest(60, 3))
    for i in range(300):
        sm.apply_normal(encode_kv(i + 1, PutRequest(b"k%d" % (i % 13), b"v" * i, lease=3 * (i % 2))), i + 1)
    return sm


def test_every_layer_joins_to_what_packb_wrote() -> None:
    sm = _machine()
    store = sm.store.snapshot()
    sm_parts = sm.snapshot_parts()
    members = [[m.id, m.name, list(m.peer_urls), list(m.client_urls), m.is_learner]
               for m in sm.member_list()]
    assert sm_parts.join() == msgpack.packb([SNAPSHOT_FORMAT, store, members,
                                             sorted(sm.removed), list(sm.applied_ids.items())])
    conf = ConfState((1, 2, 3), (4,))
    data = pack_snapshot_parts(conf, sm_parts)
    assert data.join() == msgpack.packb([[1, 2, 3], [4], sm.snapshot()])
    assert data.join() == pack_snapshot_data(conf, sm.snapshot())
    assert unpack_snapshot_data(data.join()) == (conf, sm.snapshot())


def test_the_region_is_the_stores_chunks_in_the_final_bytes() -> None:
    sm = _machine()
    data = pack_snapshot_parts(ConfState((1,), ()), sm.snapshot_parts())
    a, b = data.region_offsets()
    joined = data.join()
    chunks = msgpack.unpackb(sm.store.snapshot())[5]
    assert joined[a:b] == b"".join(msgpack.packb(c) for c in chunks) and data.chunks == 1


@pytest.mark.parametrize("piece", [7, 1000, 2 << 20])
def test_a_snap_file_written_in_synced_pieces_holds_every_byte(tmp_path, monkeypatch,
                                                               piece: int) -> None:
    monkeypatch.setattr(snap_module, "SYNC_PIECE_BYTES", piece)
    parts = [os.urandom(3 * piece + 5), b"", os.urandom(10), os.urandom(piece)]
    path = Snapshotter(tmp_path).save_parts(SnapshotRecord(9, 3), parts)
    want = Snapshot(index=9, term=3, data=b"".join(parts))
    assert path.read_bytes() == encode_snapshot(want)
    assert Snapshotter(tmp_path).load() == want
