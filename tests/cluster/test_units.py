"""Pure parts of the client: codec, txn building/parsing, error mapping, metrics, printing,
and the cluster file (real files in tmp_path)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster import clusterfile, metrics
from cluster import printer as P
from cluster import txn as T
from cluster.codec import b64, num, prefix_end, unb64
from cluster.errors import (
    CompactedError,
    EtcdError,
    LeaseNotFound,
    NoLeader,
    error_from_body,
    write_outcome_unknown,
)
from cluster.launcher import pid_alive, wait_stopped
from cluster.transport import parse_endpoints
from cluster.txnparse import TxnSyntaxError, parse_txn


def test_prefix_end_follows_etcd() -> None:
    assert prefix_end(b"foo") == b"fop"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\x00"
    assert prefix_end(b"") == b"\x00"


@given(st.binary(max_size=4), st.binary(max_size=6))
def test_prefix_end_selects_exactly_the_prefix(prefix: bytes, key: bytes) -> None:
    end = prefix_end(prefix)
    inside = key >= prefix and (end == b"\x00" or key < end)  # NUL: no upper bound
    assert inside == key.startswith(prefix)


def test_codec_round_trip_and_errors() -> None:
    assert unb64(b64("héllo")) == "héllo".encode()
    assert unb64(None) == b""
    assert num("18446744073709551615") == 2**64 - 1
    assert num(None) == 0
    with pytest.raises(TypeError):
        num(True)
    with pytest.raises(ValueError):
        unb64("not base64!")


def test_endpoints_normalized_and_deduplicated() -> None:
    assert parse_endpoints("127.0.0.1:2379, http://h:1/,127.0.0.1:2379") == \
        ["http://127.0.0.1:2379", "http://h:1"]
    with pytest.raises(ValueError):
        parse_endpoints(" , ")


def test_txn_wire_format() -> None:
    t = T.Txn().when(T.value("k") == "v", T.version("n") > 0, T.create_revision("c") == 0)
    t.then(T.put("k", "w", lease=7), T.get("p", prefix=True, limit=2))
    t.otherwise(T.delete("k", prev_kv=True))
    w = t.wire()
    assert w["compare"] == [
        {"key": b64("k"), "target": "VALUE", "result": "EQUAL", "value": b64("v")},
        {"key": b64("n"), "target": "VERSION", "result": "GREATER"},
        {"key": b64("c"), "target": "CREATE", "result": "EQUAL"},
    ]
    assert w["success"] == [
        {"request_put": {"key": b64("k"), "value": b64("w"), "lease": 7}},
        {"request_range": {"key": b64("p"), "range_end": b64("q"), "limit": 2}},
    ]
    assert w["failure"] == [{"request_delete_range": {"key": b64("k"), "prev_kv": True}}]
    assert not t.is_read_only()
    assert T.Txn().then(T.get("a")).is_read_only()


def test_txn_builder_rejects_bad_input() -> None:
    with pytest.raises(TypeError):
        T.version("k") == "1"  # noqa: B015
    with pytest.raises(ValueError):
        T.put("", "v")
    with pytest.raises(ValueError):
        T.get("a", "b", prefix=True)
    with pytest.raises(ValueError):
        T.get("a", sort_order="SIDEWAYS")


def test_txn_text_parsing() -> None:
    t = parse_txn(['mod("key1") > "0"', 'value("k 2") = "x y"', "",
                   'put key1 "new value"', "get k --prefix", "", "del key1"])
    w = t.wire()
    assert [c["target"] for c in w["compare"]] == ["MOD", "VALUE"]
    assert w["compare"][1]["key"] == b64("k 2") and w["compare"][1]["value"] == b64("x y")
    assert w["success"][0] == {"request_put": {"key": b64("key1"), "value": b64("new value")}}
    assert w["success"][1]["request_range"]["range_end"] == b64("l")
    assert w["failure"] == [{"request_delete_range": {"key": b64("key1")}}]


@pytest.mark.parametrize("lines", [
    ['mod(key1) > "0"'], ['size("k") = "1"'], ['ver("k") = "x"'],
    ["", "frob k"], ["", "put onlykey"], ["", 'put "unterminated'], ["", "get k --bogus"],
])
def test_txn_text_errors_are_typed(lines: list[str]) -> None:
    with pytest.raises(TxnSyntaxError, match="line"):
        parse_txn(lines)


def test_error_mapping() -> None:
    msg = "etcdserver: mvcc: required revision has been compacted"
    e = error_from_body(400, {"error": msg, "code": 11, "message": msg}, "")
    assert isinstance(e, CompactedError) and e.code == 11 and e.http_status == 400
    e = error_from_body(404, {"code": 5, "message": "etcdserver: requested lease not found"}, "")
    assert isinstance(e, LeaseNotFound)
    e = error_from_body(0, {"error": {"grpc_code": 14, "message": "etcdserver: no leader"}}, "")
    assert isinstance(e, NoLeader) and e.code == 14
    e = error_from_body(500, None, "boom\n")
    assert type(e) is EtcdError and e.message == "boom"
    assert write_outcome_unknown(EtcdError(14, "etcdserver: request timed out"))
    assert not write_outcome_unknown(EtcdError(14, "etcdserver: no leader"))
    assert not write_outcome_unknown(EtcdError(3, "etcdserver: key is not provided"))


def test_metrics_quantile() -> None:
    text = """# HELP x
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 90
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.008"} 98
etcd_disk_wal_fsync_duration_seconds_bucket{le="1.024"} 100
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 100
etcd_server_leader_changes_seen_total 3
garbage line here
"""
    s = metrics.parse(text)
    assert metrics.quantile(s, metrics.FSYNC, 0.99) == 1.024
    assert metrics.quantile(s, metrics.FSYNC, 0.5) == 0.001
    assert metrics.total(s, metrics.LEADER_CHANGES) == 3
    assert metrics.total(s, metrics.ELECTIONS) is None


def test_printer_helpers() -> None:
    assert P.human_bytes(5) == "5 B"
    assert P.human_bytes(20480) == "20 kB"
    assert P.human_bytes(1_234_567) == "1.2 MB"
    assert P.go_duration(0.0025) == "2.5ms"
    assert P.go_duration(1.5) == "1.5s"
    t = P.table(["A", "LONG"], [["xyz", "1"]]).splitlines()
    assert t[0] == t[2] == t[-1] == "+-----+------+"
    assert t[3] == "| xyz |    1 |"


def _cf() -> clusterfile.ClusterFile:
    ms = tuple(clusterfile.MemberEntry(f"n{i}", f"http://127.0.0.1:{2379 + 10 * i}",
                                       f"http://127.0.0.1:{2380 + 10 * i}", f".cluster/n{i}",
                                       f".cluster/n{i}.log", pid=1000 + i) for i in range(3))
    return clusterfile.ClusterFile("raftnode", "tok", ms)


def test_clusterfile_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "cluster.json"
    cf = _cf()
    clusterfile.save(cf, path)
    back = clusterfile.load(path)
    assert back == cf
    assert back.endpoints == [m.client_url for m in cf.members]
    assert back.initial_cluster().startswith("n0=http://127.0.0.1:2380,n1=")
    stopped = back.with_member(back.member("n1").with_pid(None)).without_member("n2")
    clusterfile.save(stopped, path)
    again = clusterfile.load(path)
    assert [m.name for m in again.members] == ["n0", "n1"] and again.member("n1").pid is None
    assert [p.name for p in path.parent.iterdir()] == ["cluster.json"]  # no temp file left


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.pop("members"), "lacks 'members'"),
    (lambda d: d.update(version=2), "format version 2"),
    (lambda d: d["members"][0].pop("peer_url"), r"members\[0\] lacks 'peer_url'"),
    (lambda d: d["members"][1].update(pid="12"), r"members\[1\].pid"),
    (lambda d: d["members"][1].update(name="n0"), "duplicate member names"),
])
def test_clusterfile_bad_input(tmp_path: Path, mutate: object, match: str) -> None:
    d = _cf().to_json()
    mutate(d)  # type: ignore[operator]
    path = tmp_path / "cluster.json"
    path.write_text(json.dumps(d))
    with pytest.raises(clusterfile.ClusterFileError, match=match):
        clusterfile.load(path)
    assert json.loads(path.read_text()) == d  # loading never rewrites the file


def test_clusterfile_missing_or_not_json(tmp_path: Path) -> None:
    with pytest.raises(clusterfile.ClusterFileError, match="no cluster file"):
        clusterfile.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(clusterfile.ClusterFileError, match="not JSON"):
        clusterfile.load(tmp_path / "bad.json")


def test_pid_alive_waits_out_an_exec_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    """/proc/PID/cmdline reads empty while a process is inside execve: `ip netns exec`
    exec'ing raftnode looked dead for that moment (the netns test failed 3 times in 12)."""
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "raftnode"])
    real = Path.read_bytes
    empty_reads = []

    def mid_exec(self: Path) -> bytes:
        if self.name == "cmdline" and len(empty_reads) < 2:
            empty_reads.append(self)
            return b""
        return real(self)

    try:
        monkeypatch.setattr(Path, "read_bytes", mid_exec)
        assert pid_alive(p.pid) and len(empty_reads) == 2
    finally:
        p.kill()
        p.wait()
    assert not pid_alive(p.pid)


_BUSY_THREADS = """
import threading
def spin():
    while True:
        pass
for _ in range(4):
    threading.Thread(target=spin, daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
"""


def _thread_states(pid: int) -> list[str]:
    return [Path(f"/proc/{pid}/task/{t}/stat").read_text().rsplit(")", 1)[-1].split()[0]
            for t in os.listdir(f"/proc/{pid}/task")]


def test_wait_stopped_returns_once_every_thread_is_stopped() -> None:
    """kill(SIGSTOP) returns before the process stops; under load other threads ran on
    for long enough that a 'paused' etcd served a request (test_failover, 1 run in ~10)."""
    p = subprocess.Popen([sys.executable, "-c", _BUSY_THREADS], stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        assert not wait_stopped(p.pid, timeout=0.05)  # running: not stopped
        os.kill(p.pid, signal.SIGSTOP)
        assert wait_stopped(p.pid)
        assert set(_thread_states(p.pid)) <= {"T", "t"} and len(_thread_states(p.pid)) == 5
        os.kill(p.pid, signal.SIGCONT)
    finally:
        p.kill()
        p.wait()
    assert wait_stopped(p.pid)  # gone: nothing of it runs
