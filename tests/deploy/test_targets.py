"""deploy/prometheus/targets.py: cluster file in, Prometheus file_sd out; bad input is refused."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from cluster import clusterfile
from cluster.clusterfile import ClusterFile, MemberEntry

from .conftest import PROM_DIR

SCRIPT = PROM_DIR / "targets.py"


def load_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("deploy_targets", SCRIPT)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


targets_mod = load_module()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True,
                          timeout=30)


def write_cluster(path: Path, urls: list[str]) -> Path:
    members = tuple(MemberEntry(name=f"n{i}", client_url=u, peer_url=f"http://127.0.0.1:{9000 + i}",
                                data_dir=f"/tmp/n{i}") for i, u in enumerate(urls, start=1))
    clusterfile.save(ClusterFile(name="raftnode", token="raftnode-abcd", members=members), path)
    return path


def test_launcher_cluster_file_becomes_one_group_per_member(tmp_path: Path) -> None:
    cf = write_cluster(tmp_path / "cluster.json",
                       ["http://127.0.0.1:2379", "http://127.0.0.1:22379", "http://[::1]:32379"])
    out = tmp_path / "sd" / "local.json"
    r = run(str(cf), "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    groups = json.loads(out.read_text())
    assert groups == [
        {"targets": ["127.0.0.1:2379"], "labels": {"member": "n1", "cluster": "raftnode-abcd"}},
        {"targets": ["127.0.0.1:22379"], "labels": {"member": "n2", "cluster": "raftnode-abcd"}},
        {"targets": ["[::1]:32379"], "labels": {"member": "n3", "cluster": "raftnode-abcd"}},
    ]
    assert not [p for p in out.parent.iterdir() if p.name != "local.json"], "temp file left"


def test_stdout_when_no_output_file(tmp_path: Path) -> None:
    cf = write_cluster(tmp_path / "cluster.json", ["http://127.0.0.1:2379"])
    r = run(str(cf))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)[0]["targets"] == ["127.0.0.1:2379"]


@pytest.mark.parametrize(("content", "message"), [
    (None, "cannot read"),
    ("{not json", "not a JSON cluster file"),
    ('{"name": "x"}', "no 'members' list"),
    ('{"members": []}', "has no members"),
    ('{"members": ["n1"]}', "members[0] is not an object"),
    ('{"members": [{"client_url": "http://h:1"}]}', "members[0].name"),
    ('{"members": [{"name": "n1"}]}', "members[0].client_url is missing"),
    ('{"members": [{"name": "n1", "client_url": "https://h:1"}]}', "is not http://host:port"),
    ('{"members": [{"name": "n1", "client_url": "http://h"}]}', "is not http://host:port"),
    ('{"members": [{"name": "n1", "client_url": "http://h:99999"}]}', "is not http://host:port"),
    ('{"members": [{"name": "a", "client_url": "http://h:1"}, '
     '{"name": "a", "client_url": "http://h:2"}]}', "appears twice"),
])
def test_bad_cluster_file_is_refused_and_output_kept(tmp_path: Path, content: str | None,
                                                     message: str) -> None:
    cf = tmp_path / "cluster.json"
    if content is not None:
        cf.write_text(content)
    out = tmp_path / "local.json"
    out.write_text('[{"targets": ["old:1"]}]')  # the last good targets stay in place
    r = run(str(cf), "-o", str(out))
    assert r.returncode == 2
    assert message in r.stderr and str(cf) in r.stderr
    assert r.stderr.count("\n") == 1, r.stderr
    assert out.read_text() == '[{"targets": ["old:1"]}]'
    with pytest.raises(targets_mod.TargetsError, match=r"cluster\.json"):
        targets_mod.targets(cf)


def test_unwritable_output_is_a_clear_error(tmp_path: Path) -> None:
    cf = write_cluster(tmp_path / "cluster.json", ["http://127.0.0.1:2379"])
    blocker = tmp_path / "file"
    blocker.write_text("")
    r = run(str(cf), "-o", str(blocker / "sub" / "local.json"))
    assert r.returncode == 1
    assert "cannot write" in r.stderr
