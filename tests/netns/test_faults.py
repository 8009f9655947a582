"""delay and loss on a real member, applied and removed, checked from the root namespace.

The delay is checked by the smallest TCP connect time to the member (its SYN-ACK leaves
through the delayed link), a lower bound no scheduling hiccup can fake; loss by 100% loss
making the member unreachable and `loss off` making it reachable again.
"""

from __future__ import annotations

import asyncio
import socket

import pytest

from cluster import netns
from cluster.launcher import LaunchError
from tests.netns.conftest import NetnsHarness, connect_rtt

pytestmark = pytest.mark.timeout(120)


async def test_delay_and_loss_applied_and_removed(netns_harness: NetnsHarness) -> None:
    h = netns_harness
    await h.up(3)
    n1, n2, _ = h.names()
    ip = h.ip(n1)
    assert connect_rtt(ip) < 0.2  # sanity: the undelayed link is not already that slow

    how = await asyncio.to_thread(h.launcher.delay, n1, "300ms")
    assert how in ("netem", "nfqueue")
    assert connect_rtt(ip) >= 0.3
    assert h.launcher.load().member(n1).extra["netns"]["delay_ms"] == 300
    async with h.client(timeout=10.0) as c:  # the cluster still works, just slower
        await c.put("slow", "1")

    await asyncio.to_thread(h.launcher.delay, n1, "off")
    assert connect_rtt(ip) < 0.3
    assert netns.delayer_pids(h.ns(n1)) == []
    assert h.launcher.load().member(n1).extra["netns"]["delay_ms"] == 0

    await asyncio.to_thread(h.launcher.loss, n2, "10%")
    assert "mod 10000 < 1000 drop" in netns.filter_rules(h.ns(n2))
    await asyncio.to_thread(h.launcher.loss, n2, "100%")
    with pytest.raises(OSError):  # every SYN-ACK dropped: connect times out
        socket.create_connection((h.ip(n2), 2379), timeout=1.0).close()
    await asyncio.to_thread(h.launcher.loss, n2, "off")
    assert "drop" not in netns.filter_rules(h.ns(n2))
    assert connect_rtt(h.ip(n2)) < 1.0
    await h.converged()


async def test_partition_spec_errors_lose_nothing(netns_harness: NetnsHarness) -> None:
    h = netns_harness
    await h.up(3)
    before = h.launcher.load()
    for bad in ("n1,n9 / n2", "n1 / n1", "n1,n2,n3", " / n2"):
        with pytest.raises(netns.FaultSpecError):
            h.launcher.partition(bad)
    for verb, arg in ((h.launcher.delay, "fast"), (h.launcher.loss, "120%")):
        with pytest.raises(netns.FaultSpecError):
            verb("n1", arg)
    with pytest.raises(KeyError):
        h.launcher.delay("n9", "10ms")
    assert h.launcher.load() == before
    assert all("drop" not in netns.filter_rules(h.ns(n)) for n in h.names())


async def test_netns_verbs_refuse_on_a_loopback_cluster(tmp_path) -> None:
    from cluster.launcher import Launcher

    launcher = Launcher(tmp_path / "plain")
    launcher.create(3, auto_ports=True)  # nothing started: the verbs must refuse first
    for call in (lambda: launcher.partition("n1 / n2,n3"), launcher.heal,
                 lambda: launcher.delay("n1", "10ms"), lambda: launcher.loss("n1", "5%")):
        with pytest.raises(LaunchError, match="up --netns"):
            call()
