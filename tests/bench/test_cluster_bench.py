"""bench.cluster_bench: request bodies, wrk summaries, and a real (tiny) run of the harness.

The process tests start real clusters and a real wrk on loopback for about a second each:
they check the harness measures what it claims (acknowledged puts, errors counted, leader
found), never how fast anything is.
"""

from __future__ import annotations

import base64
import json
import shutil
from pathlib import Path

import pytest

from bench.cluster_bench import (
    ETCD,
    ETCD_LABEL,
    BenchError,
    check_generator,
    gc_table,
    parse_wrk,
    put_bodies,
    run,
    system_dir,
    table,
    wrk_script,
)

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed "
                               "(apt-get install -y wrk)")


def test_put_bodies_are_etcd_json_with_distinct_keys_and_256_byte_values() -> None:
    bodies = put_bodies(50)
    docs = [json.loads(b) for b in bodies]
    keys = {base64.b64decode(d["key"], validate=True) for d in docs}
    assert len(keys) == 50 and b"bench/000049" in keys
    assert all(len(base64.b64decode(d["value"], validate=True)) == 256 for d in docs)
    assert all(set(d) == {"key", "value"} for d in docs)
    assert len(base64.b64decode(json.loads(put_bodies(1, value_bytes=300)[0])["value"])) == 300


def test_wrk_script_embeds_every_body_and_the_path() -> None:
    bodies = put_bodies(3)
    s = wrk_script(bodies, path="/v3/kv/put")
    for b in bodies:
        assert json.dumps(b) in s
    assert '"/v3/kv/put"' in s and "function done(" in s and "BENCHJSON" in s


def test_parse_wrk_reads_the_summary_and_derives_rates() -> None:
    line = ('BENCHJSON {"requests":1000,"duration_us":2000000,"connect":1,"read":2,"write":0,'
            '"status":10,"timeout":3,"p50_us":1500,"p90_us":4000,"p99_us":9000,"max_us":12000}')
    r = parse_wrk("Running 2s test\n" + line + "\n", cpu_seconds=0.5)
    assert (r.requests, r.non2xx, r.socket_errors) == (1000, 10, 6)
    assert r.ok == 990 and r.rps == pytest.approx(495.0)
    assert (r.p50_ms, r.p90_ms, r.p99_ms, r.max_ms) == (1.5, 4.0, 9.0, 12.0)
    assert r.wrk_cpu == pytest.approx(0.25)


@pytest.mark.parametrize("out", ["", "Running 1s test\n", 'BENCHJSON {"requests": 1}\n',
                                 "BENCHJSON not json\n"])
def test_parse_wrk_refuses_missing_or_malformed_summaries(out: str) -> None:
    with pytest.raises(BenchError):
        parse_wrk(out, 0.0)


@needs_wrk
def test_generator_check_drives_a_trivial_server(tmp_path: Path) -> None:
    r = check_generator(8, 1.0, tmp_path)
    assert r.requests > 0 and r.non2xx == 0 and r.socket_errors == 0
    assert r.p50_ms > 0 and r.wrk_cpu < 1.5


@needs_wrk
def test_non_2xx_answers_are_errors_not_throughput(tmp_path: Path) -> None:
    from bench import cluster_bench

    (tmp_path / "put.lua").write_text(wrk_script(put_bodies(5), path="/nope"))
    r = cluster_bench.check_generator(4, 1.0, tmp_path)
    assert r.requests > 0 and r.non2xx == r.requests and r.rps == 0.0


@needs_wrk
@pytest.mark.skipif(not Path(ETCD).exists(), reason=f"{ETCD} missing (apt-get install etcd-server)")
@pytest.mark.timeout(120)
def test_a_tiny_alternating_run_against_raftnode_etcd_and_a_wrapped_raftnode(tmp_path: Path) -> None:
    labels = ["raftnode", ETCD_LABEL, "raftnode +gc.record"]
    cells = run(labels, [4], rounds=1, seconds=1.0, warmup=1.0, root=tmp_path)
    for lab in labels:
        cell = cells[(lab, 4)]
        assert len(cell.runs) == 1
        r = cell.runs[0]
        assert r.ok > 0 and r.non2xx == 0 and r.socket_errors == 0, (lab, r)
        assert cell.revision_short == 0, lab  # every acknowledged put made a revision
    md = table(cells, labels, [4])
    assert "| raftnode | 4 |" in md and "| etcd 3.4 | 4 |" in md and "1.00" in md
    assert not _processes_using(tmp_path)  # every member of every cluster was stopped
    # the wrapped members wrote their GC records on the way out (orderly SIGTERM)
    gc_md = gc_table(system_dir(tmp_path, "raftnode +gc.record"), ["n1", "n2", "n3"])
    assert "| n1 | 0 |" in gc_md and "| n3 | 0 |" in gc_md


def _processes_using(root: Path) -> list[str]:
    """Command lines of live processes that mention ``root`` (members we started there)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except OSError:
            continue
        if str(root) in cmd and state != "Z":
            found.append(cmd)
    return found


def test_cpu_by_area_attributes_own_time_and_leaves_out_startup() -> None:
    from bench.cluster_bench import cpu_by_area

    stats = {
        ("/v/site-packages/aiohttp/web_protocol.py", 1, "data_received"): (9, 9, 2.0, 3.0, {}),
        ("/w/raftnode/api/codec.py", 5, "put_request"): (9, 9, 1.0, 1.5, {}),
        ("/w/raftnode/driver.py", 9, "_apply"): (9, 9, 0.5, 0.9, {}),
        ("/w/raftnode/server.py", 216, "close"): (1, 7, 0.4, 0.0, {}),  # uvloop's run loop
        ("/w/raftnode/api/codec.py", 1, "<module>"): (1, 1, 9.0, 9.0, {}),  # import: left out
        ("<frozen importlib._bootstrap>", 1, "_find_and_load"): (1, 1, 9.0, 9.0, {}),
        ("~", 0, "<built-in method builtins.compile>"): (1, 1, 9.0, 9.0, {}),
        ("~", 0, "<built-in method builtins.len>"): (9, 9, 0.25, 0.25, {}),
        ("/usr/lib/python3.11/asyncio/events.py", 80, "_run"): (9, 9, 0.125, 0.5, {}),
    }
    got = dict(cpu_by_area(stats))  # type: ignore[arg-type]
    assert got["aiohttp (HTTP server, websockets)"] == 2.0
    assert got["raftnode API layer"] == 1.0
    assert got["driver + service + server"] == 0.5
    assert got["event loop (uvloop's C run loop, incl. polling)"] == 0.4
    assert got["C builtins (called from all of the above)"] == 0.25
    assert got["other Python"] == 0.125
    assert sum(got.values()) == pytest.approx(4.275)  # nothing from start-up
    assert next(iter(got)) == "aiohttp (HTTP server, websockets)"  # biggest first


def test_member_wrapper_writes_a_profile_and_gc_record_when_raftnode_exits(
        tmp_path: Path) -> None:
    import pstats
    import subprocess
    import sys

    prefix = tmp_path / "m1"
    p = subprocess.run([sys.executable, "-m", "bench.cluster_bench", "--member", str(prefix),
                        "--", "--help"], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parents[2])
    assert p.returncode == 0, p.stderr
    assert "--initial-cluster" in p.stdout  # raftnode's own help, run under the wrapper
    st = pstats.Stats(str(prefix) + ".prof")
    assert any("raftnode" in k[0] for k in st.stats)  # type: ignore[attr-defined]
    assert isinstance(json.loads(Path(str(prefix) + ".gc.json").read_text()), list)
    bad = subprocess.run([sys.executable, "-m", "bench.cluster_bench", "--member", "x"],
                         capture_output=True, text=True, timeout=60,
                         cwd=Path(__file__).resolve().parents[2])
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_table_ratios_are_medians_of_same_round_ratios() -> None:
    from bench.cluster_bench import Cell, WrkResult

    def res(ok: int, p99: float) -> WrkResult:
        return WrkResult(requests=ok, seconds=1.0, non2xx=0, socket_errors=0, p50_ms=1.0,
                         p90_ms=2.0, p99_ms=p99, max_ms=p99, wrk_cpu=0.01)

    a = Cell(runs=[res(100, 10.0), res(300, 10.0), res(200, 40.0)])
    b = Cell(runs=[res(200, 20.0), res(300, 5.0), res(100, 10.0)])
    md = table({("x", 8): a, ("y", 8): b}, ["x", "y"], [8])
    # y/x per round: 2.0, 1.0, 0.5 -> 1.00; p99: 2.0, 0.5, 0.25 -> 0.50 (not 200/200, 10/10)
    assert "| y | 8 | 200 | 1.00 | 1.0 | 10.0 | 0.50 |" in md
    assert "put/s vs x" in md and "| x | 8 | 200 | 1.00 | 1.0 | 10.0 | 1.00 |" in md
    with_etcd = table({("x", 8): a, (ETCD_LABEL, 8): b}, ["x", ETCD_LABEL], [8])
    assert "put/s vs etcd" in with_etcd and "| x | 8 | 200 | 1.00 | 1.0 | 10.0 | 2.00 |" in with_etcd
