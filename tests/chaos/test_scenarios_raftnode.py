"""The scenarios against real raftnode clusters started by the launcher (make chaos).

Each scenario starts fresh 3-member clusters, runs its workload under its nemesis, heals,
and every checker must pass. Reports land in the test's tmp dir (kept by pytest)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from chaos.result import UNKNOWN, VALID
from chaos.scenarios import SCENARIOS, RunConfig, run
from chaos.watchcheck import NOT_OFFERED

pytestmark = pytest.mark.chaos

SHORT = ["leader-kill", "power-cut", "partition", "pause", "member-replace", "disk-failure"]


def _failures(report: dict) -> list[dict]:
    """Checks that did not pass. A member that does not serve watches at all is not a
    failure of the scenario (the watch check says so, as unknown); anything else is."""
    return [{"run": r["label"], **c} for r in report["runs"] for c in r["checks"]
            if c["verdict"] != VALID and not (c["checker"] == "watch" and c["verdict"] ==
                                              UNKNOWN and c["summary"].startswith(NOT_OFFERED))]


@pytest.mark.parametrize("name", SHORT)
async def test_scenario_is_safe(name: str, tmp_path: Path) -> None:
    cfg = RunConfig(name, seed=7, duration=12.0, report_dir=tmp_path / name,
                    heartbeat_ms=50, election_ms=750)
    report = await run(cfg)
    assert not _failures(report), json.dumps(_failures(report), indent=1)[:4000]
    (r,) = report["runs"]
    assert any(e["phase"] == "inject" for e in r["nemesis"]), r["nemesis"]
    assert r["stats"]["ok"] > 0
    assert (tmp_path / name / "summary.md").exists()


async def test_fsync_storm_compares_the_three_modes(tmp_path: Path) -> None:
    cfg = RunConfig("fsync-storm", seed=7, duration=15.0, report_dir=tmp_path / "storm")
    report = await run(cfg)
    assert [r["label"] for r in report["runs"]] == list(SCENARIOS["fsync-storm"].modes)
    assert not _failures(report), json.dumps(_failures(report), indent=1)[:4000]
    for r in report["runs"]:
        # the leader-change counter was read from every member's /metrics
        assert len(r["leader_changes"]["per_member"]) == 3, r["leader_changes"]
        injected = [e for e in r["nemesis"] if e["phase"] == "inject"]
        assert injected and injected[0]["detail"]["failpoint"] == "walBeforeFsync"


async def test_stale_serializable_reads_under_partition_are_caught(tmp_path: Path) -> None:
    """The negative control on a real cluster: serializable reads (no quorum) from a member
    cut off from its peers return stale values, and the checker must say so."""
    cfg = RunConfig("partition", seed=3, duration=12.0, report_dir=tmp_path / "stale",
                    serializable_reads=True)
    report = await run(cfg)
    (r,) = report["runs"]
    lin = next(c for c in r["checks"] if c["checker"] == "linearizable")
    assert lin["verdict"] == "invalid", lin
    assert lin["anomalies"][0]["could_not_linearize"]["f"] == "read"
    assert report["verdict"] == "invalid"
