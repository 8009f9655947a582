"""Every raftctl verb as a subprocess against real etcd and raftnode clusters.

JSON output is compared with what the cluster holds (read independently through the
client library): etcdctl's JSON is Go's encoding of etcd's structs, so int64 fields are
JSON numbers and bytes are base64.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from cluster import clusterfile
from cluster.sync import SyncClient
from tests.cluster.conftest import run_raftctl
from tests.cluster.local_cluster import LocalCluster


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def ok(*args: str, eps: list[str], stdin: str = "", env: dict[str, str] | None = None) -> str:
    r = run_raftctl(*args, endpoints=eps, stdin=stdin, env=env)
    assert r.returncode == 0, f"raftctl {args} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r.stdout


def ok_json(*args: str, eps: list[str], stdin: str = "") -> Any:
    return json.loads(ok(*args, "-w", "json", eps=eps, stdin=stdin))


def par(*calls: Callable[[], Any]) -> list[Any]:
    """Run independent raftctl invocations at once: each spends most of a second starting."""
    with ThreadPoolExecutor(len(calls)) as ex:
        futures = [ex.submit(c) for c in calls]
        return [f.result() for f in futures]


@pytest.fixture
def sc(cluster: LocalCluster) -> Iterator[SyncClient]:
    with SyncClient(cluster.endpoints) as c:
        yield c


@pytest.fixture
def p() -> str:
    return f"ctl/{uuid.uuid4().hex[:8]}/"


def test_put_get_del(cluster: LocalCluster, sc: SyncClient, p: str) -> None:
    eps = cluster.endpoints
    assert ok("put", p + "a", "1", eps=eps) == "OK\n"
    assert ok("put", p + "b", eps=eps, stdin="from stdin") == "OK\n"
    put = ok_json("put", p + "a", "2", "--prev-kv", eps=eps)
    truth = sc.get(p, prefix=True)
    a, b = truth.kvs
    assert put["header"]["revision"] == a.mod_revision
    assert put["prev_kv"] == {"key": b64(p + "a"), "create_revision": a.create_revision,
                              "mod_revision": a.create_revision, "version": 1,
                              "value": b64("1")}

    got, simple, keys_only, value_only, lim, old, table = par(
        lambda: ok_json("get", p, "--prefix", eps=eps),
        lambda: ok("get", p, "--prefix", eps=eps),
        lambda: ok("get", p, "--prefix", "--keys-only", eps=eps),
        lambda: ok("get", p + "a", "--print-value-only", eps=eps),
        lambda: ok_json("get", p, "--prefix", "--limit", "1", eps=eps),
        lambda: ok_json("get", p + "a", "--rev", str(a.create_revision), eps=eps),
        lambda: ok("get", p, "--prefix", "-w", "table", eps=eps).splitlines())
    assert got["kvs"] == [
        {"key": b64(p + "a"), "create_revision": a.create_revision,
         "mod_revision": a.mod_revision, "version": 2, "value": b64("2")},
        {"key": b64(p + "b"), "create_revision": b.create_revision,
         "mod_revision": b.mod_revision, "version": 1, "value": b64("from stdin")},
    ]
    assert got["count"] == 2 and "more" not in got
    assert got["header"]["cluster_id"] == truth.header.cluster_id
    assert got["header"]["revision"] >= truth.header.revision

    assert simple == f"{p}a\n2\n{p}b\nfrom stdin\n"
    assert keys_only == f"{p}a\n\n{p}b\n\n"
    assert value_only == "2\n"
    assert lim["more"] is True and lim["count"] == 2 and len(lim["kvs"]) == 1
    assert old["kvs"][0]["value"] == b64("1")
    cells = [[c.strip() for c in line.split("|")[1:-1]] for line in table if line[0] == "|"]
    assert cells == [["KEY", "VALUE", "CREATE REV", "MOD REV", "VERSION", "LEASE"],
                     [p + "a", "2", str(a.create_revision), str(a.mod_revision), "2", ""],
                     [p + "b", "from stdin", str(b.create_revision), str(b.mod_revision),
                      "1", ""]]
    assert set(table[0]) == set("+-") and table[0] == table[2] == table[-1]

    assert ok("del", p + "a", eps=eps) == "1\n"
    d = ok_json("del", p, "--prefix", "--prev-kv", eps=eps)
    assert d["deleted"] == 1 and d["prev_kvs"][0]["key"] == b64(p + "b")
    assert ok("get", p, "--prefix", eps=eps) == ""
    assert sc.get(p, prefix=True).count == 0


def test_endpoint_sources(cluster: LocalCluster, sc: SyncClient, p: str, tmp_path: Path) -> None:
    sc.put(p + "e", "v")
    cf = clusterfile.ClusterFile("t", "tok", tuple(
        clusterfile.MemberEntry(m.name, m.client_url, m.peer_url, str(m.data_dir))
        for m in cluster.members))
    clusterfile.save(cf, tmp_path / "c.json")
    raftctl_env, etcdctl_env, from_file, r = par(
        *(lambda var=var: run_raftctl("get", p + "e", env={var: ",".join(cluster.endpoints)})
          for var in ("RAFTCTL_ENDPOINTS", "ETCDCTL_ENDPOINTS")),
        lambda: run_raftctl("--cluster-file", str(tmp_path / "c.json"), "get", p + "e"),
        lambda: run_raftctl("--cluster-file", str(tmp_path / "missing.json"), "get", "x"))
    for got in (raftctl_env, etcdctl_env, from_file):
        assert (got.returncode, got.stdout) == (0, f"{p}e\nv\n"), got.stderr
    assert r.returncode == 3 and r.stderr.startswith("Error: ") and "no cluster file" in r.stderr


def test_txn_from_stdin_file_and_interactive(cluster: LocalCluster, sc: SyncClient, p: str,
                                             tmp_path: Path) -> None:
    eps = cluster.endpoints
    sc.put(p + "k", "v1")
    text = f'value("{p}k") = "v1"\n\nput {p}k v2\nget {p}k\n\nput {p}k failed\n'
    assert ok("txn", eps=eps, stdin=text) == f"SUCCESS\n\nOK\n\n{p}k\nv2\n"
    f = tmp_path / "txn.txt"
    f.write_text(text)
    out = ok_json("txn", "--file", str(f), eps=eps)
    assert "succeeded" not in out  # false is omitted, as Go's omitempty does
    assert out["responses"] == [{"Response": {"ResponsePut": {
        "header": {"revision": out["header"]["revision"]}}}}]
    assert sc.get_one(p + "k").value == b"failed"
    inter = ok("txn", "-i", eps=eps, stdin=f'mod("{p}k") > "0"\n\ndel {p}k\n\n\n')
    assert inter.splitlines() == ["compares:", "success requests (get, put, del):",
                                  "failure requests (get, put, del):", "", "SUCCESS", "",
                                  "1"]
    r = run_raftctl("txn", endpoints=eps, stdin='bogus("k") = "1"\n')
    assert r.returncode == 3 and "Error: line 1: unknown compare target" in r.stderr


def test_watch(cluster: LocalCluster, sc: SyncClient, p: str) -> None:
    eps = cluster.endpoints
    r1 = sc.put(p + "w", "1").header.revision
    sc.put(p + "w", "2")
    r3 = sc.delete(p + "w").header.revision
    out, lines = par(
        lambda: ok("watch", p, "--prefix", "--rev", str(r1), "--max-events", "3", eps=eps),
        lambda: ok("watch", p + "w", "--rev", str(r1), "--max-events", "3", "-w", "json",
                   eps=eps).splitlines())
    assert out == f"PUT\n{p}w\n1\nPUT\n{p}w\n2\nDELETE\n{p}w\n\n"
    events = [e for line in lines for e in json.loads(line)["Events"]]
    assert events[0] == {"kv": {"key": b64(p + "w"), "create_revision": r1,
                                "mod_revision": r1, "version": 1, "value": b64("1")}}
    assert events[2] == {"type": 1, "kv": {"key": b64(p + "w"), "mod_revision": r3}}


def test_lease_verbs(cluster: LocalCluster, sc: SyncClient, p: str) -> None:
    eps = cluster.endpoints
    m = re.fullmatch(r"lease ([0-9a-f]{16}) granted with TTL\(60s\)\n",
                     ok("lease", "grant", "60", eps=eps))
    assert m, "unexpected grant output"
    lid = m.group(1)
    assert ok("put", p + "l", "v", "--lease", lid, eps=eps) == "OK\n"
    ttl, t, kept, listed = par(
        lambda: ok("lease", "timetolive", lid, "--keys", eps=eps),
        lambda: ok_json("lease", "timetolive", lid, eps=eps),
        lambda: ok("lease", "keep-alive", "--once", lid, eps=eps),
        lambda: ok("lease", "list", eps=eps))
    assert re.fullmatch(rf"lease {lid} granted with TTL\(60s\), remaining\(\d+s\), "
                        rf"attached keys\(\[{p}l\]\)\n", ttl), ttl
    assert t["id"] == int(lid, 16) and t["granted-ttl"] == 60 and 0 < t["ttl"] <= 60
    assert kept == f"lease {lid} keepalived with TTL(60)\n"
    assert lid in listed.split()
    assert ok("lease", "revoke", lid, eps=eps) == f"lease {lid} revoked\n"
    assert sc.get_one(p + "l") is None
    expired, not_kept, g, bad_hex, r = par(
        lambda: ok("lease", "timetolive", lid, eps=eps),
        lambda: ok("lease", "keep-alive", lid, eps=eps),
        lambda: ok_json("lease", "grant", "30", eps=eps),
        lambda: run_raftctl("lease", "revoke", "zz", endpoints=eps),
        lambda: run_raftctl("lease", "revoke", lid, endpoints=eps))
    assert expired == f"lease {lid} already expired\n"
    assert not_kept == f"lease {lid} expired or revoked.\n"
    assert g["TTL"] == 30 and g["ID"] > 0 and g["cluster_id"] > 0
    assert bad_hex.returncode == 128 and "bad hex ID" in bad_hex.stderr
    assert r.returncode == 1 and r.stderr == "Error: etcdserver: requested lease not found\n"


def test_member_verbs(cluster: LocalCluster, sc: SyncClient) -> None:
    eps = cluster.endpoints
    truth = sc.member_list()
    lst, simple, table = par(
        lambda: ok_json("member", "list", eps=eps),
        lambda: ok("member", "list", eps=eps).splitlines(),
        lambda: ok("member", "list", "-w", "table", eps=eps).splitlines())
    assert lst["members"] == [
        {"ID": m.id, "name": m.name, "peerURLs": list(m.peer_urls),
         "clientURLs": list(m.client_urls)} for m in truth.members]
    assert simple == [
        f"{m.id:x}, started, {m.name}, {m.peer_urls[0]}, {m.client_urls[0]}, false"
        for m in truth.members]
    assert [c.strip() for c in table[1].split("|")[1:-1]] == \
        ["ID", "STATUS", "NAME", "PEER ADDRS", "CLIENT ADDRS", "IS LEARNER"]
    assert len(table) == 4 + len(truth.members)

    add = run_raftctl("--command-timeout", "10s", "member", "add", "m9", "--learner",
                      "--peer-urls", "http://127.0.0.1:9", endpoints=eps)
    assert add.returncode == 0, add.stderr
    # %16x as in etcdctl: IDs with leading zero nibbles are padded with spaces.
    m = re.match(r"Member +([0-9a-f]+) added as learner to cluster +([0-9a-f]+)\n", add.stdout)
    assert m and int(m.group(2), 16) == truth.header.cluster_id
    mid = m.group(1)
    try:
        assert 'ETCD_NAME="m9"' in add.stdout and 'ETCD_INITIAL_CLUSTER_STATE="existing"' \
            in add.stdout and "m9=http://127.0.0.1:9" in add.stdout
        upd = ok_json("member", "update", mid, "--peer-urls", "http://127.0.0.1:8", eps=eps)
        # (etcd 3.4 leaves isLearner out of the update answer; member list has it.)
        assert {"ID": int(mid, 16), "peerURLs": ["http://127.0.0.1:8"]} in \
            [{k: v for k, v in x.items() if k != "isLearner"} for x in upd["members"]]
        pr = run_raftctl("member", "promote", mid, endpoints=eps)
        assert pr.returncode == 1 and "in sync with leader" in pr.stderr
    finally:
        rm = ok("--command-timeout", "10s", "member", "remove", mid, eps=eps)
    assert rm == f"Member {int(mid, 16):16x} removed from cluster {truth.header.cluster_id:16x}\n"
    assert len(sc.member_list().members) == len(truth.members)


def test_endpoint_status_and_health(cluster: LocalCluster, sc: SyncClient) -> None:
    eps = cluster.endpoints
    st, table, simple, health, out, bad = par(
        lambda: ok_json("endpoint", "status", eps=eps),
        lambda: ok("endpoint", "status", "-w", "table", eps=eps).splitlines(),
        lambda: ok("endpoint", "status", "--cluster", eps=eps[:1]).splitlines(),
        lambda: ok_json("endpoint", "health", eps=eps),
        lambda: ok("endpoint", "health", eps=eps[:1]),
        lambda: run_raftctl("--command-timeout", "1s", "endpoint", "health",
                            endpoints=["127.0.0.1:1"]))
    assert [e["Endpoint"] for e in st] == eps
    ids = {u: m.id for m in sc.member_list().members for u in m.client_urls}
    leader = sc.leader()
    for e in st:
        assert e["Status"]["header"]["member_id"] == ids[e["Endpoint"]]
        assert e["Status"]["leader"] == leader.header.member_id
        assert e["Status"]["version"] == cluster.version
        assert e["Raftnode"]["leader_changes"].isdigit()  # from the member's /metrics
    head = [c.strip() for c in table[1].split("|")[1:-1]]
    assert head[:10] == ["ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER", "IS LEARNER",
                         "RAFT TERM", "RAFT INDEX", "RAFT APPLIED INDEX", "ERRORS"]
    assert "FSYNC P99" in head and "LEADER CHANGES" in head
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in table[3:-1]]
    assert sorted(r[4] for r in rows) == ["false", "false", "true"]
    assert len(simple) == 3 and all(line.split(", ")[2] == cluster.version for line in simple)
    assert [(h["endpoint"], h["health"]) for h in health] == [(ep, True) for ep in eps]
    assert all(re.fullmatch(r"[\d.]+(ms|µs|s)", h["took"]) for h in health)
    assert re.fullmatch(rf"{re.escape(eps[0])} is healthy: successfully committed proposal: "
                        r"took = [\d.]+(ms|µs|s)\n", out)
    assert bad.returncode == 1 and "127.0.0.1:1 is unhealthy" in bad.stderr


def test_move_leader_snapshot_compaction(cluster: LocalCluster, sc: SyncClient,
                                         tmp_path: Path) -> None:
    eps = cluster.endpoints
    old = sc.leader()
    target = next(m for m in sc.member_list().members
                  if m.id != old.header.member_id and m.started and not m.is_learner)
    out = ok("--command-timeout", "10s", "move-leader", f"{target.id:x}", eps=eps)
    assert out == f"Leadership transferred from {old.header.member_id:x} to {target.id:x}\n"
    assert sc.leader().header.member_id == target.id
    snap = tmp_path / "s.db"
    saved, r = par(
        lambda: ok("snapshot", "save", str(snap), eps=eps[:1]),
        lambda: run_raftctl("snapshot", "save", str(tmp_path / "no" / "dir" / "s.db"),
                            endpoints=eps[:1]))
    assert saved == f"Snapshot saved at {snap}\n"
    data = snap.read_bytes()
    assert len(data) > 32 and hashlib.sha256(data[:-32]).digest() == data[-32:]
    if cluster.kind == "etcd":  # a bbolt file: meta page magic 0xED0CDAED
        assert data[16:20] == bytes.fromhex("edda0ced")
    assert r.returncode == 6 and r.stderr.startswith("Error: ")
    rev = sc.put("ctl/compact", "x").header.revision
    assert ok("compaction", str(rev), eps=eps) == f"compacted revision {rev}\n"
    r = run_raftctl("get", "ctl/compact", "--rev", str(rev - 1), endpoints=eps)
    assert r.returncode == 1
    assert r.stderr == "Error: etcdserver: mvcc: required revision has been compacted\n"


def test_errors_and_exit_codes(cluster: LocalCluster) -> None:
    eps = cluster.endpoints
    unreachable, future, verb, bad_int = par(
        lambda: run_raftctl("--command-timeout", "500ms", "get", "k",
                            endpoints=["127.0.0.1:1"]),
        lambda: run_raftctl("get", "k", "--rev", "99999999", endpoints=eps),
        lambda: run_raftctl("frobnicate", endpoints=eps),
        lambda: run_raftctl("get", "--rev", "x", "k", endpoints=eps))
    r = unreachable
    assert r.returncode == 2 and r.stderr.startswith("Error: ") and "127.0.0.1:1" in r.stderr
    r = future
    assert r.returncode == 1
    assert r.stderr == "Error: etcdserver: mvcc: required revision is a future revision\n"
    r = verb
    assert r.returncode == 128 and "Error: argument verb: invalid choice" in r.stderr
    r = bad_int
    assert r.returncode == 128 and "invalid int value" in r.stderr


def test_failpoint_verbs_against_a_member(cluster: LocalCluster) -> None:
    eps = cluster.endpoints[:1]
    if not cluster.extended:  # etcd 3.4 is not built with gofail
        r = run_raftctl("failpoint", "set", "walBeforeFsync", "sleep(100)", endpoints=eps)
        assert r.returncode == 4 and "failpoints are not enabled" in r.stderr
        return
    ep = eps[0]
    assert ok("failpoint", "set", "walBeforeFsync", "sleep(1)", eps=eps) == \
        f"{ep}, walBeforeFsync, sleep(1)\n"
    try:
        assert ok_json("failpoint", "get", "walBeforeFsync", eps=eps) == \
            [{"endpoint": ep, "name": "walBeforeFsync", "term": "sleep(1)"}]
        assert f"{ep}, walBeforeFsync, sleep(1)" in ok("failpoint", "list", eps=eps).splitlines()
    finally:
        assert ok("failpoint", "clear", "walBeforeFsync", eps=eps) == \
            f"{ep}, walBeforeFsync cleared\n"
    assert f"{ep}, walBeforeFsync, sleep(1)" not in ok("failpoint", "list", eps=eps)
    r = run_raftctl("failpoint", "set", "walBeforeFsync", "bad term;", endpoints=eps)
    assert r.returncode == 1 and "HTTP 400" in r.stderr, r.stderr


def test_failpoint_list_shows_armed_failpoints_only(cluster: LocalCluster) -> None:
    eps = cluster.endpoints[1:2]
    if not cluster.extended:
        r = run_raftctl("failpoint", "list", endpoints=eps)
        assert r.returncode == 4 and "failpoints are not enabled" in r.stderr
        return
    assert ok("failpoint", "list", eps=eps) == ""  # nothing armed on this member


def test_failpoint_get_of_an_unset_failpoint(cluster: LocalCluster) -> None:
    r = run_raftctl("failpoint", "get", "walBeforeFsync", endpoints=cluster.endpoints[:1])
    if not cluster.extended:
        assert r.returncode == 4 and "failpoints are not enabled" in r.stderr
        return
    assert r.returncode == 1 and "walBeforeFsync" in r.stderr, r.stderr
