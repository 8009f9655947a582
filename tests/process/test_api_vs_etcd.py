"""Every API route of a 3-member raftnode cluster next to a real etcd 3.4.

The KV/lease script of ``tests/api/test_vs_etcd.py`` (there against the single-member
LocalService) runs here against real member processes, each request sent to the next
member in turn, so follower forwarding and ReadIndex reads are what answers. JSON is compared
field by field, IDs and terms aside. The maintenance, cluster and plain-HTTP routes, whose
values differ by nature (sizes, hashes, member lists), are compared by status and shape.
Malformed and oversize requests get etcd's 4xx, and every member still serves afterwards.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import orjson
import pytest

from tests.api.test_vs_etcd import (  # the shared script and the etcd 3.4 fixture
    ETCD,
    IDS,
    SCRIPT,
    _norm,
    b64,
    etcd,  # noqa: F401 - a fixture
)
from tests.process.conftest import Harness

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(not os.access(ETCD, os.X_OK),
                                 reason=f"no etcd binary at {ETCD} (apt install etcd-server)")]


def shape(obj: Any) -> Any:
    """The structure of a JSON value: keys and value kinds, not values. Lists merge the
    shapes of their items (member lists differ in length between the two clusters)."""
    if isinstance(obj, dict):
        return {k: shape(v) for k, v in sorted(obj.items())}
    if isinstance(obj, list):
        merged: dict[str, Any] = {}
        kinds = set()
        for v in obj:
            s = shape(v)
            if isinstance(s, dict):
                merged.update(s)
            else:
                kinds.add(repr(s))
        return ["list", merged or sorted(kinds)]
    return type(obj).__name__


async def _get(s: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with s.get(url) as r:
        body = await r.read()
        try:
            return r.status, orjson.loads(body)
        except orjson.JSONDecodeError:
            return r.status, body.decode(errors="replace")


async def _call(s: aiohttp.ClientSession, url: str, path: str, body: Any) -> tuple[int, Any]:
    """POST JSON; a body that is not JSON comes back as text (and fails the comparison)."""
    return await _raw(s, url + path, orjson.dumps(body))


async def _raw(s: aiohttp.ClientSession, url: str, data: bytes) -> tuple[int, Any]:
    async with s.post(url, data=data) as r:
        body = await r.read()
        try:
            return r.status, orjson.loads(body)
        except orjson.JSONDecodeError:
            return r.status, body.decode(errors="replace")


def _strip_learner(body: Any) -> Any:
    return {**body, "members": [{k: v for k, v in m.items() if k != "isLearner"}
                                for m in body["members"]]}


def _etcd_status(want: tuple[int, Any], got: tuple[int, Any]) -> tuple[int, Any]:
    """Debian's etcd 3.4 gateway maps FailedPrecondition to 412; 3.5 (and we) to 400."""
    if want[0] == 412 and got[0] == 400 and isinstance(want[1], dict) \
            and want[1].get("code") == 9:
        return 400, want[1]
    return want


async def test_kv_and_lease_script_matches_etcd(etcd: str, harness: Harness) -> None:  # noqa: F811
    await harness.up(3)
    members = harness.endpoints
    mismatches: list[str] = []
    async with aiohttp.ClientSession() as s:
        for i, (path, body, ignore, loose) in enumerate(SCRIPT):
            want = await _call(s, etcd, path, body)
            got = await _call(s, members[i % len(members)], path, body)
            want = _etcd_status(want, got)
            if loose:
                same = want[0] == got[0] and isinstance(got[1], dict) and \
                    want[1].get("code") == got[1].get("code")
            else:
                same = want[0] == got[0] and _norm(want[1], IDS | ignore) == _norm(
                    got[1], IDS | ignore)
            if not same:
                mismatches.append(f"step {i} {path} {body} (member {i % len(members)}):\n"
                                  f"  etcd: {want[0]} {_norm(want[1], IDS)}\n"
                                  f"  ours: {got[0]} {_norm(got[1], IDS)}")
        lines = []
        for url in (etcd, members[1]):
            await _call(s, url, "/v3/lease/grant", {"TTL": 30, "ID": 77})
            async with s.post(url + "/v3/lease/keepalive", data=b'{"ID":77}{"ID":78}') as r:
                lines.append([_norm(orjson.loads(x), IDS) for x in (await r.read()).splitlines()])
    assert not mismatches, "\n".join(mismatches)
    assert lines[0] == lines[1]
    await harness.converged()


async def test_cluster_maintenance_and_http_routes_match_etcd_shape(
        etcd: str, harness: Harness) -> None:  # noqa: F811
    await harness.up(3)
    ours = harness.endpoints[2]
    diffs: list[str] = []

    def compare(what: str, want: tuple[int, Any], got: tuple[int, Any]) -> None:
        want = _etcd_status(want, got)
        if want[0] != got[0] or shape(want[1]) != shape(got[1]):
            diffs.append(f"{what}:\n  etcd: {want[0]} {want[1]}\n  ours: {got[0]} {got[1]}")

    async with aiohttp.ClientSession() as s:
        for url in (etcd, ours):
            await _call(s, url, "/v3/kv/put", {"key": b64(b"k"), "value": b64(b"v")})
        for path, body in [("/v3/maintenance/status", {}), ("/v3/maintenance/hash", {}),
                           ("/v3/cluster/member/list", {}),
                           ("/v3beta/maintenance/status", {})]:
            compare(f"{path} {body}", await _call(s, etcd, path, body),
                    await _call(s, ours, path, body))
        # etcd 3.4's gateway has no hashkv route (3.5 has): ours answers in 3.5's shape
        st, body = await _call(s, ours, "/v3/maintenance/hashkv", {"revision": "2"})
        assert st == 200 and set(body) == {"header", "hash", "compact_revision",
                                           "hash_revision"}, body
        assert body["hash_revision"] == "2"
        for path in ("/version", "/health"):
            want, got = await _get(s, etcd + path), await _get(s, ours + path)
            if path == "/health" and isinstance(got[1], dict) and got[1].get("reason") == "":
                got = (got[0], {k: v for k, v in got[1].items() if k != "reason"})  # 3.5's
            compare(path, want, got)
        # membership: a learner is added, updated, refused promotion (not started, so not
        # in sync), and removed; then removing it again is an error
        ids = {}
        for name, url in (("etcd", etcd), ("ours", ours)):
            st, body = await _call(s, url, "/v3/cluster/member/add",
                                   {"peerURLs": ["http://127.0.0.1:1"], "isLearner": True})
            assert st == 200, (name, body)
            ids[name] = body["member"]["ID"]
        steps: list[tuple[str, dict[str, Any]]] = [
            ("/v3/cluster/member/update", {"peerURLs": ["http://127.0.0.1:2"]}),
            ("/v3/cluster/member/promote", {}),
            ("/v3/cluster/member/list", {}),
            ("/v3/cluster/member/remove", {}),
            ("/v3/cluster/member/remove", {}),
            ("/v3/cluster/member/promote", {}),
        ]
        for path, extra in steps:
            res = []
            for name, url in (("etcd", etcd), ("ours", ours)):
                body = {"ID": ids[name], **extra}
                if path.endswith("/list"):
                    body = {}
                res.append(await _call(s, url, path, body))
            if path.endswith(("/update", "/list")) and res[1][0] == 200:
                # etcd 3.4 drops the learner flag on member update (its RaftAttributes are
                # replaced whole; 3.5 updates the peer URLs only): ours keeps the learner
                mine = {m["ID"]: m for m in res[1][1]["members"]}
                assert mine[ids["ours"]].get("isLearner") is True, mine
                res = [(st, _strip_learner(b)) for st, b in res]
            compare(path, res[0], res[1])
            if res[0][0] != 200:  # the error itself must be etcd's
                want, got = _etcd_status(res[0], res[1]), res[1]
                if (want[1].get("code"), want[1].get("message")) != (
                        got[1].get("code"), got[1].get("message")):
                    diffs.append(f"{path} error: etcd {want} ours {got}")
        # snapshot: one or more {"result": {"remaining_bytes", "blob"}} lines, same shape
        for name, url in (("etcd", etcd), ("ours", ours)):
            async with s.post(url + "/v3/maintenance/snapshot", data=b"{}") as r:
                assert r.status == 200, name
                lines = [orjson.loads(x) for x in (await r.read()).splitlines() if x.strip()]
            assert lines and all(set(x) == {"result"} for x in lines), (name, lines[:1])
            assert "blob" in lines[0]["result"], name
        # metrics: the etcd names the dashboards use are there
        async with s.get(ours + "/metrics") as r:
            text = (await r.text())
        for m in ("etcd_server_has_leader", "etcd_server_leader_changes_seen_total",
                  "etcd_disk_wal_fsync_duration_seconds_bucket",
                  "etcd_debugging_mvcc_current_revision", "etcd_server_proposals_committed_total"):
            assert m in text, m
    assert not diffs, "\n".join(diffs)


BAD: list[tuple[str, bytes]] = [
    ("/v3/kv/put", b"{not json"),
    ("/v3/kv/put", b'{"key": "%%%"}'),
    ("/v3/kv/put", b'{"key": "Zm9v", "value": 12}'),
    ("/v3/kv/range", b'{"key": "Zm9v", "limit": "many"}'),
    ("/v3/kv/range", b"[1, 2, 3]"),
    ("/v3/kv/txn", b'{"compare": [{"target": "NOPE", "key": "Zm9v"}]}'),
    ("/v3/kv/txn", b'{"success": [{"request_put": 5}]}'),
    ("/v3/lease/grant", b'{"TTL": "x"}'),
    ("/v3/cluster/member/add", b'{"peerURLs": "not-a-list"}'),
    ("/v3/kv/put", b"\xff\xfe\x00garbage"),
    ("/v3/kv/put", b'{"key": "' + b"A" * 1000 + b'", "value": ' + b"[" * 5000 + b"]" * 5000
     + b"}"),
]


async def test_malformed_and_oversize_requests_get_4xx_and_nothing_breaks(
        etcd: str, harness: Harness) -> None:  # noqa: F811
    await harness.up(3)
    members = harness.endpoints
    async with aiohttp.ClientSession() as s:
        for i, (path, data) in enumerate(BAD):
            url = members[i % len(members)]
            want = await _raw(s, etcd + path, data)
            got = await _raw(s, url + path, data)
            assert 400 <= got[0] < 500, (path, data[:60], got)
            assert isinstance(got[1], dict) and got[1].get("code") and got[1].get("error"), got
            assert want[0] == got[0], (path, data[:60], want, got)
        # oversize: 1.75 MiB is over etcd's default --max-request-bytes (1.5 MiB)
        big = orjson.dumps({"key": b64(b"big"), "value": b64(b"x" * (7 << 18))})
        for url in members:
            want = await _raw(s, etcd + "/v3/kv/put", big)
            got = await _raw(s, url + "/v3/kv/put", big)
            assert want[0] == 400 and want[1]["message"] == "etcdserver: request is too large"
            assert (want[0], want[1]) == (got[0], {k: got[1][k] for k in want[1]}), (want, got)
        # far over (3 MiB): etcd's gRPC limit (max-request-bytes + 512 KiB) answers 429 with
        # ResourceExhausted; ours answers 400 "request is too large" (see the report)
        huge = orjson.dumps({"key": b64(b"huge"), "value": b64(b"x" * (3 << 20))})
        for url in members:
            got = await _raw(s, url + "/v3/kv/put", huge)
            assert 400 <= got[0] < 500 and isinstance(got[1], dict) and got[1]["code"], got
        # every member still serves, and nothing of the bad requests was written
        for i, url in enumerate(members):
            st, body = await _call(s, url, "/v3/kv/put", {"key": b64(f"ok{i}".encode()),
                                                          "value": b64(b"1")})
            assert st == 200, body
        st, body = await _call(s, members[0], "/v3/kv/range",
                               {"key": "AA==", "range_end": "AA==", "keys_only": True})
        assert st == 200
        keys = sorted(kv["key"] for kv in body["kvs"])
        assert keys == sorted(b64(f"ok{i}".encode()) for i in range(len(members)))
    assert sorted(harness.running()) == sorted(harness.names())
    await harness.converged()
