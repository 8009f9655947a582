"""`down` removes everything it made; `down --force` cleans up after a launcher crash."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
import socket
import time

import pytest

from cluster import netns
from cluster.__main__ import main
from cluster.launcher import pid_alive
from tests.netns.conftest import NetnsHarness

pytestmark = pytest.mark.timeout(120)


def _ours(tag: str) -> list[str]:
    return [n for n in netns.list_namespaces() if n.startswith(f"rn-{tag}-")]


async def test_down_removes_namespaces_and_start_rebuilds_them(
        netns_harness: NetnsHarness) -> None:
    h = netns_harness
    await h.up(3)
    tag = h.tag()
    assert sorted(_ours(tag)) == sorted([f"rn-{tag}-hub"] + [f"rn-{tag}-{n}" for n in h.names()])
    await asyncio.to_thread(h.launcher.partition, "n1 / n2,n3")
    ip = h.ip("n1")
    await asyncio.to_thread(h.launcher.down)
    assert _ours(tag) == [] and not netns.link_exists(f"rn{tag}")
    # the guard route: a stale client of the removed cluster fails here, its packets never
    # follow the default route off the machine
    with pytest.raises(OSError) as err:
        socket.create_connection((ip, 2379), timeout=2.0).close()
    assert err.value.errno == errno.EHOSTUNREACH
    assert h.launcher.load().extra["netns"]["partition"] == []  # the faults went with the net
    for n in h.names():
        await h.start(n)
    await asyncio.to_thread(h.launcher.wait_healthy, 30.0)
    assert len(_ours(tag)) == 4


async def test_down_force_after_a_crash_finds_members_by_namespace(
        netns_harness: NetnsHarness, capsys: pytest.CaptureFixture[str]) -> None:
    h = netns_harness
    await h.up(3)
    tag = h.tag()
    pids = [m.pid for m in h.launcher.load().members]
    # the launcher "crashed" before recording pids: only the namespaces know the members
    raw = json.loads(h.launcher.path.read_text())
    for m in raw["members"]:
        m["pid"] = None
    h.launcher.path.write_text(json.dumps(raw))
    assert main(["--dir", str(h.launcher.dir), "down", "--force"]) == 0
    assert "rn-" in capsys.readouterr().out
    deadline = time.monotonic() + 10
    while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
        for p in pids:
            assert p is not None
            try:
                os.waitpid(p, os.WNOHANG)
            except ChildProcessError:
                pass
        time.sleep(0.05)
    assert not any(pid_alive(p) for p in pids)
    assert _ours(tag) == [] and not netns.link_exists(f"rn{tag}")


async def test_down_force_by_tag_without_a_cluster_file(
        netns_harness: NetnsHarness, capsys: pytest.CaptureFixture[str]) -> None:
    h = netns_harness
    cf = await asyncio.to_thread(h.launcher.create, 2, use_netns=True)  # crash before start
    tag = h.tag()
    assert len(_ours(tag)) == 3
    h.launcher.path.unlink()
    assert main(["--dir", str(h.launcher.dir), "down", "--force"]) == 1
    assert "--tag" in capsys.readouterr().err
    assert main(["--dir", str(h.launcher.dir), "down", "--force", "--tag", tag]) == 0
    assert _ours(tag) == [] and not netns.link_exists(f"rn{tag}")
    assert len(cf.members) == 2


def test_sigterm_reaches_members_through_ip_netns_exec(netns_harness: NetnsHarness) -> None:
    """`ip netns exec` execs: the recorded pid is raftnode itself, so signals reach it."""
    h = netns_harness
    h.launcher.create(1, use_netns=True)
    m = h.launcher.start("n1")
    assert m.pid is not None and pid_alive(m.pid)
    # serving means `ip` has entered the namespace and exec'd raftnode, whose handlers are
    # installed (before that, the pid may not be in the namespace yet: a test race)
    time.sleep(0.5)
    assert pid_alive(m.pid), f"the member died at start:\n{h.log('n1')[-3000:]}"
    h.launcher.wait_healthy(30.0)
    assert m.pid in [int(p) for p in netns.run(["ip", "netns", "pids", h.ns("n1")]).split()]
    assert h.launcher.signal("n1", signal.SIGTERM, wait=15.0)
    # raftnode's own handler ran (an orderly stop), not a default-action death
    assert "stopped (exit code 0)" in h.log("n1")


async def test_add_and_remove_build_and_remove_a_namespace(netns_harness: NetnsHarness) -> None:
    h = netns_harness
    await h.up(3)
    tag = h.tag()
    await h.add("n4")
    assert f"rn-{tag}-n4" in _ours(tag) and h.ip("n4").endswith(".4")
    assert h.endpoint("n4") == f"http://{h.ip('n4')}:2379"
    await asyncio.to_thread(h.launcher.wait_healthy, 30.0)
    async with h.client(["n4"]) as c:
        await c.put("via-n4", "1")
    await asyncio.to_thread(h.launcher.remove, "n4")
    assert f"rn-{tag}-n4" not in _ours(tag) and "n4" not in h.names()
    await h.converged()
