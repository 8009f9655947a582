"""Network namespaces for a local cluster: real cuts, real loss, real latency.

Layout for a cluster tagged ``T`` (six hex digits from its token)::

    root ns ── rnT (10.213.X.254/24) ══ veth ══ up0 ┐
                                                    ├ br0   in namespace rn-T-hub
    rn-T-n1: eth0 10.213.X.1/24 ══ veth ══ v1 ──────┤
    rn-T-n2: eth0 10.213.X.2/24 ══ veth ══ v2 ──────┘ ...

The bridge lives in a namespace of its own, so nothing in the root namespace's firewall
(Docker's FORWARD policy, br_netfilter) can drop member-to-member traffic, and members have
no default route: packets can only ever go to addresses of this /24, all of which live in
namespaces we created (the root namespace holds only ``.254``, so raftctl, the live view
and tests reach every member's client URL). The root namespace also gets one ``unreachable``
route for all of 10.213.0.0/16, kept after ``down``: a stale client still polling a member
of a removed cluster gets "no route to host" at once instead of its packets following the
default route off this machine.

Faults are per member and live in the member's namespace, independent of its process:
partitions and loss are one nftables table (``inet raftnode``) rewritten atomically; delay is
``tc netem`` where the kernel has it, else a small NFQUEUE delayer (``cluster.netdelay``).
The root namespace is never cut off: like Jepsen's control node it always sees everyone.

The pure part (names, plans, parsing, rule text) is separate from the part that runs ``ip``,
``nft`` and ``tc``, so the rules are unit-tested without root.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SUBNET_PREFIX = "10.213"  # a /24 of 10.213.0.0/16 per cluster, chosen free of the host's routes
GUARD = f"{SUBNET_PREFIX}.0.0/16"  # unreachable in the root namespace unless a cluster is up
HOST_OCTET = 254
NS_PREFIX = "rn-"
NFT_TABLE = "raftnode"
DELAY_QUEUE = 7  # the NFQUEUE number the delayer binds inside a member namespace
LOCK_PATH = Path("/run/raftnode-netns.lock")
# iptables only for the NFQUEUE rule of the delay fallback, but cheap to require up front
TOOLS = {"ip": "iproute2", "tc": "iproute2", "nft": "nftables", "iptables": "iptables"}


class NetnsError(RuntimeError):
    """A namespace operation failed; the message names the command and what it said."""


class FaultSpecError(ValueError):
    """A partition, delay or loss argument cannot be understood; says what was expected."""


# -- the pure part -------------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class NetPlan:
    """Where a cluster's namespaces and addresses are; stored in the cluster file's extra."""

    tag: str  # [0-9a-f]{6}; names every namespace and the root-side veth of this cluster
    third_octet: int  # the cluster's /24 is SUBNET_PREFIX.<third_octet>.0/24

    def __post_init__(self) -> None:
        assert re.fullmatch(r"[0-9a-f]{6}", self.tag), self.tag
        assert 0 <= self.third_octet <= 255, self.third_octet

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"{SUBNET_PREFIX}.{self.third_octet}.0/24")

    @property
    def hub(self) -> str:
        return f"{NS_PREFIX}{self.tag}-hub"

    @property
    def uplink(self) -> str:
        """The root-namespace end of the veth to the hub (≤ 15 chars, unique per cluster)."""
        return f"rn{self.tag}"

    @property
    def host_ip(self) -> str:
        return f"{SUBNET_PREFIX}.{self.third_octet}.{HOST_OCTET}"

    def ip(self, slot: int) -> str:
        if not 1 <= slot < HOST_OCTET:
            raise NetnsError(f"member slot {slot} outside 1..{HOST_OCTET - 1}")
        return f"{SUBNET_PREFIX}.{self.third_octet}.{slot}"

    def ns(self, name: str) -> str:
        return f"{NS_PREFIX}{self.tag}-{name}"

    def to_json(self) -> dict[str, Any]:
        return {"tag": self.tag, "third_octet": self.third_octet, "subnet": str(self.subnet),
                "hub": self.hub, "uplink": self.uplink, "host_ip": self.host_ip}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> NetPlan:
        try:
            return cls(str(d["tag"]), int(d["third_octet"]))
        except (KeyError, TypeError, ValueError, AssertionError) as e:
            raise NetnsError(f"cluster file: bad netns record {dict(d)!r}: {e!r}") from None


@dataclass(slots=True, frozen=True)
class MemberNet:
    """One member's place on the network and the faults currently injected on it."""

    ns: str
    ip: str
    slot: int
    delay_ms: int = 0
    loss_pct: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"ns": self.ns, "ip": self.ip, "slot": self.slot, "delay_ms": self.delay_ms,
                "loss_pct": self.loss_pct}

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> MemberNet:
        try:
            return cls(str(d["ns"]), str(d["ip"]), int(d["slot"]), int(d.get("delay_ms", 0)),
                       float(d.get("loss_pct", 0.0)))
        except (KeyError, TypeError, ValueError) as e:
            raise NetnsError(f"cluster file: bad member netns record {dict(d)!r}: {e!r}") \
                from None


def tag_of(token: str) -> str:
    """Six hex digits naming a cluster's namespaces, taken from its (random) token."""
    hexes = "".join(c for c in token.lower() if c in "0123456789abcdef")
    if len(hexes) < 6:
        raise NetnsError(f"token {token!r} has too few hex digits to tag namespaces")
    return hexes[-6:]


def free_octet(taken: Sequence[ipaddress.IPv4Network], start: int) -> int:
    """The first /24 of 10.213.0.0/16 (from ``start``, wrapping) overlapping nothing taken."""
    for k in range(256):
        octet = (start + k) % 256
        net = ipaddress.IPv4Network(f"{SUBNET_PREFIX}.{octet}.0/24")
        if not any(net.overlaps(t) for t in taken):
            return octet
    raise NetnsError(f"every /24 of {SUBNET_PREFIX}.0.0/16 is in use on this host")


def parse_groups(spec: str, names: Sequence[str]) -> tuple[frozenset[str], ...]:
    """``"n1,n2 / n3"`` → the sides of a partition. Unlisted members form one more side.

    So ``partition n1`` isolates n1 from the rest. Every side is cut from every other;
    members of one side still talk to each other.
    """
    known = set(names)
    sides: list[frozenset[str]] = []
    seen: set[str] = set()
    for part in spec.split("/"):
        side = [s.strip() for s in part.split(",") if s.strip()]
        if not side:
            raise FaultSpecError(f"empty side in partition {spec!r}; write e.g. 'n1,n2 / n3'")
        unknown = [s for s in side if s not in known]
        if unknown:
            raise FaultSpecError(f"no member {', '.join(unknown)} (members: "
                                 f"{', '.join(names)})")
        twice = seen.intersection(side)
        if twice:
            raise FaultSpecError(f"{', '.join(sorted(twice))} on two sides of {spec!r}")
        seen.update(side)
        sides.append(frozenset(side))
    rest = known - seen
    if rest:
        sides.append(frozenset(rest))
    if len(sides) < 2:
        raise FaultSpecError(f"partition {spec!r} leaves everyone on one side")
    return tuple(sides)


def blocked_peers(sides: Sequence[frozenset[str]], ips: Mapping[str, str]) -> dict[str, list[str]]:
    """For each member, the sorted addresses of the members on other sides."""
    out: dict[str, list[str]] = {name: [] for name in ips}
    for side in sides:
        for name in side:
            out[name] = sorted(ips[o] for other in sides if other is not side for o in other
                               if o in ips)
    return out


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s)?\s*$")


def parse_delay(text: str) -> int:
    """``200ms``, ``0.2s``, ``200`` (ms) → milliseconds; ``off`` or ``0`` → 0 (no delay)."""
    if text.strip().lower() in ("off", "none", "clear"):
        return 0
    m = _DURATION.match(text.lower())
    if not m:
        raise FaultSpecError(f"delay {text!r}: expected e.g. 200ms, 0.5s or off")
    value = float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, None: 1.0}[m.group(2)]
    ms = round(value)
    if value and not ms:
        raise FaultSpecError(f"delay {text!r}: the smallest delay is 1ms")
    if ms > 60_000:
        raise FaultSpecError(f"delay {text!r}: more than 60s is a partition, use `partition`")
    return ms


def parse_loss(text: str) -> float:
    """``10%`` or ``10`` → 10.0 percent of the packets a member sends; ``off`` → 0."""
    t = text.strip().lower()
    if t in ("off", "none", "clear"):
        return 0.0
    try:
        pct = float(t.removesuffix("%"))
    except ValueError:
        raise FaultSpecError(f"loss {text!r}: expected a percentage such as 10%") from None
    if not 0.0 <= pct <= 100.0:
        raise FaultSpecError(f"loss {text!r}: must be between 0% and 100%")
    return pct


def nft_script(blocked: Sequence[str], loss_pct: float) -> str:
    """The whole ``inet raftnode`` table of one member, replacing the previous one at once.

    Partition: drop (not reject) both ways, so a cut looks like a dead link: TCP hangs and
    the node's own timeouts must notice. Loss: drop a random share of outgoing packets
    (in basis points, so 0.5% works), as netem's ``loss`` does, without needing netem.
    """
    assert 0.0 <= loss_pct <= 100.0, loss_pct
    for a in blocked:
        ipaddress.IPv4Address(a)  # raises on anything that is not an address
    lines = [f"table inet {NFT_TABLE}", f"delete table inet {NFT_TABLE}",
             f"table inet {NFT_TABLE} {{",
             "  chain input {", "    type filter hook input priority 0; policy accept;"]
    if blocked:
        lines.append(f"    ip saddr {{ {', '.join(blocked)} }} drop")
    lines += ["  }", "  chain output {", "    type filter hook output priority 0; policy accept;"]
    if blocked:
        lines.append(f"    ip daddr {{ {', '.join(blocked)} }} drop")
    bp = round(loss_pct * 100)
    if bp >= 10_000:
        lines.append("    oifname \"eth0\" drop")
    elif bp > 0:
        lines.append(f"    oifname \"eth0\" numgen random mod 10000 < {bp} drop")
    lines += ["  }", "}"]
    return "\n".join(lines) + "\n"


def why_unavailable(euid: int, which: Mapping[str, str | None]) -> str | None:
    """None when netns mode can run here, else the reason (for the fallback message)."""
    if euid != 0:
        return "network namespaces need root (run raft-cluster as root, e.g. with sudo)"
    missing = sorted({TOOLS[t] for t, path in which.items() if path is None and t in TOOLS})
    if missing:
        return f"missing tools: apt-get install {' '.join(missing)}"
    return None


def unavailable_reason() -> str | None:
    return why_unavailable(os.geteuid(), {t: shutil.which(t) for t in TOOLS})


# -- the part that runs ip, nft and tc ------------------------------------------------------


def run(args: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    """Run one command; on failure raise NetnsError naming it and quoting its stderr."""
    try:
        p = subprocess.run(list(args), input=stdin, capture_output=True, text=True, timeout=20)
    except FileNotFoundError:
        raise NetnsError(f"{args[0]}: not installed (apt-get install "
                         f"{TOOLS.get(args[0], args[0])})") from None
    except subprocess.TimeoutExpired:
        raise NetnsError(f"{' '.join(args)}: no answer in 20s") from None
    if check and p.returncode != 0:
        raise NetnsError(f"`{' '.join(args)}` failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


def in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *args]


def list_namespaces() -> list[str]:
    out = run(["ip", "-j", "netns", "list"], check=False).strip()
    if not out:
        return []
    try:
        return [str(e["name"]) for e in json.loads(out)]
    except (ValueError, KeyError, TypeError):
        return [line.split()[0] for line in out.splitlines() if line.strip()]


def ns_exists(ns: str) -> bool:
    return Path("/run/netns", ns).exists() or ns in list_namespaces()


def link_exists(name: str, ns: str | None = None) -> bool:
    args = ["ip"] + (["-n", ns] if ns else []) + ["link", "show", name]
    return subprocess.run(args, capture_output=True).returncode == 0


@contextlib.contextmanager
def host_lock() -> Iterator[None]:
    """Serialise subnet allocation and hub creation between launchers on this host."""
    LOCK_PATH.parent.mkdir(parents=True, exist_ok=True)
    with open(LOCK_PATH, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network the root namespace routes or holds an address in."""
    taken: list[ipaddress.IPv4Network] = []
    for entry in json.loads(run(["ip", "-j", "-4", "route", "show", "table", "all"]) or "[]"):
        dst = entry.get("dst", "")
        if dst == GUARD and entry.get("type") == "unreachable":
            continue  # our own guard, not a network in use
        if dst and dst != "default":
            with contextlib.suppress(ValueError):
                taken.append(ipaddress.IPv4Network(dst, strict=False))
    for link in json.loads(run(["ip", "-j", "-4", "addr", "show"]) or "[]"):
        for a in link.get("addr_info", []):
            with contextlib.suppress(ValueError, KeyError):
                taken.append(ipaddress.IPv4Network(f"{a['local']}/{a['prefixlen']}",
                                                   strict=False))
    return taken


def allocate(token: str) -> NetPlan:
    """A plan for a new cluster: its tag and a /24 no route of this host overlaps.

    Call under ``host_lock()`` and create the hub before releasing it, so two launchers
    never pick the same /24.
    """
    tag = tag_of(token)
    if any(n.startswith(f"{NS_PREFIX}{tag}-") for n in list_namespaces()):
        raise NetnsError(f"namespaces {NS_PREFIX}{tag}-* exist already; "
                         f"run `raft-cluster down --force --tag {tag}`")
    return NetPlan(tag, free_octet(_taken_networks(), start=int(tag, 16) % 256))


def ensure_guard_route() -> None:
    """The root namespace's ``unreachable 10.213.0.0/16``: our range never leaves the host.

    A cluster's connected /24 is more specific, so it wins while the cluster is up.
    """
    shown = run(["ip", "-j", "-4", "route", "show", "type", "unreachable", GUARD])
    if not json.loads(shown or "[]"):
        run(["ip", "route", "add", "unreachable", GUARD])


def create_hub(plan: NetPlan) -> None:
    """The bridge namespace and its link to the root namespace (idempotent)."""
    ensure_guard_route()
    hub = plan.hub
    if not ns_exists(hub):
        run(["ip", "netns", "add", hub])
    run(["ip", "-n", hub, "link", "set", "lo", "up"])
    if not link_exists("br0", hub):
        run(["ip", "-n", hub, "link", "add", "br0", "type", "bridge"])
    run(["ip", "-n", hub, "link", "set", "br0", "up"])
    if not link_exists(plan.uplink):
        run(["ip", "link", "add", plan.uplink, "type", "veth", "peer", "name", "up0",
             "netns", hub])
    run(["ip", "-n", hub, "link", "set", "up0", "master", "br0", "up"])
    run(["ip", "addr", "replace", f"{plan.host_ip}/24", "dev", plan.uplink])
    run(["ip", "link", "set", plan.uplink, "up"])


def create_member(plan: NetPlan, net: MemberNet) -> None:
    """A member's namespace, its veth onto the hub's bridge and its address (idempotent).

    No default route is added: the member can reach only this cluster's /24.
    """
    if not ns_exists(plan.hub) or not link_exists(plan.uplink):
        create_hub(plan)
    if not ns_exists(net.ns):
        run(["ip", "netns", "add", net.ns])
    run(["ip", "-n", net.ns, "link", "set", "lo", "up"])
    port = f"v{net.slot}"
    if not link_exists("eth0", net.ns):
        if link_exists(port, plan.hub):  # a half-made pair from a crashed launcher
            run(["ip", "-n", plan.hub, "link", "del", port])
        run(["ip", "-n", plan.hub, "link", "add", port, "type", "veth", "peer", "name", "eth0",
             "netns", net.ns])
    run(["ip", "-n", plan.hub, "link", "set", port, "master", "br0", "up"])
    run(["ip", "-n", net.ns, "addr", "replace", f"{net.ip}/24", "dev", "eth0"])
    run(["ip", "-n", net.ns, "link", "set", "eth0", "up"])


def apply_filter(net: MemberNet, blocked: Sequence[str]) -> None:
    run(in_ns(net.ns, "nft", "-f", "-"), stdin=nft_script(blocked, net.loss_pct))


def filter_rules(ns: str) -> str:
    """The member's nftables table as text (for status and tests)."""
    return run(in_ns(ns, "nft", "list", "table", "inet", NFT_TABLE), check=False)


def netem_available(ns: str) -> bool:
    """Whether this kernel has sch_netem (probed on the member's loopback, then removed)."""
    p = subprocess.run(in_ns(ns, "tc", "qdisc", "add", "dev", "lo", "root", "netem",
                             "delay", "1ms"), capture_output=True, text=True)
    if p.returncode != 0:
        return False
    run(in_ns(ns, "tc", "qdisc", "del", "dev", "lo", "root"), check=False)
    return True


def delayer_pids(ns: str) -> list[int]:
    """Pids of ``cluster.netdelay`` processes running inside namespace ``ns``."""
    out = []
    for pid in _ns_pids(ns):
        with contextlib.suppress(OSError):
            if b"cluster.netdelay" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
    return out


def set_delay(net: MemberNet) -> str:
    """Make the member's outgoing packets wait ``net.delay_ms``; 0 removes the delay.

    Returns the mechanism used: ``netem`` or ``nfqueue`` (this kernel lacks sch_netem).
    """
    run(in_ns(net.ns, "tc", "qdisc", "del", "dev", "eth0", "root"), check=False)
    _stop_delayer(net.ns)
    if net.delay_ms == 0:
        return "none"
    if netem_available(net.ns):
        run(in_ns(net.ns, "tc", "qdisc", "replace", "dev", "eth0", "root", "netem", "delay",
                  f"{net.delay_ms}ms", "limit", "100000"))
        return "netem"
    log = open(os.devnull, "wb")  # noqa: SIM115 - handed to the child
    try:
        subprocess.Popen(in_ns(net.ns, sys.executable, "-m", "cluster.netdelay",
                               "--queue", str(DELAY_QUEUE), "--delay-ms", str(net.delay_ms),
                               "--ready-file", str(_ready_file(net.ns))),
                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                         start_new_session=True)
    finally:
        log.close()
    deadline = time.monotonic() + 10.0
    while not _queue_bound(net.ns) and time.monotonic() < deadline:
        time.sleep(0.05)
    if not _queue_bound(net.ns):
        _stop_delayer(net.ns)
        raise NetnsError(f"{net.ns}: the NFQUEUE delayer did not start (kernel without "
                         "nfnetlink_queue?)")
    # --queue-bypass: should the delayer die, packets flow undelayed instead of vanishing
    try:
        run(in_ns(net.ns, "iptables", "-w", "-A", "OUTPUT", "-o", "eth0", "-j", "NFQUEUE",
                  "--queue-num", str(DELAY_QUEUE), "--queue-bypass"))
    except NetnsError:
        _stop_delayer(net.ns)
        raise
    return "nfqueue"


def _queue_bound(ns: str) -> bool:
    """True once a delayer has bound its queue (it writes a ready file per namespace)."""
    return bool(delayer_pids(ns)) and _ready_file(ns).exists()


def _ready_file(ns: str) -> Path:
    return Path(f"/run/raftnode-netdelay-{ns}.ready")


def _stop_delayer(ns: str) -> None:
    while subprocess.run(in_ns(ns, "iptables", "-w", "-D", "OUTPUT", "-o", "eth0", "-j",
                               "NFQUEUE", "--queue-num", str(DELAY_QUEUE), "--queue-bypass"),
                         capture_output=True).returncode == 0:
        pass
    pids = delayer_pids(ns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)  # it accepts what it holds, then exits
    deadline = time.monotonic() + 5.0
    while pids and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, os.WNOHANG)  # ours when this process started it
        pids = [p for p in pids if _running(p)]
        time.sleep(0.02)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _ready_file(ns).unlink(missing_ok=True)


def _running(pid: int) -> bool:
    """Alive and not a zombie (a zombie's cmdline is empty)."""
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def _ns_pids(ns: str) -> list[int]:
    out = run(["ip", "netns", "pids", ns], check=False)
    return [int(p) for p in out.split() if p.isdigit()]


def kill_inside(ns: str) -> list[int]:
    """SIGKILL every process in namespace ``ns`` (leftovers of a crashed launcher)."""
    pids = _ns_pids(ns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return pids


def leftovers(tag: str) -> list[str]:
    """Namespaces named for cluster ``tag`` (found by prefix, whatever the cluster file says)."""
    return sorted(n for n in list_namespaces() if n.startswith(f"{NS_PREFIX}{tag}-"))


def remove_ns(ns: str) -> bool:
    """Kill what runs in namespace ``ns``, then delete it (its veth pair goes with it)."""
    if not ns_exists(ns):
        return False
    _stop_delayer(ns)
    kill_inside(ns)
    run(["ip", "netns", "del", ns], check=False)
    _ready_file(ns).unlink(missing_ok=True)
    return True


def teardown(tag: str, known: Sequence[str] = ()) -> list[str]:
    """Remove a cluster's namespaces, veths and bridge; kills what still runs inside them.

    ``known`` are the namespaces the cluster file lists; those found by the ``rn-<tag>-``
    prefix are removed too. Deleting a namespace deletes its veth ends, and with them the
    peers (the root-side ``rn<tag>`` goes with the hub). Returns what was removed.
    """
    removed = [ns for ns in sorted(set(known) | set(leftovers(tag))) if remove_ns(ns)]
    if link_exists(f"rn{tag}"):
        run(["ip", "link", "del", f"rn{tag}"], check=False)
        removed.append(f"rn{tag}")
    return removed
