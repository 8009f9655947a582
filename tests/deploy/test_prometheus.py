"""A real Prometheus scraping a real 3-member cluster with deploy/prometheus's config.

The config, rules and alerts are the shipped files, only with shorter intervals; targets are
written by deploy/prometheus/targets.py from the launcher's cluster file. Every dashboard
and rule expression must evaluate, every metric they name must exist on a member, and a
killed leader must show up in Prometheus as a leader change.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cluster import SyncClient
from cluster.launcher import Launcher

from .conftest import (
    PROM_DIR,
    Prometheus,
    dashboard,
    grafana_to_promql,
    panel_exprs,
    start_prometheus,
)

pytestmark = pytest.mark.timeout(120)

FAST = ["--heartbeat-interval", "50", "--election-timeout", "750", "--enable-failpoints"]
# what the shipped files say, and what the test runs with (the test cannot wait 5 s a sample)
INTERVALS = {"scrape_interval: 5s": "scrape_interval: 1s",
             "scrape_timeout: 4s": "scrape_timeout: 1s",
             "evaluation_interval: 5s": "evaluation_interval: 1s",
             "interval: 5s": "interval: 1s"}
METRIC_RE = re.compile(r"\b((?:etcd|raftnode)_[a-zA-Z0-9_]+)\b")


@dataclass(slots=True)
class Stack:
    launcher: Launcher
    prom: Prometheus
    endpoints: list[str]


def copy_config(dst: Path) -> Path:
    """The shipped Prometheus files in ``dst``, with the test's short intervals."""
    for name in ("prometheus.yml", "rules.yml", "alerts.yml"):
        text = (PROM_DIR / name).read_text(encoding="utf-8")
        for old, new in INTERVALS.items():
            text = text.replace(old, new)
        (dst / name).write_text(text, encoding="utf-8")
    assert "scrape_interval: 1s" in (dst / "prometheus.yml").read_text()
    assert "interval: 1s" in (dst / "rules.yml").read_text()
    return dst / "prometheus.yml"


@pytest.fixture(scope="module")
def stack(prometheus_binary: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    root = tmp_path_factory.mktemp("deploy-prom")
    launcher = Launcher(root / "cluster")
    cf = launcher.create(3, flags=FAST, auto_ports=True)
    try:
        for m in cf.members:
            launcher.start(m.name)
        launcher.wait_healthy(30)
        with SyncClient(cf.endpoints, timeout=10) as c:
            # a firing failpoint, and writes, so fsync, proposal and failpoint series exist
            for m in cf.members:
                c.failpoint_set(m.client_url, "walAfterFsync", "sleep(1)")
            for i in range(20):
                c.put(f"k{i}", "v")
        promdir = root / "prom"
        promdir.mkdir()
        config = copy_config(promdir)
        subprocess.run([sys.executable, str(PROM_DIR / "targets.py"), str(launcher.path),
                        "-o", str(promdir / "targets" / "local.json")], check=True)
        for prom in start_prometheus(prometheus_binary, config, promdir):
            yield Stack(launcher, prom, list(cf.endpoints))
    finally:
        launcher.down(timeout=10)


def declared_metrics(endpoint: str) -> set[str]:
    """Every sample name a member's /metrics declares, with histogram/counter suffixes."""
    with urllib.request.urlopen(f"{endpoint}/metrics", timeout=5) as r:
        text = r.read().decode()
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            names.add(name)
            if kind == "histogram":
                names.update({name + "_bucket", name + "_sum", name + "_count"})
            if kind == "counter":
                names.add(name.removesuffix("_total") + "_total")
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


def rules(prom: Prometheus) -> list[dict[str, object]]:
    return [r for g in prom.get("/api/v1/rules")["groups"] for r in g["rules"]]


def alert_state(prom: Prometheus, name: str) -> str:
    states = {str(r["state"]) for r in rules(prom) if r["name"] == name}
    assert len(states) == 1, (name, states)
    return states.pop()


def test_prometheus_sees_every_member_and_one_leader(stack: Stack) -> None:
    prom = stack.prom
    prom.wait_value('count(up{job="etcd-raftnode"} == 1)', lambda v: v == 3)
    assert prom.wait_value("sum(etcd_server_has_leader)", lambda v: v == 3) == 3
    assert prom.wait_value("sum(etcd_server_is_leader)", lambda v: v == 1) == 1
    # targets.py's labels arrive on every series: the dashboard's legends use `member`
    members = {r["metric"]["member"] for r in prom.query("etcd_server_has_leader")}
    assert members == {"n1", "n2", "n3"}
    # the dashboard's $job variable: label_values(etcd_server_has_leader, job)
    jobs = prom.get("/api/v1/label/job/values", **{"match[]": "etcd_server_has_leader"})
    assert jobs == ["etcd-raftnode"]
    # the failpoint set by the fixture fires on every fsync, and Prometheus sees it
    prom.wait_value('sum(raftnode_failpoint_hits_total{name="walAfterFsync"})', lambda v: v > 0)


def test_every_dashboard_expression_evaluates(stack: Stack) -> None:
    prom = stack.prom
    prom.wait_value("sum(etcd_server_has_leader)", lambda v: v == 3)
    exprs = panel_exprs(dashboard())
    assert len(exprs) >= 30
    errors = []
    for title, expr in exprs:
        try:
            prom.query(grafana_to_promql(expr))
        except Exception as exc:  # collect them all: one report names every broken panel
            errors.append(f"{title}: {exc}")
    assert not errors, "\n".join(errors)
    # the panels a healthy cluster under writes must fill (not merely parse)
    must_have_data = {"Members with a leader", "Leaders", "Term", "Leader", "WAL fsync p99",
                      "Heartbeat delay p99", "Peer round-trip time p99",
                      "Proposals committed and applied", "Failpoint hits"}
    waiting = {(t, e) for t, e in exprs if t in must_have_data}
    assert {t for t, _ in waiting} == must_have_data
    deadline = time.monotonic() + 30  # rates need two samples inside the window
    while waiting and time.monotonic() < deadline:
        waiting = {(t, e) for t, e in waiting if not prom.query(grafana_to_promql(e))}
        time.sleep(0.5)
    assert not waiting, f"panels without data: {sorted(waiting)}"


def test_every_metric_named_by_dashboard_and_rules_exists(stack: Stack) -> None:
    declared = declared_metrics(stack.endpoints[0])
    texts = [expr for _, expr in panel_exprs(dashboard())]
    texts += [str(r["query"]) for r in rules(stack.prom)]
    named = {m for t in texts for m in METRIC_RE.findall(t)}
    assert {"etcd_server_has_leader", "raftnode_elections_started_total",
            "etcd_disk_wal_fsync_duration_seconds_bucket"} <= named
    assert not named - declared, f"not exported by raftnode: {sorted(named - declared)}"


def test_every_recording_and_alerting_rule_evaluates(stack: Stack) -> None:
    prom = stack.prom
    prom.wait_value("sum(etcd_server_has_leader)", lambda v: v == 3)
    # every rule has been evaluated at least once, without error
    prom.wait_value("count(job:etcd_server_has_leader:sum)", lambda v: v == 1)
    got = rules(prom)
    names = {str(r["name"]) for r in got}
    assert {"etcdNoLeader", "etcdInsufficientMembers", "etcdHighNumberOfLeaderChanges",
            "etcdHighFsyncDurations", "etcdMembersDown", "RaftnodeElectionStorm",
            "RaftnodeHeartbeatDelayed"} <= names
    bad = [f"{r['name']}: {r.get('health')} {r.get('lastError')}" for r in got
           if r.get("health") != "ok" or r.get("lastError")]
    assert not bad, "\n".join(bad)
    for r in got:
        prom.query(str(r["query"]))
    # the recording rules produce the cluster's view
    assert prom.wait_value("job:etcd_server_is_leader:sum", lambda v: v == 1) == 1
    # a healthy cluster: the leadership alerts find nothing
    for name in ("etcdNoLeader", "etcdInsufficientMembers", "etcdMembersDown",
                 "RaftnodeMultipleLeaders"):
        assert alert_state(prom, name) == "inactive", name


def test_killed_leader_shows_as_leader_change(stack: Stack) -> None:
    prom, launcher = stack.prom, stack.launcher
    prom.wait_value("sum(etcd_server_is_leader)", lambda v: v == 1)
    leader = prom.query("etcd_server_is_leader == 1")
    assert len(leader) == 1
    old = leader[0]["metric"]["member"]
    changes = prom.wait_value("max(etcd_server_leader_changes_seen_total)", lambda v: v >= 1)
    term = prom.wait_value("max(raftnode_term)", lambda v: v >= 1)

    launcher.kill(old)  # SIGKILL: the power cut

    prom.wait_value("max(etcd_server_leader_changes_seen_total)", lambda v: v > changes)
    prom.wait_value("max(raftnode_term)", lambda v: v > term)
    prom.wait_value('count(up{job="etcd-raftnode"} == 1)', lambda v: v == 2)
    prom.wait_value("sum(etcd_server_is_leader)", lambda v: v == 1)
    new = prom.query("etcd_server_is_leader == 1")
    assert [r["metric"]["member"] for r in new] != [old]
    # the dead member's target is down: etcdMembersDown starts its 20 minutes of pending
    deadline = time.monotonic() + 30
    while alert_state(prom, "etcdMembersDown") != "pending":
        assert time.monotonic() < deadline, "etcdMembersDown never went pending"
        time.sleep(0.5)
    assert alert_state(prom, "etcdInsufficientMembers") == "inactive"  # 2 of 3 is a quorum
    # the new leader campaigned: its election counter says so
    who = new[0]["metric"]["member"]
    prom.wait_value(f'raftnode_elections_started_total{{member="{who}"}}', lambda v: v >= 1)
