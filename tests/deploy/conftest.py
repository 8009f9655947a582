"""Helpers for deploy/ tests: the repo's deploy files, a real Prometheus, its HTTP API."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
PROM_DIR = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "dashboards" / "raftnode.json"

# Grafana's variables, replaced by what Grafana would send for this dashboard.
GRAFANA_VARS = {
    "$__rate_interval": "20s",
    "$__interval": "5s",
    "$__range": "5m",
    "$job": ".*etcd.*",
    "$instance": ".*",
}


def find_binary(name: str) -> str | None:
    return shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists()
                                  else None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def grafana_to_promql(expr: str) -> str:
    """Substitute the dashboard's Grafana variables; fail on any variable we do not know."""
    for var in sorted(GRAFANA_VARS, key=len, reverse=True):  # $__rate_interval before $__r...
        expr = expr.replace(var, GRAFANA_VARS[var])
    left = re.findall(r"\$\{?\w+", expr)
    assert not left, f"unknown Grafana variables {left} in {expr!r}"
    return expr


def dashboard() -> dict[str, Any]:
    doc = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


def panel_exprs(dash: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, PromQL) for every target of every panel, and the annotations."""
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    for a in dash["annotations"]["list"]:
        if "expr" in a:
            out.append((f"annotation {a['name']}", a["expr"]))
    return out


class PromError(RuntimeError):
    """Prometheus answered a query with an error."""


@dataclass(slots=True)
class Prometheus:
    """A real prometheus process and its HTTP API (stdlib only: the API is plain JSON)."""

    url: str
    proc: subprocess.Popen[bytes] | None  # None: a Prometheus we did not start
    log: Path

    def get(self, path: str, **params: str) -> Any:
        q = urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(f"{self.url}{path}?{q}", timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as e:  # 400/422 carry the error in the JSON body
            body = json.load(e)
        if body.get("status") != "success":
            raise PromError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.get("/api/v1/query", query=expr)
        assert data["resultType"] in ("vector", "scalar", "matrix"), data
        return data["result"] if data["resultType"] != "scalar" else [{"value": data["result"]}]

    def scalar(self, expr: str) -> float | None:
        """The single value of ``expr``, or None while it has no result."""
        res = self.query(expr)
        assert len(res) <= 1, f"{expr} has {len(res)} series: {res}"
        return float(res[0]["value"][1]) if res else None

    def wait_value(self, expr: str, want: Any, timeout: float = 30.0) -> float:
        """Poll until ``want(value)`` holds; the failure message shows the last value seen."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = self.scalar(expr)
            if last is not None and want(last):
                return last
            time.sleep(0.25)
        raise AssertionError(f"{expr} never satisfied the condition within {timeout}s; "
                             f"last value {last}; log tail:\n{self.tail()}")

    def tail(self) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-15:])


def start_prometheus(binary: str, config: Path, workdir: Path) -> Iterator[Prometheus]:
    port = free_port()
    log = workdir / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}", f"--storage.tsdb.path={workdir / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True)
    prom = Prometheus(f"http://127.0.0.1:{port}", proc, log)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"prometheus exited {proc.returncode}:\n{prom.tail()}")
            try:
                with urllib.request.urlopen(f"{prom.url}/-/ready", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"prometheus not ready after 20s:\n{prom.tail()}")
            time.sleep(0.1)
        yield prom
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture(scope="session")
def prometheus_binary() -> str:
    found = find_binary("prometheus")
    if found is None:
        pytest.skip("prometheus binary not found (Debian: apt-get install prometheus)")
    return found


@pytest.fixture(scope="session")
def promtool() -> str:
    found = find_binary("promtool")
    if found is None:
        pytest.skip("promtool not found (Debian: apt-get install prometheus)")
    return found
