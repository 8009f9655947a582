"""The etcd3gw client (PyPI, unchanged) against a 3-member raftnode cluster and a 3-member etcd.

Every test body runs against both targets and asserts the same thing: values, revisions
relative to a baseline read at the start, and errors (class, gRPC code, message). Requests
go to different members in turn (writes through followers, reads from another member,
watches on a third), so forwarding and relaying are what answers. Where etcd 3.4 and raftnode
differ by a documented choice (docs/conformance.md), the test asserts that difference.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import etcd3gw
import pytest
import requests
from etcd3gw.lease import Lease
from etcd3gw.utils import LOCK_PREFIX, _increment_last_byte

from tests.conformance.targets import Target, b64

pytestmark = pytest.mark.timeout(120)

Exc = etcd3gw.exceptions


def unique(tag: str) -> str:
    return f"/conf/{tag}/{uuid.uuid4().hex[:8]}/"


def clients(target: Target) -> tuple[Any, Any, Any]:
    """(writer, reader, watcher): one etcd3gw client per member."""
    a, b, c = target.names
    return target.client(a), target.client(b), target.client(c)


def error_of(fn: Callable[[], object]) -> tuple[type, int, str]:
    """(exception class, gRPC code, message) of a call that must fail with etcd's error."""
    with pytest.raises(Exc.Etcd3Exception) as ei:
        fn()
    body = json.loads(ei.value.detail_text)
    return type(ei.value), int(body["code"]), body.get("message") or body["error"]


def take(events: Iterator[dict[str, Any]], n: int, timeout: float = 10.0
         ) -> list[dict[str, Any]]:
    """The next n events of an etcd3gw watch iterator, or fail after ``timeout``."""
    pool = ThreadPoolExecutor(1)
    try:
        return pool.submit(lambda: [next(events) for _ in range(n)]).result(timeout)
    finally:
        pool.shutdown(wait=False)


def rel(meta: dict[str, Any], base: int) -> tuple[int, int, int]:
    """(create, mod) revisions relative to the baseline, and the version."""
    return (int(meta["create_revision"]) - base, int(meta["mod_revision"]) - base,
            int(meta["version"]))


def ev(e: dict[str, Any], base: int) -> tuple[str, bytes, bytes | None, int, str | None]:
    """An etcd3gw event as (type, key, value, revision - base, prev value as sent)."""
    return (e.get("type", "PUT"), e["kv"]["key"], e["kv"].get("value"),
            int(e["kv"]["mod_revision"]) - base, e.get("prev_kv", {}).get("value"))


# ------------------------------------------------------------------------- discovery, KV

def test_version_discovery_and_status(target: Target) -> None:
    for name in target.names:
        c = target.client(name)
        assert c.api_path == "/v3/"
        st = c.status()
        version = tuple(int(x) for x in st["version"].split(".")[:2])
        # documented difference: raftnode speaks (and claims) the 3.5 API
        assert version == ((3, 4) if target.kind == "etcd" else (3, 5))
        assert st["leader"] == target.status(target.leader())["header"]["member_id"]
    v = requests.get(target.endpoint(target.names[0]) + "/version", timeout=5).json()
    assert set(v) >= {"etcdserver", "etcdcluster"}


def test_put_get_prefix_delete(target: Target) -> None:
    w, r, s = clients(target)
    p = unique("kv")
    base = target.revision()
    assert w.put(p + "a", "1") is True
    assert w.put(p + "b", "2") is True
    assert r.put(p + "a", "3") is True
    assert s.put(p + "c/x", b"\x00\xffbin") is True
    assert r.get(p + "a") == [b"3"]
    assert s.get(p + "missing") == []
    (value, meta), = r.get(p + "a", metadata=True)
    assert (value, meta["key"], rel(meta, base)) == (b"3", (p + "a").encode(), (1, 3, 2))
    got = [(v, m["key"], rel(m, base)) for v, m in s.get_prefix(p)]
    assert got == [(b"3", (p + "a").encode(), (1, 3, 2)), (b"2", (p + "b").encode(), (2, 2, 1)),
                   (b"\x00\xffbin", (p + "c/x").encode(), (4, 4, 1))]
    desc = [m["key"] for _, m in w.get_prefix(p, sort_order="descend", sort_target="mod")]
    assert desc == [(p + k).encode() for k in ("c/x", "a", "b")]
    assert r.get(p + "a", revision=base + 1) == [b"1"]
    assert r.get(p, range_end=_increment_last_byte(p), count_only=True) == []
    target.wait_applied(base + 4)
    for name in target.names:  # every member's own state, no read barrier
        c = target.client(name)
        assert c.get(p + "a", serializable=True) == [b"3"]
    keys = {m["key"] for _, m in w.get_all()}
    assert {(p + k).encode() for k in ("a", "b", "c/x")} <= keys

    assert error_of(lambda: r.get(p + "a", revision=base + 10_000)) == \
        (Exc.Etcd3Exception, 11, "etcdserver: mvcc: required revision is a future revision")

    assert w.delete(p + "a") is True
    assert w.delete(p + "a") is False
    assert r.delete_prefix(p) is True  # b and c/x at one revision
    assert s.delete_prefix(p) is False
    assert s.get_prefix(p) == []
    assert target.revision() == base + 6
    (_, meta), = r.get(p + "b", revision=base + 5, metadata=True)
    assert rel(meta, base) == (2, 2, 1)
    assert r.get(p + "b", revision=base + 6) == []


def test_create_replace_and_txn(target: Target) -> None:
    w, r, s = clients(target)
    k = unique("txn") + "k"
    base = target.revision()
    assert w.create(k, "v1") is True
    assert r.create(k, "v2") is False
    assert r.replace(k, "v1", "v3") is True
    assert s.replace(k, "v1", "v4") is False
    assert s.get(k) == [b"v3"]
    assert target.revision() == base + 2  # a failed compare writes nothing
    resp = w.transaction({
        "compare": [{"key": b64(k), "result": "EQUAL", "target": "VERSION", "version": 1}],
        "success": [{"request_put": {"key": b64(k), "value": b64("no")}}],
        "failure": [{"request_range": {"key": b64(k)}}],
    })
    assert "succeeded" not in resp  # false is a zero value: omitted
    kv, = resp["responses"][0]["response_range"]["kvs"]
    assert (kv["value"], int(kv["version"]), int(kv["mod_revision"]) - base) == (b64("v3"), 2, 2)
    dup = {"compare": [], "success": [{"request_put": {"key": b64(k), "value": b64("a")}},
                                      {"request_put": {"key": b64(k), "value": b64("b")}}]}
    assert error_of(lambda: w.transaction(dup)) == \
        (Exc.Etcd3Exception, 3, "etcdserver: duplicate key given in txn request")
    assert w.delete(k) is True


# ------------------------------------------------------------------------------ leases

def test_lease_grant_refresh_keys_revoke(target: Target) -> None:
    w, r, s = clients(target)
    k = unique("lease") + "k"
    base = target.revision()
    lease = w.lease(ttl=30)
    assert lease.id > 0
    assert target.revision() == base  # a grant is not a KV write
    assert w.put(k, "x", lease=lease) is True
    (_, meta), = s.get(k, metadata=True)
    assert int(meta["lease"]) == lease.id
    on_r, on_s = Lease(lease.id, client=r), Lease(lease.id, client=s)
    assert on_r.keys() == [k.encode()]
    assert 0 < on_s.ttl() <= 30
    assert on_s.refresh() == 30  # relayed to the leader by a follower
    assert on_r.refresh() == 30
    listed = r.post(r.get_url("/lease/leases"), json={})
    assert str(lease.id) in {x["ID"] for x in listed["leases"]}

    assert on_r.revoke() is True
    assert target.revision() == base + 2  # the attached key's delete
    assert w.get(k) == [] and s.get(k) == []
    assert lease.ttl() == -1 and on_s.ttl() == -1
    assert lease.refresh() == -1
    assert lease.keys() == []
    not_found = (Exc.Etcd3Exception, 5, "etcdserver: requested lease not found")
    assert error_of(on_s.revoke) == not_found
    assert error_of(lambda: w.put(k, "y", lease=lease)) == not_found
    assert target.revision() == base + 2

    # a lease with no keys: revoking it deletes nothing and writes no revision
    empty = r.lease(ttl=30)
    assert Lease(empty.id, client=w).revoke() is True
    assert target.revision() == base + 2


def test_lease_errors_and_minimum_ttl(target: Target) -> None:
    w, r, _ = clients(target)
    assert error_of(lambda: w.lease(ttl=9_000_000_001)) == \
        (Exc.Etcd3Exception, 11, "etcdserver: too large lease TTL")
    lid = int(uuid.uuid4().int % (1 << 62)) + 1
    g = w.post(w.get_url("/lease/grant"), json={"TTL": 30, "ID": lid})
    assert (int(g["ID"]), int(g["TTL"])) == (lid, 30)
    cls, code, msg = error_of(lambda: r.post(r.get_url("/lease/grant"),
                                             json={"TTL": 30, "ID": lid}))
    assert (code, msg) == (9, "etcdserver: lease already exists")
    # documented difference: etcd 3.4's gateway maps FailedPrecondition to HTTP 412,
    # which etcd3gw raises as PreconditionFailedError; raftnode answers 400 like etcd 3.5
    assert cls is (Exc.PreconditionFailedError if target.kind == "etcd" else Exc.Etcd3Exception)
    assert Lease(lid, client=r).revoke() is True
    # TTLs below the minimum are raised to it: (3 * electionTicks / 2) heartbeats
    short = r.post(r.get_url("/lease/grant"), json={"TTL": 1})
    assert int(short["TTL"]) == target.min_ttl
    assert Lease(int(short["ID"]), client=w).revoke() is True


def test_lease_expiry_deletes_keys_everywhere(target: Target) -> None:
    w, r, s = clients(target)
    p = unique("expiry")
    base = target.revision()
    lease = w.lease(ttl=2)
    w.put(p + "a", "1", lease=lease)
    r.put(p + "b", "2", lease=lease)
    events, cancel = s.watch_prefix(p, start_revision=base + 1, prev_kv=True)
    try:
        got = [ev(e, base) for e in take(events, 4, timeout=20)]
    finally:
        cancel()
    assert got == [("PUT", (p + "a").encode(), b"1", 1, None),
                   ("PUT", (p + "b").encode(), b"2", 2, None),
                   ("DELETE", (p + "a").encode(), None, 3, b64("1")),
                   ("DELETE", (p + "b").encode(), None, 3, b64("2"))]
    target.wait_applied(base + 3)
    for name in target.names:
        c = target.client(name)
        assert c.get(p + "a", range_end=_increment_last_byte(p), serializable=True) == []
    assert lease.ttl() == -1
    assert target.revision() == base + 3


# ------------------------------------------------------------------------------ watches

def test_watch_key_put_delete(target: Target) -> None:
    w, r, s = clients(target)
    k = unique("watch") + "k"
    base = target.revision()
    events, cancel = s.watch(k, start_revision=base + 1)
    try:
        w.put(k, "v1")
        r.put(k + "/other", "x")
        w.delete(k)
        e1, e2 = take(events, 2)
    finally:
        cancel()
    assert "type" not in e1  # PUT is the zero value: omitted
    assert ev(e1, base) == ("PUT", k.encode(), b"v1", 1, None)
    assert rel(e1["kv"], base) == (1, 1, 1)
    assert ev(e2, base) == ("DELETE", k.encode(), None, 3, None)
    assert set(e2["kv"]) == {"key", "mod_revision"}


def test_watch_prefix_history_prev_kv_filters(target: Target) -> None:
    w, r, s = clients(target)
    p = unique("wprefix")
    base = target.revision()
    w.put(p + "a", "1")
    r.put(p + "b", "2")
    w.put(p[:-1] + "x", "outside")
    r.put(p + "a", "3")
    w.delete(p + "b")
    events, cancel = s.watch_prefix(p, start_revision=base + 1, prev_kv=True)
    try:
        got = [ev(e, base) for e in take(events, 4)]
    finally:
        cancel()
    assert got == [("PUT", (p + "a").encode(), b"1", 1, None),
                   ("PUT", (p + "b").encode(), b"2", 2, None),
                   ("PUT", (p + "a").encode(), b"3", 4, b64("1")),  # etcd3gw decodes kv only
                   ("DELETE", (p + "b").encode(), None, 5, b64("2"))]
    events, cancel = r.watch_prefix(p, start_revision=base + 1, filters=["NOPUT"])
    try:
        assert [ev(e, base) for e in take(events, 1)] == \
            [("DELETE", (p + "b").encode(), None, 5, None)]
    finally:
        cancel()


def test_watch_once_and_prefix_once(target: Target) -> None:
    w, r, s = clients(target)
    p = unique("once")
    base = target.revision()
    w.put(p + "k", "here")
    e = s.watch_once(p + "k", timeout=10, start_revision=base + 1)
    assert ev(e, base) == ("PUT", (p + "k").encode(), b"here", 1, None)
    # etcd3gw 2.x base64-encodes range_end twice in watch_prefix_once; both servers then
    # watch [prefix, b64(prefix_end)), which still covers the prefix
    e = r.watch_prefix_once(p, timeout=10, start_revision=base + 1)
    assert ev(e, base) == ("PUT", (p + "k").encode(), b"here", 1, None)
    with pytest.raises(Exc.WatchTimedOut):
        s.watch_once(p + "never", timeout=0.5)


def test_watch_from_now_sees_later_writes(target: Target) -> None:
    """Without start_revision a watch starts after its creation: it sees a write made once
    the watch is in place, and nothing before (the first put happens before creation)."""
    w, _, s = clients(target)
    k = unique("now") + "k"
    w.put(k, "before")
    base = target.revision()
    events, cancel = s.watch(k)
    stop = threading.Event()

    def writer() -> None:  # creation time is not observable through etcd3gw: keep writing
        i = 0
        while not stop.is_set():
            i += 1
            w.put(k, f"after{i}")
            time.sleep(0.05)

    t = threading.Thread(target=writer)
    t.start()
    try:
        first, second = take(events, 2)
    finally:
        stop.set()
        t.join()
        cancel()
    assert first["kv"]["value"].startswith(b"after")
    assert int(first["kv"]["mod_revision"]) > base
    assert int(second["kv"]["mod_revision"]) == int(first["kv"]["mod_revision"]) + 1


def test_watch_on_compacted_revision_is_canceled(target: Target) -> None:
    w, r, s = clients(target)
    k = unique("compact") + "k"
    base = target.revision()
    for i in range(3):
        w.put(k, f"v{i}")
    r.post(r.get_url("/kv/compaction"), json={"revision": base + 2, "physical": True})
    assert error_of(lambda: s.get(k, revision=base + 1)) == \
        (Exc.Etcd3Exception, 11, "etcdserver: mvcc: required revision has been compacted")
    assert s.get(k, revision=base + 2) == [b"v1"]
    # etcd3gw ignores a canceled watch response; read the raw stream
    with requests.post(target.endpoint(target.names[2]) + "/v3/watch", stream=True, timeout=10,
                       json={"create_request": {"key": b64(k), "start_revision": base + 1}}
                       ) as resp:
        results = []
        for line in resp.iter_lines():
            if line.strip():
                results.append(json.loads(line)["result"])
            if results and results[-1].get("canceled"):
                break
    assert results[-1]["canceled"] is True
    assert int(results[-1]["compact_revision"]) == base + 2
    e = s.watch_once(k, timeout=10, start_revision=base + 2)
    assert ev(e, base) == ("PUT", k.encode(), b"v1", 2, None)


# ------------------------------------------------------------------------ members, lock

def test_members(target: Target) -> None:
    seen = []
    for name in target.names:
        ms = target.client(name).members()
        seen.append(sorted((m["name"], tuple(m["clientURLs"]), len(m["peerURLs"]), m["ID"])
                           for m in ms))
    assert seen[0] == seen[1] == seen[2]
    assert [(n, urls, peers) for n, urls, peers, _ in seen[0]] == \
        sorted((n, (target.endpoint(n),), 1) for n in target.names)


def test_lock(target: Target) -> None:
    w, r, s = clients(target)
    name = uuid.uuid4().hex
    lock = w.lock(name, ttl=30)
    other = r.lock(name, ttl=30)
    leases = []
    try:
        assert lock.acquire() is True
        leases.append(lock.lease)
        assert lock.is_acquired() is True
        assert other.acquire() is False
        leases.append(other.lease)
        assert other.is_acquired() is False
        assert s.get(LOCK_PREFIX + name) == [lock.uuid.encode()]
        assert lock.release() is True
        assert lock.release() is False
        assert other.acquire() is True
        leases.append(other.lease)
        assert lock.release() is False  # not the holder
        assert other.release() is True
        assert s.get(LOCK_PREFIX + name) == []
        # a holder that stops refreshing loses the lock when its lease expires
        short = s.lock(name, ttl=2)
        assert short.acquire() is True
        leases.append(short.lease)
        deadline = time.monotonic() + 20
        while not (got := lock.acquire()) and time.monotonic() < deadline:
            leases.append(lock.lease)
            time.sleep(0.2)
        assert got is True
        leases.append(lock.lease)
        assert short.is_acquired() is False
        assert lock.release() is True
    finally:
        for lease in leases:
            try:
                lease.revoke()
            except Exc.Etcd3Exception as e:
                assert "requested lease not found" in (e.detail_text or ""), e.detail_text
