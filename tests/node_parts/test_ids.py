"""Member and cluster IDs: etcd's algorithm by hand, and a real etcd as the oracle."""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from raftnode.ids import cluster_id, fmt_id, member_id, parse_id


def test_member_id_is_sha1_of_sorted_urls_and_token() -> None:
    urls = ["http://10.0.0.2:2380", "http://10.0.0.1:2380"]
    digest = hashlib.sha1(b"http://10.0.0.1:2380http://10.0.0.2:2380tok").digest()
    assert member_id(urls, "tok") == int.from_bytes(digest[:8], "big")
    assert member_id(reversed(urls), "tok") == member_id(urls, "tok")
    assert member_id(urls, "tok") != member_id(urls, "tok2")


def test_runtime_added_member_mixes_in_the_time() -> None:
    digest = hashlib.sha1(b"http://a:1tok1700000000").digest()
    assert member_id(["http://a:1"], "tok", 1700000000) == int.from_bytes(digest[:8], "big")


def test_etcd_default_member_id() -> None:
    # etcd's well-known default single member: 8e9e05c52164694d, cluster cdf818194e3a8c32
    mid = member_id(["http://localhost:2380"], "etcd-cluster")
    assert fmt_id(mid) == "8e9e05c52164694d"
    assert fmt_id(cluster_id([mid])) == "cdf818194e3a8c32"


def test_cluster_id_is_order_independent() -> None:
    ids = [member_id([f"http://h{i}:2380"], "t") for i in range(3)]
    blob = b"".join(i.to_bytes(8, "big") for i in sorted(ids))
    expect = int.from_bytes(hashlib.sha1(blob).digest()[:8], "big")
    assert cluster_id(ids) == cluster_id(reversed(ids)) == expect


def test_hex_round_trip_and_errors() -> None:
    assert parse_id(fmt_id(2**64 - 1)) == 2**64 - 1
    assert fmt_id(255) == "ff"
    with pytest.raises(ValueError):
        parse_id("1" * 17)
    with pytest.raises(ValueError):
        parse_id("zz")
    with pytest.raises(ValueError):
        member_id([], "t")


def _ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


@pytest.mark.skipif(shutil.which("etcd") is None, reason="no etcd binary to compare against")
def test_ids_match_a_real_etcd_cluster(tmp_path: Path) -> None:
    ports = _ports(6)
    names = ["n0", "n1", "n2"]
    peer = {n: f"http://127.0.0.1:{ports[i]}" for i, n in enumerate(names)}
    client = {n: f"http://127.0.0.1:{ports[3 + i]}" for i, n in enumerate(names)}
    initial = ",".join(f"{n}={u}" for n, u in peer.items())
    procs = [subprocess.Popen(
        ["etcd", "--name", n, "--data-dir", str(tmp_path / n), "--initial-cluster", initial,
         "--initial-cluster-token", "raftnode-ids-test", "--initial-advertise-peer-urls", peer[n],
         "--listen-peer-urls", peer[n], "--listen-client-urls", client[n],
         "--advertise-client-urls", client[n]],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for n in names]
    try:
        body = None
        deadline = time.monotonic() + 20
        while body is None or not all(m.get("name") for m in body["members"]):
            assert time.monotonic() < deadline, "etcd did not come up"
            try:  # members without a name have not published yet: ask again
                req = urllib.request.Request(client["n0"] + "/v3/cluster/member/list",
                                             data=b"{}", method="POST")
                body = json.loads(urllib.request.urlopen(req, timeout=2).read())
            except OSError:
                pass
            time.sleep(0.1)
    finally:
        for p in procs:
            p.kill()
            p.wait()
    expected = {n: member_id([u], "raftnode-ids-test") for n, u in peer.items()}
    assert {m["name"]: int(m["ID"]) for m in body["members"]} == expected
    assert int(body["header"]["cluster_id"]) == cluster_id(expected.values())
