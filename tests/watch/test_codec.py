"""The watch stream's request splitter and parser, and its response encoding."""

from __future__ import annotations

import random

import orjson
import pytest

from raftnode.mvcc.errors import InvalidRequest
from raftnode.mvcc.messages import Event, EventType, KeyValue
from raftnode.watch.codec import ObjectSplitter, WatchCancel, WatchProgress, encode, parse_request
from raftnode.watch.hub import Batch, FilterType, WatchCreate, WatchResponse

TRICKY = [{"create_request": {"key": "e30=", "note": "}{\"\\\\", "x": [1, {"y": "]"}]}},
          {"cancel_request": {"watch_id": "3"}}, {"progress_request": {}}, {},
          {"create_request": {"key": "w6k=", "s": "caf\u00e9 \u2603 }"}}]


def test_splitter_finds_objects_in_any_chunking() -> None:
    body = b" \n".join(orjson.dumps(o) for o in TRICKY) + b"\r\n"
    rng = random.Random(3)
    for _ in range(200):
        sp = ObjectSplitter(1 << 16)
        got: list[bytes] = []
        i = 0
        while i < len(body):
            j = i + rng.randint(1, 9)
            got += sp.feed(body[i:j])
            i = j
        sp.finish()
        assert [orjson.loads(g) for g in got] == TRICKY


def test_splitter_rejects_garbage_truncation_and_oversize() -> None:
    with pytest.raises(InvalidRequest, match="expected an object"):
        ObjectSplitter(100).feed(b'{} [1]')
    sp = ObjectSplitter(100)
    sp.feed(b'{"a": "}')
    with pytest.raises(InvalidRequest, match="end of input"):
        sp.finish()
    with pytest.raises(InvalidRequest, match="larger than"):
        ObjectSplitter(10).feed(b'{"a": "0123456789"}')
    with pytest.raises(InvalidRequest, match="larger than"):
        ObjectSplitter(10).feed(b'{"a": "0123')  # not even complete yet


def test_parse_requests() -> None:
    c = parse_request(b'{"createRequest": {"key": "Zm9v", "rangeEnd": "Zm9w", "startRevision":'
                      b' "7", "prevKv": true, "progressNotify": true, "filters": ["NOPUT", 1],'
                      b' "watchId": 4, "fragment": true}}')
    assert c == WatchCreate(b"foo", b"fop", 7, True,
                            frozenset({FilterType.NOPUT, FilterType.NODELETE}), True, 4)
    assert parse_request(b'{"cancel_request": {"watch_id": 2}}') == WatchCancel(2)
    assert parse_request(b'{"progress_request": {}}') == WatchProgress()
    assert parse_request(b'{"unknown": 1}') is None
    for bad, msg in [(b'{"create_request": {"filters": ["NOPE"]}}', "FilterType"),
                     (b'{"create_request": {"key": 5}}', "base64"),
                     (b'{"create_request": {}, "cancel_request": {}}', "more than one"),
                     (b'{"cancel_request": {"watch_id": 1.5}}', "integer")]:
        with pytest.raises(InvalidRequest, match=msg):
            parse_request(bad)


def test_encode_in_proto_field_order_with_zero_values_omitted() -> None:
    prev = KeyValue(b"k", 2, 2, 1, b"old")
    put = Event(EventType.PUT, KeyValue(b"k", 2, 3, 2, b"new", 7), prev)
    dele = Event(EventType.DELETE, KeyValue(b"k", 0, 4, 0), KeyValue(b"k", 2, 3, 2, b"new"))
    batch = Batch(4, [put, dele], 9)
    line = encode(WatchResponse(5, 9, batch, prev_kv=True), b'{"revision":"9"}')
    assert line.endswith(b"}}\n") and line.count(b"\n") == 1
    assert orjson.loads(line) == {"result": {"header": {"revision": "9"}, "watch_id": "5",
        "events": [
            {"kv": {"key": "aw==", "create_revision": "2", "mod_revision": "3", "version": "2",
                    "value": "bmV3", "lease": "7"},
             "prev_kv": {"key": "aw==", "create_revision": "2", "mod_revision": "2",
                         "version": "1", "value": "b2xk"}},
            {"type": "DELETE", "kv": {"key": "aw==", "mod_revision": "4"},
             "prev_kv": {"key": "aw==", "create_revision": "2", "mod_revision": "3",
                         "version": "2", "value": "bmV3"}}]}}
    plain = orjson.loads(encode(WatchResponse(0, 9, batch), b"{}"))["result"]
    assert list(plain) == ["header", "events"] and "prev_kv" not in str(plain)
    full = encode(WatchResponse(-1, 0, created=True, canceled=True, compact_revision=3,
                                cancel_reason='a "reason"'), b"{}")
    assert full == (b'{"result":{"header":{},"watch_id":"-1","created":true,"canceled":true,'
                    b'"compact_revision":"3","cancel_reason":"a \\"reason\\""}}\n')
