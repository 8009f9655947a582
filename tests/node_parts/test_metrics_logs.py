"""Metrics exposition (names, types, labels, buckets) and the log line formats."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from raftnode.failpoints import Failpoints
from raftnode.logs import get_logger, setup
from raftnode.metrics import DISK_BUCKETS, RTT_BUCKETS, Metrics

EXPECTED = {  # name in the exposition -> type, from issue 4 and etcd's source
    "etcd_server_has_leader": "gauge", "etcd_server_is_leader": "gauge",
    "etcd_server_is_learner": "gauge", "etcd_server_leader_changes_seen": "counter",
    "etcd_server_proposals_committed_total": "gauge",
    "etcd_server_proposals_applied_total": "gauge", "etcd_server_proposals_pending": "gauge",
    "etcd_server_proposals_failed": "counter", "etcd_server_heartbeat_send_failures": "counter",
    "etcd_server_slow_apply": "counter", "etcd_server_slow_read_indexes": "counter",
    "etcd_disk_wal_fsync_duration_seconds": "histogram",
    "etcd_disk_wal_write_bytes_total": "gauge",
    "etcd_disk_backend_commit_duration_seconds": "histogram",
    "etcd_network_peer_round_trip_time_seconds": "histogram",
    "etcd_network_peer_sent_bytes": "counter", "etcd_network_peer_received_bytes": "counter",
    "etcd_mvcc_db_total_size_in_bytes": "gauge", "etcd_debugging_mvcc_current_revision": "gauge",
    "raftnode_elections_started": "counter", "raftnode_pre_votes_started": "counter",
    "raftnode_term": "gauge", "raftnode_heartbeat_delay_seconds": "histogram",
    "raftnode_failpoint_hits": "counter",
}


def test_buckets_are_etcds() -> None:
    assert tuple(0.001 * 2**k for k in range(14)) == DISK_BUCKETS
    assert tuple(0.0001 * 2**k for k in range(16)) == RTT_BUCKETS


async def test_exposition_has_every_metric() -> None:
    m = Metrics()
    f = Failpoints()
    f.set("walWrite", "return(1)")
    f.eval("walWrite")
    m.bind_failpoint_hits(lambda: f.hits)
    m.peer_rtt.labels(To="a").observe(0.003)
    m.peer_sent_bytes.labels(To="a").inc(10)
    m.peer_received_bytes.labels(From="b").inc(20)
    m.wal_fsync_duration.observe(0.002)
    m.leader_changes.inc()
    app = web.Application()
    m.add_routes(app)
    async with TestClient(TestServer(app)) as client:
        r = await client.get("/metrics")
        assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
        text = await r.text()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    for name, kind in EXPECTED.items():
        assert name in fams, name
        assert fams[name].type == kind, (name, fams[name].type)
    lines = text.splitlines()
    assert 'etcd_network_peer_sent_bytes_total{To="a"} 10.0' in lines
    assert 'etcd_network_peer_received_bytes_total{From="b"} 20.0' in lines
    assert 'raftnode_failpoint_hits_total{name="walWrite"} 1.0' in lines
    assert 'etcd_server_leader_changes_seen_total 1.0' in lines
    assert 'etcd_network_peer_round_trip_time_seconds_bucket{To="a",le="0.0032"} 1.0' in lines
    assert 'etcd_disk_wal_fsync_duration_seconds_bucket{le="8.192"} 1.0' in lines


def test_registries_are_per_member() -> None:
    a, b = Metrics(), Metrics()  # would raise "Duplicated timeseries" on a shared registry
    a.term.set(5)
    assert b"raftnode_term 5.0" in a.exposition()
    assert b"raftnode_term 0.0" in b.exposition()


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_log_lines(restore_logging: None) -> None:
    buf = io.StringIO()
    setup("info", "json", buf)
    log = get_logger("test")
    log.info("became leader", term=5, member="8e9e05c52164694d")
    log.debug("hidden")
    try:
        raise OSError(5, "Input/output error")
    except OSError:
        log.error("fsync failed", exc=True, file="0001.wal")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(x) for x in lines)
    assert first["level"] == "info" and first["msg"] == "became leader" and first["term"] == 5
    assert first["logger"] == "raftnode.test" and first["ts"].endswith("Z")
    assert second["level"] == "error" and second["file"] == "0001.wal"
    assert "Input/output error" in second["error"]


def test_text_log_lines(restore_logging: None) -> None:
    buf = io.StringIO()
    setup("debug", "text", buf)
    log = get_logger("t")
    log.debug("step", a=1, why="two words")
    log.warn("multi\nline")
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2
    assert lines[0].split(" ", 2)[1:] == ["DEBUG", 'raftnode.t step a=1 why="two words"']
    assert lines[1].endswith("WARN raftnode.t multi\\nline")
    with pytest.raises(ValueError):
        setup("loud", "text", buf)
