"""The pure part of netns mode: names, address plans, fault parsing, packet-filter text.

These run anywhere (no root): they pin down what the root-only tests then exercise for real.
"""

from __future__ import annotations

import ipaddress
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster import netdelay, netns
from cluster.netns import FaultSpecError, MemberNet, NetnsError, NetPlan

NAMES = ["n1", "n2", "n3", "n4", "n5"]


def test_plan_names_fit_the_kernel_limits_and_stay_in_the_subnet() -> None:
    plan = NetPlan("0a1b2c", 7)
    assert plan.subnet == ipaddress.IPv4Network("10.213.7.0/24")
    assert plan.hub == "rn-0a1b2c-hub" and plan.ns("n1") == "rn-0a1b2c-n1"
    assert len(plan.uplink) <= 15  # IFNAMSIZ - 1
    assert plan.host_ip == "10.213.7.254"
    assert all(ipaddress.IPv4Address(plan.ip(s)) in plan.subnet for s in (1, 2, 253))
    assert ipaddress.IPv4Address(plan.host_ip) in plan.subnet
    for bad in (0, 254, 300):
        with pytest.raises(NetnsError):
            plan.ip(bad)
    assert NetPlan.from_json(plan.to_json()) == plan
    with pytest.raises(NetnsError):
        NetPlan.from_json({"tag": "ZZ", "third_octet": 1})
    net = MemberNet("rn-0a1b2c-n1", "10.213.7.1", 1, 200, 2.5)
    assert MemberNet.from_json(net.to_json()) == net
    with pytest.raises(NetnsError):
        MemberNet.from_json({"ns": "x"})


def test_tag_comes_from_the_token_and_octet_avoids_host_routes() -> None:
    assert netns.tag_of("raftnode-1f3a9c0d") == "3a9c0d"
    with pytest.raises(NetnsError):
        netns.tag_of("raftnode-xyz")
    taken = [ipaddress.IPv4Network("10.213.5.0/24"), ipaddress.IPv4Network("10.213.6.0/23")]
    assert netns.free_octet(taken, 5) == 8
    assert netns.free_octet([], 200) == 200
    assert netns.free_octet([ipaddress.IPv4Network("10.213.255.0/24")], 255) == 0
    with pytest.raises(NetnsError):
        netns.free_octet([ipaddress.IPv4Network("10.0.0.0/8")], 0)


def test_partition_sides() -> None:
    names = NAMES[:3]
    assert netns.parse_groups("n1,n2 / n3", names) == (frozenset({"n1", "n2"}),
                                                       frozenset({"n3"}))
    assert netns.parse_groups("n1", names) == (frozenset({"n1"}), frozenset({"n2", "n3"}))
    assert netns.parse_groups("n1/n2/n3", names) == tuple(frozenset({n}) for n in names)
    for bad, why in (("n1,n9 / n2", "no member n9"), ("n1 / n1", "two sides"),
                     ("n1,n2,n3", "one side"), ("n1 / ", "empty side"), ("", "empty side")):
        with pytest.raises(FaultSpecError, match=why):
            netns.parse_groups(bad, names)


@given(st.lists(st.integers(0, 3), min_size=5, max_size=5))
def test_blocked_peers_cut_exactly_across_sides(assign: list[int]) -> None:
    sides = tuple(frozenset(n for n, s in zip(NAMES, assign) if s == k) for k in range(4))
    sides = tuple(s for s in sides if s)
    ips = {n: f"10.213.1.{i}" for i, n in enumerate(NAMES, start=1)}
    blocked = netns.blocked_peers(sides, ips)
    for a, sa in zip(NAMES, assign):
        for b, sb in zip(NAMES, assign):
            assert (ips[b] in blocked[a]) == (sa != sb)
    assert netns.blocked_peers((), ips) == {n: [] for n in NAMES}


def test_delay_and_loss_parsing() -> None:
    assert [netns.parse_delay(t) for t in ("200ms", "0.5s", "200", "1500us", "off", "0")] == \
        [200, 500, 200, 2, 0, 0]
    for bad in ("fast", "-5ms", "10m", "61s", "100us"):
        with pytest.raises(FaultSpecError):
            netns.parse_delay(bad)
    assert [netns.parse_loss(t) for t in ("10%", "0.5", "100%", "off")] == [10.0, 0.5, 100.0, 0]
    for bad in ("ten", "120%", "-1%"):
        with pytest.raises(FaultSpecError):
            netns.parse_loss(bad)


def test_nft_script_replaces_the_table_and_drops_both_ways() -> None:
    clean = netns.nft_script([], 0.0)
    assert "drop" not in clean
    assert clean.index("delete table inet raftnode") < clean.index("table inet raftnode {")
    cut = netns.nft_script(["10.213.1.2", "10.213.1.3"], 0.0)
    assert "ip saddr { 10.213.1.2, 10.213.1.3 } drop" in cut
    assert "ip daddr { 10.213.1.2, 10.213.1.3 } drop" in cut
    assert "numgen random mod 10000 < 50 drop" in netns.nft_script([], 0.5)
    assert 'oifname "eth0" drop' in netns.nft_script([], 100.0)
    with pytest.raises(ValueError):
        netns.nft_script(["10.213.1.2; flush ruleset"], 0.0)


def test_why_unavailable_names_root_and_the_packages() -> None:
    have = {t: "/usr/sbin/" + t for t in netns.TOOLS}
    assert netns.why_unavailable(0, have) is None
    assert "root" in (netns.why_unavailable(1000, have) or "")
    assert netns.why_unavailable(0, {**have, "nft": None}) == \
        "missing tools: apt-get install nftables"


def test_netdelay_reads_packet_ids_and_netlink_errors() -> None:
    hdr = netdelay._attr(netdelay.NFQA_PACKET_HDR, struct.pack("!IHB", 4242, 0x0800, 3))
    other = netdelay._attr(9, b"\x01\x02\x03")
    msg = netdelay._message(netdelay.NFQNL_MSG_PACKET, 7, other + hdr, seq=1)
    assert netdelay._parse_packet_ids(msg + msg.replace(struct.pack("!I", 4242),
                                                        struct.pack("!I", 4243))) == [4242, 4243]
    err = netdelay.NLMSG_HDR.pack(36, netdelay.NLMSG_ERROR, 0, 1, 0) + struct.pack("=i", -1) \
        + b"\0" * 16
    with pytest.raises(OSError):
        netdelay._parse_packet_ids(err)
    ack = netdelay.NLMSG_HDR.pack(36, netdelay.NLMSG_ERROR, 0, 1, 0) + b"\0" * 20
    assert netdelay._parse_packet_ids(ack) == []


@pytest.mark.skipif(not shutil.which("unshare"), reason="needs util-linux's unshare to drop "
                    "root for the CLI (a user namespace without a uid map)")
def test_up_netns_as_non_root_falls_back_to_loopback_with_a_message(tmp_path: Path) -> None:
    """Run as uid 65534 in a fresh user namespace: no CAP_NET_ADMIN on this host's network."""
    d = tmp_path / "plain"
    unprivileged = ["unshare", "--user", sys.executable, "-m", "cluster", "--dir", str(d)]

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*unprivileged, *args], capture_output=True, text=True,
                              timeout=60)

    try:
        p = cli("up", "--netns", "-n", "1", "--ports", "auto", "--detach", "--",
                "--heartbeat-interval", "50", "--election-timeout", "750")
        assert p.returncode == 0, p.stderr
        assert "--netns unavailable: network namespaces need root" in p.stderr
        assert "falling back to loopback mode" in p.stderr
        assert "127.0.0.1" in p.stdout
        part = cli("partition", "n1")
        assert part.returncode == 1 and "up --netns" in part.stderr
    finally:
        cli("down")
