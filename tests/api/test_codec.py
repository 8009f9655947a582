"""JSON codec units: input leniency as grpc-gateway's, output as etcd's, strict errors."""

from __future__ import annotations

import msgpack
import pytest

from raftnode.api import codec
from raftnode.mvcc.codec import decode_request, encode_request
from raftnode.mvcc.errors import ErrKeyNotFound, InvalidRequest, RequestDecodeError
from raftnode.mvcc.messages import (
    CompareResult,
    CompareTarget,
    KeyValue,
    PutRequest,
    RangeRequest,
    SortOrder,
    SortTarget,
    TxnRequest,
)


def test_range_request_accepts_both_name_styles_and_int_forms() -> None:
    r = codec.range_request({"key": "YQ", "rangeEnd": "Yg==", "limit": "3", "revision": 7,
                             "sortOrder": 2, "sort_target": "VALUE", "countOnly": True,
                             "min_mod_revision": "-1"})
    assert r == RangeRequest(b"a", b"b", 3, 7, SortOrder.DESCEND, SortTarget.VALUE,
                             count_only=True, min_mod_revision=-1)


def test_int64_bounds_and_uint64_member_ids() -> None:
    assert codec.range_request({"key": "YQ==", "revision": str(2**63 - 1)}).revision == 2**63 - 1
    with pytest.raises(InvalidRequest, match="out of range"):
        codec.range_request({"key": "YQ==", "revision": str(2**63)})
    assert codec.member_id({"ID": str(2**64 - 1)}) == 2**64 - 1
    with pytest.raises(InvalidRequest, match="out of range"):
        codec.member_id({"ID": -1})
    with pytest.raises(InvalidRequest, match="invalid integer"):
        codec.lease_id({"ID": "0x10"})
    with pytest.raises(InvalidRequest, match="expected an integer"):
        codec.lease_id({"ID": True})


def test_compare_value_follows_target_and_empty_op_is_key_not_found() -> None:
    t = codec.txn_request({"compare": [
        {"key": "YQ==", "target": "MOD", "modRevision": "5", "version": 9},
        {"key": "YQ==", "target": "VALUE", "value": "eA=="},
        {"key": "YQ==", "target": "LEASE", "result": "NOT_EQUAL"}]})
    assert [(c.target, c.result, c.value) for c in t.compare] == [
        (CompareTarget.MOD, CompareResult.EQUAL, 5), (CompareTarget.VALUE, CompareResult.EQUAL,
                                                      b"x"),
        (CompareTarget.LEASE, CompareResult.NOT_EQUAL, 0)]
    with pytest.raises(ErrKeyNotFound):
        codec.txn_request({"success": [{}]})
    deep: dict[str, object] = {"request_range": {"key": "YQ=="}}
    for _ in range(40):
        deep = {"request_txn": {"success": [deep]}}
    with pytest.raises(InvalidRequest, match="nested deeper"):
        codec.txn_request({"success": [deep]})


def test_read_only_and_serializable_txns() -> None:
    ro = TxnRequest(success=(RangeRequest(b"a", serializable=True),),
                    failure=(TxnRequest(success=(RangeRequest(b"b", serializable=True),)),))
    assert codec.is_read_only(ro) and codec.is_serializable(ro)
    assert not codec.is_serializable(TxnRequest(success=(RangeRequest(b"a"),)))
    assert not codec.is_read_only(TxnRequest(failure=(PutRequest(b"a"),)))


def test_kv_output_omits_zero_values() -> None:
    assert codec.kv_json(KeyValue(b"k", 0, 5, 0)) == {"key": "aw==", "mod_revision": "5"}
    assert codec.kv_json(KeyValue(b"k", 2, 3, 1, b"\x00", 7)) == {
        "key": "aw==", "create_revision": "2", "mod_revision": "3", "version": "1",
        "value": "AA==", "lease": "7"}


@pytest.mark.parametrize("body, want", [
    ({"key": "YQ==", "value": "Yg=="}, PutRequest(b"a", b"b")),
    ({"key": "YQ=="}, PutRequest(b"a")),
    ({"value": "Yg=="}, PutRequest(b"", b"b")),
    ({}, PutRequest(b"")),
    ({"key": "YQ==", "value": None}, PutRequest(b"a")),
    ({"key": "YQ==", "value": "Yg", "prevKv": True, "lease": "5"}, PutRequest(b"a", b"b", 5, True)),
])
def test_put_request_plain_and_with_options(body: dict[str, object], want: PutRequest) -> None:
    assert codec.put_request(body) == want


@pytest.mark.parametrize("body, fragment", [
    ({"key": "YQ==", "value": 5}, 'field "value": expected a base64 string, got a number'),
    ({"key": "Y!==", "value": "Yg=="}, 'field "key": illegal base64 data'),
])
def test_plain_put_errors_name_the_field(body: dict[str, object], fragment: str) -> None:
    with pytest.raises(InvalidRequest, match=fragment):
        codec.put_request(body)


def test_log_encoding_of_puts_is_the_documented_array() -> None:
    """The raft log holds ``[tag, field...]`` minus trailing defaults (raftnode.mvcc.codec);
    the plain put's shortcut must write exactly that, and read back only well-typed ones."""
    cases = [(PutRequest(b"k", b"v"), [1, b"k", b"v"]), (PutRequest(b"k"), [1, b"k"]),
             (PutRequest(b""), [1, b""]), (PutRequest(b"k", b"", 3), [1, b"k", b"", 3]),
             (PutRequest(b"k", b"v", 0, True), [1, b"k", b"v", 0, True]),
             (PutRequest(b"k", b"", 0, False, False, True), [1, b"k", b"", 0, False, False, True])]
    for req, array in cases:
        assert encode_request(req) == msgpack.packb(array, use_bin_type=True)
        assert decode_request(msgpack.packb(array, use_bin_type=True)) == req
    for bad in ([1, b"k", "v"], [1, "k", b"v"], [1.0, b"k"], [1, b"k", None]):
        with pytest.raises(RequestDecodeError):
            decode_request(msgpack.packb(bad, use_bin_type=True))
