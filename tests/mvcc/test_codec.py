"""msgpack encoding of requests for the raft log: round trips and corrupt entries."""

from __future__ import annotations

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftnode.mvcc.codec import decode_request, encode_request
from raftnode.mvcc.errors import RequestDecodeError
from raftnode.mvcc.messages import (
    CompactionRequest,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    LeaseGrantRequest,
    LeaseLeasesRequest,
    LeaseRevokeRequest,
    LeaseTimeToLiveRequest,
    PutRequest,
    RangeRequest,
    Request,
    SortOrder,
    SortTarget,
    TxnRequest,
)

REQUESTS: list[Request] = [
    PutRequest(b"k", b"v"),
    PutRequest(b"k", b"", 7, True, True, False),
    DeleteRangeRequest(b"a", b"\x00", True),
    RangeRequest(b"a", b"b", 3, 4, SortOrder.DESCEND, SortTarget.VALUE, True, True, True,
                 1, 2, 3, 4),
    CompactionRequest(9, True),
    LeaseGrantRequest(10, 0), LeaseGrantRequest(10, 1 << 62), LeaseRevokeRequest(3),
    LeaseTimeToLiveRequest(3, True), LeaseLeasesRequest(),
    TxnRequest((Compare(b"k", CompareTarget.VALUE, CompareResult.NOT_EQUAL, b"x"),
                Compare(b"k", CompareTarget.MOD, CompareResult.LESS, 5, b"z")),
               (PutRequest(b"k", b"v"), TxnRequest(success=(RangeRequest(b"q"),))),
               (DeleteRangeRequest(b"k"),)),
]


@pytest.mark.parametrize("req", REQUESTS, ids=lambda r: type(r).__name__)
def test_round_trip(req: Request) -> None:
    data = encode_request(req)
    back = decode_request(data)
    assert back == req and type(back) is type(req)


def test_plain_put_is_small() -> None:
    assert len(encode_request(PutRequest(b"key", b"value"))) < 16


@given(st.binary(max_size=40), st.binary(max_size=40), st.integers(0, 2**63 - 1), st.booleans())
def test_put_round_trip_property(k: bytes, v: bytes, lease: int, prev: bool) -> None:
    req = PutRequest(k, v, lease, prev)
    assert decode_request(encode_request(req)) == req


@pytest.mark.parametrize("data", [
    b"", b"\xc1", msgpack.packb("put"), msgpack.packb([]), msgpack.packb([99, b"k"]),
    msgpack.packb([1, "text-not-bytes"]), msgpack.packb([1, b"k", b"v", True]),
    msgpack.packb([1, b"k", b"v", 0, 0, 0, 0, 0]), msgpack.packb([4, b"k", b"", 0, 0, 9]),
    msgpack.packb([3, [[b"k", 9, 0, 0, b""]], [], []]),
    msgpack.packb([3, [[b"k", 3, 0, 5, b""]], [], []]),
    msgpack.packb([3, [], [[5, 3]], []]),
    msgpack.packb([3, [], []]),
])
def test_corrupt_entries_raise_typed_error(data: bytes) -> None:
    with pytest.raises(RequestDecodeError):
        decode_request(data)
