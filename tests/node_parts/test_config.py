"""Flags, environment, etcd's validation rules, and the one-line exit-2 contract."""

from __future__ import annotations

import subprocess
import sys

import pytest

from raftnode.config import ConfigError, env_name, load, parse_args
from raftnode.ids import cluster_id, member_id

THREE = "a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,c=http://10.0.0.3:2380"


def test_defaults_are_etcds() -> None:
    c = parse_args([], {})
    assert (c.name, c.data_dir, c.initial_cluster_token) == ("default", "default.etcd",
                                                              "etcd-cluster")
    assert c.listen_client_urls == ("http://localhost:2379",)
    assert c.listen_peer_urls == ("http://localhost:2380",)
    assert c.initial_cluster == (("default", ("http://localhost:2380",)),)
    assert (c.heartbeat_interval_ms, c.election_timeout_ms) == (100, 1000)
    assert (c.snapshot_count, c.snapshot_catchup_entries) == (10000, 5000)
    assert (c.max_snapshots, c.max_wals, c.max_request_bytes) == (5, 5, 1572864)
    assert not (c.unsafe_no_fsync or c.async_storage_writes or c.enable_failpoints)
    assert (c.wal_backend, c.log_level, c.log_format) == ("file", "info", "json")
    assert c.initial_cluster_state == "new"
    assert f"{c.member_id:x}" == "8e9e05c52164694d"


def test_three_member_cluster() -> None:
    c = parse_args(["--name", "b", "--initial-cluster", THREE, "--initial-advertise-peer-urls",
                    "http://10.0.0.2:2380", "--initial-cluster-token", "tk"], {})
    assert c.data_dir == "b.etcd"
    assert c.member_id == member_id(["http://10.0.0.2:2380"], "tk")
    members = c.initial_members()
    assert len(members) == 3 and c.member_id in members
    assert c.cluster_id == cluster_id(members)
    assert c.election_ticks() == 10


def test_renamed_member_defaults_to_a_cluster_of_itself() -> None:
    c = parse_args(["--name", "solo", "--initial-advertise-peer-urls", "http://127.0.0.1:9"], {})
    assert c.initial_cluster == (("solo", ("http://127.0.0.1:9",)),)


def test_a_member_may_have_several_urls() -> None:
    c = parse_args(["--initial-cluster", "default=http://h:1,default=http://h:2",
                    "--initial-advertise-peer-urls", "http://h:2,http://h:1"], {})
    assert c.initial_cluster == (("default", ("http://h:1", "http://h:2")),)
    assert c.member_id == member_id(["http://h:1", "http://h:2"], "etcd-cluster")


def test_environment_is_read_and_command_line_wins() -> None:
    env = {"RAFTNODE_HEARTBEAT_INTERVAL": "50", "RAFTNODE_ELECTION_TIMEOUT": "500",
           "RAFTNODE_UNSAFE_NO_FSYNC": "true", "RAFTNODE_WAL_BACKEND": "sqlite",
           "RAFTNODE_SNAPSHOT_COUNT": "7"}
    c = parse_args(["--snapshot-count", "9"], env)
    assert (c.heartbeat_interval_ms, c.election_timeout_ms) == (50, 500)
    assert c.unsafe_no_fsync and c.wal_backend == "sqlite" and c.snapshot_count == 9
    assert not parse_args(["--unsafe-no-fsync=false"], env).unsafe_no_fsync
    assert parse_args(["--async-storage-writes"], {}).async_storage_writes
    assert env_name("initial-cluster-state") == "RAFTNODE_INITIAL_CLUSTER_STATE"


@pytest.mark.parametrize(("argv", "env", "needle"), [
    (["--bogus"], {}, "unrecognized arguments: --bogus"),
    (["--name"], {}, "expected one argument"),
    (["positional"], {}, "unrecognized arguments: positional"),
    (["--heartbeat-interval", "x"], {}, "--heartbeat-interval: invalid integer 'x'"),
    ([], {"RAFTNODE_ELECTION_TIMEOUT": "soon"}, "RAFTNODE_ELECTION_TIMEOUT: invalid integer"),
    ([], {"RAFTNODE_UNSAFE_NO_FSYNC": "yes"}, "invalid boolean value 'yes'"),
    (["--heartbeat-interval", "300"], {},
     "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"),
    (["--election-timeout", "60000", "--heartbeat-interval", "10000"], {},
     "--election-timeout[60000ms] is too long, and should be set less than 50000ms"),
    (["--heartbeat-interval", "0"], {}, "must be positive"),
    (["--snapshot-count", "0"], {}, "--snapshot-count must be at least 1"),
    (["--wal-backend", "tape"], {}, "--wal-backend: invalid value 'tape'"),
    (["--log-format", "xml"], {}, "--log-format: invalid value"),
    (["--initial-cluster-state", "old"], {}, "--initial-cluster-state: invalid value"),
    (["--name", "x", "--initial-cluster", "a=http://h:1"], {},
     "couldn't find local name 'x' in the initial cluster configuration"),
    (["--initial-cluster", "default=http://h:1,b=http://h:1"], {}, "has duplicate url"),
    (["--initial-cluster", "default=http://h:9"], {},
     "--initial-cluster has default=http://h:9 but missing from --initial-advertise-peer-urls"),
    (["--initial-cluster", "default"], {}, "is not of the form name=url"),
    (["--initial-cluster", "default=ftp://h:1"], {}, "URL scheme must be http"),
    (["--listen-client-urls", "http://h"], {}, "does not have the form \"host:port\""),
    (["--listen-client-urls", "http://h:1/x"], {}, "must not contain a path"),
    (["--listen-peer-urls", "https://h:1"], {}, "TLS is not supported"),
    (["--cert-file", "/tmp/c.pem"], {}, "--cert-file: TLS is not supported"),
    (["--peer-auto-tls"], {}, "--peer-auto-tls: TLS is not supported"),
])
def test_bad_input_is_a_typed_error(argv: list[str], env: dict[str, str], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_args(argv, env)
    assert needle in str(info.value)
    assert "\n" not in str(info.value)


def test_load_exits_2_with_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        load(["--initial-cluster", "default=http://h:1,x=http://h:1"], {})
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("raftnode: error: ") and "duplicate url" in err


def test_a_process_exits_2_with_one_line() -> None:
    code = "import sys; from raftnode.config import load; load(sys.argv[1:], {})"
    proc = subprocess.run([sys.executable, "-c", code, "--election-timeout", "abc"],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [
        "raftnode: error: --election-timeout: invalid integer 'abc'"]
    assert proc.stdout == ""


def test_unknown_environment_variables_are_reported() -> None:
    from raftnode.config import unknown_env

    env = {"RAFTNODE_NAME": "a", "RAFTNODE_FAILPOINTS": "x=off", "RAFTNODE_HEARTBEAT": "1",
           "PATH": "/bin"}
    assert unknown_env(env) == ["RAFTNODE_HEARTBEAT"]


def test_help_exits_0() -> None:
    code = "import sys; from raftnode.config import load; load(sys.argv[1:], {})"
    proc = subprocess.run([sys.executable, "-c", code, "--help"], capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and "--initial-cluster-token" in proc.stdout


def test_go_style_single_dash_flags_and_host_port() -> None:
    from raftnode.config import host_port

    c = parse_args(["-name", "n1", "-initial-advertise-peer-urls", "http://127.0.0.1:7001",
                    "-listen-peer-urls=http://0.0.0.0:7001", "-unsafe-no-fsync"], {})
    assert c.name == "n1" and c.unsafe_no_fsync
    assert host_port(c.listen_peer_urls[0]) == ("0.0.0.0", 7001)
    assert c.initial_cluster == (("n1", ("http://127.0.0.1:7001",)),)
