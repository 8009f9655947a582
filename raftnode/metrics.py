"""Prometheus metrics with etcd's names, types, labels and buckets, plus raftnode_* extras.

One `Metrics` object per member, on its own `CollectorRegistry` (never the global
one, so several members can live in one test process). The driver and the
transport update the fields directly; `add_routes` serves ``GET /metrics``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector


def exponential_buckets(start: float, factor: float, count: int) -> tuple[float, ...]:
    """Go's prometheus.ExponentialBuckets(start, factor, count)."""
    assert start > 0 and factor > 1 and count >= 1
    return tuple(start * factor**k for k in range(count))


DISK_BUCKETS = exponential_buckets(0.001, 2, 14)  # 1 ms .. 8.192 s, as etcd's wal/backend
RTT_BUCKETS = exponential_buckets(0.0001, 2, 16)  # 0.1 ms .. 3.2768 s, as etcd's rafthttp


class _HitsCollector(Collector):
    """raftnode_failpoint_hits_total{name}, read from the failpoint registry at scrape time."""

    def __init__(self, hits: Callable[[], Mapping[str, int]]) -> None:
        self._hits = hits

    def collect(self) -> Iterator[CounterMetricFamily]:
        fam = CounterMetricFamily("raftnode_failpoint_hits", "Times each failpoint fired.",
                                  labels=["name"])
        for name, n in sorted(dict(self._hits()).items()):  # a copy: the WAL thread may add
            fam.add_metric([name], float(n))
        yield fam


@dataclass
class Metrics:
    """Every metric of a member. Field names drop the common prefixes for brevity."""

    registry: CollectorRegistry = field(default_factory=lambda: CollectorRegistry(auto_describe=True))

    def __post_init__(self) -> None:
        g, c, h = self._gauge, self._counter, self._histogram
        # server (etcd: server/etcdserver/metrics.go, txn/metrics.go, read/metrics.go)
        self.has_leader = g("etcd_server_has_leader",
                            "Whether or not a leader exists. 1 is existence, 0 is not.")
        self.is_leader = g("etcd_server_is_leader",
                           "Whether or not this member is a leader. 1 if is, 0 otherwise.")
        self.is_learner = g("etcd_server_is_learner",
                            "Whether or not this member is a learner. 1 if is, 0 otherwise.")
        self.leader_changes = c("etcd_server_leader_changes_seen_total",
                                "The number of leader changes seen.")
        self.proposals_committed = g("etcd_server_proposals_committed_total",
                                     "The total number of consensus proposals committed.")
        self.proposals_applied = g("etcd_server_proposals_applied_total",
                                   "The total number of consensus proposals applied.")
        self.proposals_pending = g("etcd_server_proposals_pending",
                                   "The current number of pending proposals to commit.")
        self.proposals_failed = c("etcd_server_proposals_failed_total",
                                  "The total number of failed proposals seen.")
        self.heartbeat_send_failures = c(
            "etcd_server_heartbeat_send_failures_total",
            "The total number of leader heartbeat send failures (likely overloaded from slow disk).")
        self.slow_apply = c("etcd_server_slow_apply_total",
                            "The total number of slow apply requests (likely overloaded from slow disk).")
        self.slow_read_indexes = c(
            "etcd_server_slow_read_indexes_total",
            "The total number of pending read indexes not in sync with leader's or timed out "
            "read index requests.")
        self.snapshot_apply_in_progress = g(
            "etcd_server_snapshot_apply_in_progress_total",
            "1 if the server is applying the incoming snapshot. 0 if none.")
        self.server_id = g("etcd_server_id", "Server or member ID in hexadecimal format. "
                           "1 for 'server_id' label with current ID.", ("server_id",))
        # disk
        self.wal_fsync_duration = h("etcd_disk_wal_fsync_duration_seconds",
                                    "The latency distributions of fsync called by WAL.",
                                    DISK_BUCKETS)
        self.wal_write_bytes = g("etcd_disk_wal_write_bytes_total",
                                 "Total number of bytes written in WAL.")
        self.backend_commit_duration = h(
            "etcd_disk_backend_commit_duration_seconds",
            "The latency distributions of commit called by backend.", DISK_BUCKETS)
        # network (etcd: server/etcdserver/api/rafthttp/metrics.go)
        self.peer_rtt = h("etcd_network_peer_round_trip_time_seconds",
                          "Round-Trip-Time histogram between peers", RTT_BUCKETS, ("To",))
        self.peer_sent_bytes = c("etcd_network_peer_sent_bytes_total",
                                 "The total number of bytes sent to peers.", ("To",))
        self.peer_received_bytes = c("etcd_network_peer_received_bytes_total",
                                     "The total number of bytes received from peers.", ("From",))
        self.peer_sent_failures = c("etcd_network_peer_sent_failures_total",
                                    "The total number of send failures from peers.", ("To",))
        self.peer_received_failures = c(
            "etcd_network_peer_received_failures_total",
            "The total number of receive failures from peers.", ("From",))
        self.active_peers = g("etcd_network_active_peers", "The current number of active peer "
                              "connections.", ("Local", "Remote"))
        self.disconnected_peers = c("etcd_network_disconnected_peers_total",
                                    "The total number of disconnected peers.", ("Local", "Remote"))
        # mvcc
        self.db_total_size = g("etcd_mvcc_db_total_size_in_bytes",
                               "Total size of the underlying database physically allocated in bytes.")
        self.current_revision = g("etcd_debugging_mvcc_current_revision",
                                  "The current revision of store.")
        # raftnode extras
        self.elections_started = c("raftnode_elections_started_total",
                                   "Campaigns this member started (real elections, not pre-votes).")
        self.pre_votes_started = c("raftnode_pre_votes_started_total",
                                   "Pre-vote campaigns this member started.")
        self.term = g("raftnode_term", "The current raft term of this member.")
        self.heartbeat_delay = h("raftnode_heartbeat_delay_seconds",
                                 "How late each leader heartbeat went out versus its schedule.",
                                 DISK_BUCKETS)
        self.send_queue_dropped = c(
            "raftnode_peer_send_queue_dropped_total",
            "Messages dropped because a peer's bounded send queue was full.", ("To",))
        self.frames_rejected = c(
            "raftnode_peer_frames_rejected_total",
            "Peer streams or frames refused (wrong cluster, unknown sender, bad CRC).",
            ("Reason",))
        self.faults_injected = c(
            "raftnode_peer_faults_injected_total",
            "Peer messages dropped or delayed by peerBlackhole/peerDelay.", ("Fault",))

    def _gauge(self, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=self.registry)

    def _counter(self, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
        return Counter(name, doc, labels, registry=self.registry)

    def _histogram(self, name: str, doc: str, buckets: Sequence[float],
                   labels: Sequence[str] = ()) -> Histogram:
        return Histogram(name, doc, labels, buckets=buckets, registry=self.registry)

    def bind_failpoint_hits(self, hits: Callable[[], Mapping[str, int]]) -> None:
        """Expose raftnode_failpoint_hits_total from a failpoint registry's hit counts."""
        self.registry.register(_HitsCollector(hits))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def add_routes(self, app: web.Application, path: str = "/metrics") -> None:
        async def handler(_: web.Request) -> web.Response:
            return web.Response(body=self.exposition(),
                                headers={"Content-Type": CONTENT_TYPE_LATEST})

        app.router.add_get(path, handler)
