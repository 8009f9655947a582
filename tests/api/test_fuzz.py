"""Random JSON at every route: a 200 or a 4xx with etcd's error body, never a 500."""

from __future__ import annotations

import json
from collections.abc import Iterator

import orjson
import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from raftnode.api.local import LocalService
from tests.api.conftest import ThreadedGateway

ROUTES = ["kv/range", "kv/put", "kv/deleterange", "kv/txn", "kv/compaction", "lease/grant",
          "lease/revoke", "lease/timetolive", "lease/leases", "lease/keepalive",
          "maintenance/status", "maintenance/hash", "maintenance/hashkv",
          "maintenance/transfer-leadership", "cluster/member/list", "cluster/member/add",
          "cluster/member/remove", "cluster/member/update", "cluster/member/promote"]
FIELDS = ["key", "range_end", "value", "limit", "revision", "sort_order", "sort_target",
          "lease", "prev_kv", "ID", "TTL", "keys", "compare", "success", "failure",
          "request_put", "request_range", "request_txn", "target", "result", "peerURLs",
          "isLearner", "count_only", "create_revision", "targetID"]
scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                   st.text(max_size=8), st.sampled_from(["Zm9v", "AA==", "EQUAL", "VALUE",
                                                         "-1", "18446744073709551616"]))
value = st.recursive(scalar, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(FIELDS), inner, max_size=4)),
    max_leaves=12)
body = st.one_of(st.dictionaries(st.sampled_from(FIELDS), value, max_size=6),
                 value.map(lambda v: v))


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with ThreadedGateway(LocalService()) as gw:
        yield f"http://127.0.0.1:{gw.port}/v3/"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(ROUTES), body)
def test_random_json_never_crashes(url: str, route: str, obj: object) -> None:
    r = requests.post(url + route, data=json.dumps(obj).encode(), timeout=10)
    assert r.status_code in (200, 400, 404), (route, obj, r.status_code, r.text)
    parsed = [orjson.loads(x) for x in r.content.splitlines()] if route == "lease/keepalive" \
        and r.status_code == 200 else [orjson.loads(r.content)]
    if r.status_code != 200:
        assert set(parsed[0]) == {"error", "code", "message"} and parsed[0]["code"] in (3, 5, 9, 11)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=64))
def test_random_bytes_never_crash(url: str, raw: bytes) -> None:
    r = requests.post(url + "kv/txn", data=raw, timeout=10)
    assert r.status_code in (200, 400), (raw, r.text)
