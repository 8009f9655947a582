"""Every gateway route over a real socket, asserting etcd's exact JSON field by field."""

from __future__ import annotations

import base64

import aiohttp
import orjson
import pytest

from tests.api.conftest import Gw


def b64(s: bytes) -> str:
    return base64.b64encode(s).decode()


def err(msg: str, code: int) -> dict[str, object]:
    return {"error": msg, "code": code, "message": msg}


async def test_put_range_exact_json(gw: Gw) -> None:
    assert await gw.post("/v3/kv/put", {"key": b64(b"foo"), "value": b64(b"bar")}) == (
        200, {"header": gw.header(2)})
    kv = {"key": "Zm9v", "create_revision": "2", "mod_revision": "2", "version": "1",
          "value": "YmFy"}
    assert await gw.post("/v3/kv/range", {"key": "Zm9v"}) == (
        200, {"header": gw.header(2), "kvs": [kv], "count": "1"})
    # camelCase, numbers as strings, enums by name and number, v3beta prefix
    st, body = await gw.post("/v3beta/kv/range", {"key": "Zm9v", "rangeEnd": "Zm9w",
                                                   "sortOrder": "DESCEND", "sort_target": 0,
                                                   "limit": "5", "keysOnly": True})
    assert (st, body) == (200, {"header": gw.header(2), "kvs": [
        {k: v for k, v in kv.items() if k != "value"}], "count": "1"})
    assert await gw.post("/v3/kv/range", {"key": b64(b"nope")}) == (200, {"header": gw.header(2)})
    assert await gw.post("/v3/kv/range", {"key": "Zm9v", "count_only": True}) == (
        200, {"header": gw.header(2), "count": "1"})


async def test_put_prev_kv_lease_and_url_safe_base64(gw: Gw) -> None:
    await gw.post("/v3/kv/put", {"key": "-_8=", "value": "YQ"})  # URL-safe, unpadded
    st, body = await gw.post("/v3/kv/put", {"key": b64(b"\xfb\xff"), "value": "Yg==",
                                            "prev_kv": True})
    assert (st, body) == (200, {"header": gw.header(3), "prev_kv": {
        "key": "+/8=", "create_revision": "2", "mod_revision": "2", "version": "1",
        "value": "YQ=="}})


async def test_deleterange_json(gw: Gw) -> None:
    for k in (b"a1", b"a2", b"b"):
        await gw.post("/v3/kv/put", {"key": b64(k), "value": b64(b"x")})
    assert await gw.post("/v3/kv/deleterange", {"key": b64(b"zz")}) == (
        200, {"header": gw.header(4)})
    st, body = await gw.post("/v3/kv/deleterange", {"key": b64(b"a"), "range_end": b64(b"b"),
                                                    "prev_kv": True})
    assert st == 200 and body["header"] == gw.header(5) and body["deleted"] == "2"
    assert [kv["key"] for kv in body["prev_kvs"]] == [b64(b"a1"), b64(b"a2")]
    assert body["prev_kvs"][0] == {"key": b64(b"a1"), "create_revision": "2",
                                   "mod_revision": "2", "version": "1", "value": "eA=="}
    assert await gw.post("/v3/kv/deleterange", {"key": "AA==", "range_end": "AA=="}) == (
        200, {"header": gw.header(6), "deleted": "1"})


async def test_txn_json_as_etcd(gw: Gw) -> None:
    await gw.post("/v3/kv/put", {"key": "Zm9v", "value": "YmFy"})
    txn = {"compare": [{"key": "Zm9v", "target": "CREATE", "create_revision": 0}],
           "success": [{"request_put": {"key": "eA==", "value": "MQ=="}}],
           "failure": [{"request_range": {"key": "Zm9v"}},
                       {"request_txn": {"success": [{"request_put": {"key": "eQ==", "value": "MQ=="}},
                                                    {"request_range": {"key": "eQ=="}}]}},
                       {"requestRange": {"key": "Zm9v"}}]}
    kv = {"key": "Zm9v", "create_revision": "2", "mod_revision": "2", "version": "1",
          "value": "YmFy"}
    assert await gw.post("/v3/kv/txn", txn) == (200, {"header": gw.header(3), "responses": [
        {"response_range": {"header": {"revision": "2"}, "kvs": [kv], "count": "1"}},
        {"response_txn": {"header": {}, "succeeded": True, "responses": [
            {"response_put": {"header": {"revision": "3"}}},
            {"response_range": {"header": {"revision": "3"}, "kvs": [
                {"key": "eQ==", "create_revision": "3", "mod_revision": "3", "version": "1",
                 "value": "MQ=="}], "count": "1"}}]}},
        {"response_range": {"header": {"revision": "3"}, "kvs": [kv], "count": "1"}}]})
    # the docs' example: camelCase compare value, success put
    st, body = await gw.post("/v3/kv/txn", {
        "compare": [{"target": "CREATE", "key": "Zm9v", "createRevision": "2"}],
        "success": [{"requestPut": {"key": "Zm9v", "value": "YmF6"}}]})
    assert (st, body) == (200, {"header": gw.header(4), "succeeded": True, "responses": [
        {"response_put": {"header": {"revision": "4"}}}]})
    # numeric enums as in etcd's e2e test; VALUE compare on a missing key fails
    assert await gw.post("/v3/kv/txn", {"compare": [{"result": 0, "target": 3, "key": "bm8="}]}
                         ) == (200, {"header": gw.header(4)})


async def test_txn_errors(gw: Gw) -> None:
    dup = {"success": [{"request_put": {"key": "YQ=="}}, {"request_put": {"key": "YQ=="}}]}
    assert await gw.post("/v3/kv/txn", dup) == (
        400, err("etcdserver: duplicate key given in txn request", 3))
    put_del = {"success": [{"request_delete_range": {"key": "YQ==", "range_end": "Yg=="}},
                           {"request_txn": {"success": [{"request_put": {"key": "YWE="}}]}}]}
    assert (await gw.post("/v3/kv/txn", put_del))[0] == 400
    ok_then_else = {"success": [{"request_txn": {
        "success": [{"request_put": {"key": "YQ=="}}],
        "failure": [{"request_put": {"key": "YQ=="}}]}}]}
    assert (await gw.post("/v3/kv/txn", ok_then_else))[0] == 200
    assert await gw.post("/v3/kv/txn", {"success": [{"Request": {}}]}) == (
        400, err("etcdserver: key not found", 3))
    many = {"success": [{"request_range": {"key": "YQ=="}}] * 129}
    assert await gw.post("/v3/kv/txn", many) == (
        400, err("etcdserver: too many operations in txn request", 3))
    assert await gw.post("/v3/kv/txn", {"compare": [{"target": "VERSION"}]}) == (
        400, err("etcdserver: key is not provided", 3))
    assert await gw.post("/v3/kv/txn", {"success": [{"request_put": {"key": "YQ==",
                                                                     "lease": 5}}]}) == (
        404, err("etcdserver: requested lease not found", 5))
    assert gw.service.store.revision == 2  # only the then/else txn wrote


async def test_kv_validation_errors(gw: Gw) -> None:
    cases = [
        ("/v3/kv/range", {}, err("etcdserver: key is not provided", 3)),
        ("/v3/kv/put", {"value": "YQ=="}, err("etcdserver: key is not provided", 3)),
        ("/v3/kv/put", {"key": "YQ==", "value": "YQ==", "ignore_value": True},
         err("etcdserver: value is provided", 3)),
        ("/v3/kv/put", {"key": "YQ==", "lease": 1, "ignore_lease": True},
         err("etcdserver: lease is provided", 3)),
        ("/v3/kv/put", {"key": "YQ==", "ignore_value": True}, err("etcdserver: key not found", 3)),
        ("/v3/kv/range", {"key": "YQ==", "revision": 100},
         err("etcdserver: mvcc: required revision is a future revision", 11)),
        ("/v3/kv/compaction", {"revision": "10000"},
         err("etcdserver: mvcc: required revision is a future revision", 11)),
        ("/v3/kv/range", {"key": "YQ==", "sort_order": 7},
         err("etcdserver: invalid sort option", 3)),
    ]
    for path, body, want in cases:
        assert await gw.post(path, body) == (400, want), (path, body)


async def test_compaction_and_compacted_reads(gw: Gw) -> None:
    for v in (b"1", b"2", b"3"):
        await gw.post("/v3/kv/put", {"key": "YQ==", "value": b64(v)})
    assert await gw.post("/v3/kv/compaction", {"revision": 3, "physical": True}) == (
        200, {"header": gw.header(4)})
    assert await gw.post("/v3/kv/range", {"key": "YQ==", "revision": 2}) == (
        400, err("etcdserver: mvcc: required revision has been compacted", 11))
    assert await gw.post("/v3/kv/compaction", {"revision": 3}) == (
        400, err("etcdserver: mvcc: required revision has been compacted", 11))
    st, body = await gw.post("/v3/kv/range", {"key": "YQ==", "revision": 3})
    assert st == 200 and body["kvs"][0]["value"] == b64(b"2")


@pytest.mark.parametrize(("raw", "fragment"), [
    (b'{"key":"Zm9v",', "invalid JSON"),
    (b"[1]", "must be a JSON object"),
    (b'{"key":"!!"}', 'field "key": illegal base64'),
    (b'{"key":5}', 'field "key": expected a base64 string'),
    (b'{"key":"YQ==","limit":-1}', 'field "limit": must not be negative'),
    (b'{"key":"YQ==","limit":"ten"}', 'field "limit": invalid integer'),
    (b'{"key":"YQ==","limit":1.5}', 'field "limit": expected an integer'),
    (b'{"key":"YQ==","revision":"99999999999999999999"}', "out of range"),
    (b'{"key":"YQ==","keys_only":"yes"}', 'field "keys_only": expected true or false'),
    (b'{"key":"YQ==","sort_order":"SIDEWAYS"}', "etcdserver: invalid sort option"),
    (b"\xff\xfe", "invalid JSON"),
])
async def test_malformed_bodies_get_400_with_etcd_body(gw: Gw, raw: bytes, fragment: str) -> None:
    st, body = await gw.post("/v3/kv/range", raw=raw)
    assert st == 400 and set(body) == {"error", "code", "message"}
    assert body["code"] == 3 and body["error"] == body["message"] and fragment in body["message"]


async def test_malformed_txn_and_enum_in_compare(gw: Gw) -> None:
    st, body = await gw.post("/v3/kv/txn", {"compare": [{"key": "YQ==", "result": "MAYBE"}]})
    assert st == 400 and "unknown CompareResult 'MAYBE'" in body["message"]
    st, body = await gw.post("/v3/kv/txn", {"success": "nope"})
    assert st == 400 and 'field "success": expected an array' in body["message"]
    st, body = await gw.post("/v3/kv/txn", {"success": [{"request_put": {"key": "YQ=="},
                                                         "request_range": {"key": "YQ=="}}]})
    assert st == 400 and "more than one" in body["message"]


async def test_oversize_bodies_rejected_and_server_survives(gw: Gw) -> None:
    limit = 64 * 1024
    big = {"key": "YQ==", "value": b64(b"x" * (limit + 100))}
    assert await gw.post("/v3/kv/put", big) == (400, err("etcdserver: request is too large", 3))
    huge = orjson.dumps({"key": "YQ==", "value": b64(b"x" * (4 * limit))})
    async with aiohttp.ClientSession() as fresh:
        async with fresh.post(gw.url + "/v3/kv/put", data=huge) as r:
            assert r.status == 400
            assert orjson.loads(await r.read()) == err("etcdserver: request is too large", 3)
        # chunked upload with no Content-Length
        async def gen():  # type: ignore[no-untyped-def]
            for _ in range(8):
                yield b" " * limit
        async with fresh.post(gw.url + "/v3/kv/range", data=gen()) as r:
            assert r.status == 400
            assert (await r.json())["message"] == "etcdserver: request is too large"
    ok = {"key": "YQ==", "value": b64(b"x" * (limit - 200))}  # JSON > limit, binary < limit
    assert (await gw.post("/v3/kv/put", ok))[0] == 200
    assert gw.service.store.revision == 2


async def test_unknown_fields_ignored_empty_body_is_empty_message(gw: Gw) -> None:
    assert await gw.post("/v3/kv/put", {"key": "YQ==", "whatever": [1, {"x": None}]}) == (
        200, {"header": gw.header(2)})
    st, body = await gw.post("/v3/maintenance/status", raw=b"")
    assert st == 200 and body["version"] == "3.5.0"


async def test_leases(gw: Gw) -> None:
    st, g = await gw.post("/v3/lease/grant", {"TTL": 1, "ID": 0})
    lid = g["ID"]
    assert (st, g) == (200, {"header": gw.header(1), "ID": lid, "TTL": "2"})  # min TTL 2 s
    assert await gw.post("/v3/lease/grant", {"TTL": 5, "ID": lid}) == (
        400, err("etcdserver: lease already exists", 9))
    assert await gw.post("/v3/lease/grant", {"TTL": "9000000001"}) == (
        400, err("etcdserver: too large lease TTL", 11))
    await gw.post("/v3/kv/put", {"key": "YQ==", "value": "MQ==", "lease": lid})
    st, body = await gw.post("/v3/kv/range", {"key": "YQ=="})
    assert body["kvs"][0]["lease"] == lid
    st, ttl = await gw.post("/v3/kv/lease/timetolive", {"ID": lid, "keys": True})
    assert st == 200 and ttl["ID"] == lid and ttl["grantedTTL"] == "2" and ttl["keys"] == ["YQ=="]
    assert int(ttl.get("TTL", "0")) in (0, 1, 2)
    assert await gw.post("/v3/lease/leases", {}) == (
        200, {"header": gw.header(2), "leases": [{"ID": lid}]})
    assert await gw.post("/v3/kv/lease/leases", {}) == (
        200, {"header": gw.header(2), "leases": [{"ID": lid}]})
    assert await gw.post("/v3/lease/timetolive", {"ID": 12345}) == (
        200, {"header": gw.header(2), "ID": "12345", "TTL": "-1"})
    assert await gw.post("/v3/kv/lease/revoke", {"ID": lid}) == (200, {"header": gw.header(3)})
    assert await gw.post("/v3/kv/range", {"key": "YQ=="}) == (200, {"header": gw.header(3)})
    assert await gw.post("/v3/lease/revoke", {"ID": lid}) == (
        404, err("etcdserver: requested lease not found", 5))


async def test_lease_keepalive_stream_lines(gw: Gw) -> None:
    _, g = await gw.post("/v3/lease/grant", {"TTL": 30})
    async with gw.session.post(gw.url + "/v3/lease/keepalive",
                               data=orjson.dumps({"ID": g["ID"]}) + b' {"ID":"777"}\n') as r:
        assert r.status == 200 and r.headers.get("Transfer-Encoding") == "chunked"
        lines = (await r.read()).splitlines()
    assert [orjson.loads(x) for x in lines] == [
        {"result": {"header": gw.header(1), "ID": g["ID"], "TTL": "30"}},
        {"result": {"header": gw.header(1), "ID": "777"}}]  # unknown lease: TTL absent
    st, body = await gw.post("/v3/lease/keepalive", raw=b'{"ID": "x"}')
    assert st == 400 and 'field "ID"' in body["message"]


async def test_lease_expiry_revokes_in_local_mode(gw: Gw) -> None:
    now = [100.0]
    gw.service._clock = lambda: now[0]
    _, g = await gw.post("/v3/lease/grant", {"TTL": 5})
    await gw.post("/v3/kv/put", {"key": "YQ==", "value": "MQ==", "lease": g["ID"]})
    now[0] += 4
    assert gw.service.expire_leases() == []
    assert (await gw.post("/v3/kv/lease/timetolive", {"ID": g["ID"]}))[1]["TTL"] == "1"
    await gw.post("/v3/lease/keepalive", {"ID": g["ID"]})
    now[0] += 4.5
    assert gw.service.expire_leases() == []
    now[0] += 1
    assert gw.service.expire_leases() == [int(g["ID"])]
    assert await gw.post("/v3/kv/range", {"key": "YQ=="}) == (200, {"header": gw.header(3)})


async def test_maintenance_routes(gw: Gw) -> None:
    await gw.post("/v3/kv/put", {"key": "YQ==", "value": "MQ=="})
    st, s = await gw.post("/v3/maintenance/status", {})
    assert st == 200 and s["header"] == gw.header(2) and s["version"] == "3.5.0"
    assert s["leader"] == s["header"]["member_id"]
    assert set(s) >= {"header", "version", "dbSize", "leader", "raftIndex", "raftTerm",
                      "raftAppliedIndex"}
    st, h = await gw.post("/v3/maintenance/hash", {})
    assert st == 200 and h == {"header": gw.header(2), "hash": gw.service.store.hash()}
    st, hk = await gw.post("/v3/maintenance/hashkv", {"revision": 0})
    kv = gw.service.store.hash_kv()
    assert hk == {"header": gw.header(2), "hash": kv.hash, "compact_revision": "-1",
                  "hash_revision": "2"}
    assert await gw.post("/v3/maintenance/hashkv", {"revision": 9}) == (
        400, err("etcdserver: mvcc: required revision is a future revision", 11))
    me = gw.service.header().member_id
    assert await gw.post("/v3/maintenance/transfer-leadership", {"targetID": str(me)}) == (
        200, {"header": gw.header(2)})
    assert await gw.post("/v3/maintenance/transfer-leadership", {"targetID": 1}) == (
        400, err("etcdserver: bad leader transferee", 9))


async def test_snapshot_stream_round_trips(gw: Gw) -> None:
    import hashlib

    from raftnode.mvcc.store import MVCCStore
    for i in range(200):
        await gw.post("/v3/kv/put", {"key": b64(b"k%d" % i), "value": b64(b"v" * 500)})
    async with gw.session.post(gw.url + "/v3/maintenance/snapshot", data=b"{}") as r:
        assert r.status == 200
        results = [orjson.loads(line)["result"] for line in (await r.read()).splitlines()]
    blob = b"".join(base64.b64decode(x.get("blob", "")) for x in results)
    assert [int(x.get("remaining_bytes", 0)) for x in results][-1] == 0
    assert int(results[0]["remaining_bytes"]) == len(blob) - len(base64.b64decode(
        results[0]["blob"]))
    data, digest = blob[:-32], blob[-32:]
    assert hashlib.sha256(data).digest() == digest
    restored = MVCCStore()
    restored.restore(data)
    assert restored.hash() == gw.service.store.hash()


async def test_members(gw: Gw) -> None:
    h = gw.service.header()
    me = {"ID": str(h.member_id), "name": "default", "peerURLs": ["http://localhost:2380"],
          "clientURLs": [gw.url]}
    assert await gw.post("/v3/cluster/member/list", {}) == (
        200, {"header": gw.header(cluster=True), "members": [me]})
    assert await gw.post("/v3/cluster/member/remove", {"ID": 5}) == (
        404, err("etcdserver: member not found", 5))
    assert await gw.post("/v3/cluster/member/promote", {"ID": str(h.member_id)}) == (
        400, err("etcdserver: can only promote a learner member", 9))
    st, body = await gw.post("/v3/cluster/member/add", {"peerURLs": ["http://10.0.0.2:2380"]})
    assert st == 400 and body["message"].startswith("etcdserver: not capable")
    st, body = await gw.post("/v3/cluster/member/update",
                             {"ID": str(h.member_id), "peerURLs": ["http://127.0.0.1:2390"]})
    assert st == 200 and body["members"][0]["peerURLs"] == ["http://127.0.0.1:2390"]
    st, body = await gw.post("/v3/cluster/member/update", {"ID": "1", "peerURLs": [5]})
    assert st == 400 and 'field "peerURLs": expected strings' in body["message"]


async def test_version_health_and_routing(gw: Gw) -> None:
    async with gw.session.get(gw.url + "/version") as r:
        assert r.status == 200 and await r.json() == {"etcdserver": "3.5.0",
                                                      "etcdcluster": "3.5.0"}
    async with gw.session.get(gw.url + "/health") as r:
        assert r.status == 200 and await r.json() == {"health": "true", "reason": ""}
    async with gw.session.get(gw.url + "/v3/kv/range") as r:
        assert r.status == 405
    async with gw.session.post(gw.url + "/v3alpha/kv/range", data=b"{}") as r:
        assert r.status == 404


async def test_unexpected_exception_is_a_500_with_etcd_body(gw: Gw) -> None:
    async def boom(*a: object, **k: object) -> None:
        raise RuntimeError("disk on fire")

    gw.service.status = boom  # type: ignore[method-assign]
    st, body = await gw.post("/v3/maintenance/status", {})
    assert st == 500 and body["code"] == 2 and "disk on fire" in body["message"]
    assert (await gw.post("/v3/kv/range", {"key": "YQ=="}))[0] == 200  # still serving


async def test_keepalive_malformed_streams_get_400(gw: Gw) -> None:
    for raw in (b"[" * 100_000, b'{"ID":1} nope', b"\xff", b"[1]"):
        async with gw.session.post(gw.url + "/v3/lease/keepalive", data=raw) as r:
            assert r.status == 400, raw[:20]
            body = await r.json()
            assert body["code"] == 3 and "request body" in body["message"]
