"""The shipped deploy files, checked without a cluster: promtool, dashboard structure, compose."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from .conftest import DASHBOARD, DEPLOY, GRAFANA_VARS, PROM_DIR, ROOT, dashboard, panel_exprs

# the panels the dashboard promises (docs/deploy.md lists them)
REQUIRED_PANELS = {
    "Members with a leader", "Leaders", "Term", "Leader changes",
    "Elections and pre-votes started", "WAL fsync p99", "Heartbeat delay p99",
    "Peer round-trip time p99", "Proposals committed and applied", "Proposals pending",
    "Proposals failed", "Failpoint hits",
}


def test_promtool_accepts_configs_and_rules(promtool: str, tmp_path: Path) -> None:
    for name in ("prometheus.yml", "compose.yml", "rules.yml", "alerts.yml"):
        shutil.copy(PROM_DIR / name, tmp_path / name)
    (tmp_path / "targets").mkdir()
    (tmp_path / "targets" / "x.json").write_text("[]")
    for cfg in ("prometheus.yml", "compose.yml"):
        r = subprocess.run([promtool, "check", "config", str(tmp_path / cfg)],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yml"),
                        str(tmp_path / "alerts.yml")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    counts = [int(n) for n in re.findall(r"SUCCESS: (\d+) rules found", r.stdout)]
    assert len(counts) == 2 and min(counts) >= 10, r.stdout


def test_promtool_rejects_a_broken_rule(promtool: str, tmp_path: Path) -> None:
    """The check above can fail: promtool does parse the PromQL of our rule files."""
    text = (PROM_DIR / "alerts.yml").read_text().replace(
        "etcd_server_has_leader{job=~\".*etcd.*\"} == 0", "etcd_server_has_leader{ == 0", 1)
    assert "etcd_server_has_leader{ == 0" in text
    (tmp_path / "alerts.yml").write_text(text)
    r = subprocess.run([promtool, "check", "rules", str(tmp_path / "alerts.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def test_dashboard_structure() -> None:
    d = dashboard()
    assert d["uid"] == "raftnode" and d["schemaVersion"] >= 36
    ids = [p["id"] for p in d["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    variables = {v["name"] for v in d["templating"]["list"]}
    assert variables == {"datasource", "job", "instance"}
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["refId"], p["title"]
            assert t["datasource"]["uid"] == "${datasource}"
        assert p.get("description"), f"panel {p['title']!r} should say what it shows"
    titles = {p["title"] for p in d["panels"]}
    assert titles >= REQUIRED_PANELS, sorted(REQUIRED_PANELS - titles)


def test_dashboard_uses_only_known_variables() -> None:
    for title, expr in panel_exprs(dashboard()):
        used = set(re.findall(r"\$\{?(\w+)", expr))
        assert used <= {v.lstrip("$") for v in GRAFANA_VARS}, (title, used)
        # every selector is narrowed to the chosen cluster
        assert 'job=~"$job"' in expr, title


def test_grafana_provisioning_points_at_the_dashboards() -> None:
    prov = DEPLOY / "grafana" / "provisioning"
    ds = (prov / "datasources" / "prometheus.yml").read_text()
    assert "type: prometheus" in ds and "uid: prometheus" in ds
    dash = (prov / "dashboards" / "raftnode.yml").read_text()
    path = re.search(r"path: (\S+)", dash)
    assert path is not None
    compose = (ROOT / "docker-compose.yml").read_text()
    assert f"./deploy/grafana/dashboards:{path.group(1)}:ro" in compose
    assert DASHBOARD.parent.name == "dashboards"
    json.loads(DASHBOARD.read_text())


def test_compose_prometheus_scrapes_every_member() -> None:
    compose = (ROOT / "docker-compose.yml").read_text()
    services = set(re.findall(r"^  ([a-z0-9-]+):\s*$", compose, re.M))
    members = {s for s in services if re.fullmatch(r"n\d+", s)}
    assert members == {"n1", "n2", "n3"}
    scrape = (PROM_DIR / "compose.yml").read_text()
    assert set(re.findall(r'targets: \["(n\d+):2379"\]', scrape)) == members
    initial = re.search(r"RAFTNODE_INITIAL_CLUSTER: (\S+)", compose)
    assert initial is not None
    assert {kv.split("=")[0] for kv in initial.group(1).split(",")} == members


def test_build_script_is_valid_bash() -> None:
    r = subprocess.run(["bash", "-n", str(DEPLOY / "image" / "build.sh")], capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr


def test_alerts_fire_as_their_unit_tests_say(promtool: str) -> None:
    """deploy/prometheus/tests/alerts_test.yml: synthetic series in, exact alerts out."""
    r = subprocess.run([promtool, "test", "rules", str(PROM_DIR / "tests" / "alerts_test.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout
