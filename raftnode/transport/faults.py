"""peerBlackhole / peerDelay: which peers a failpoint value targets, and how long to delay.

Values (set like any gofail term, e.g. ``PUT /debug/failpoints/peerBlackhole``):
- ``return`` or ``return(true)`` or ``return("*")``: every peer;
- ``return("8e9e05c52164694d,91bc3c398fb3c146")``: those members (hex IDs, etcd's %x);
- peerDelay: ``return(200)`` delays all peers 200 ms, ``return("<ids>:200")`` only those;
  ``sleep(200)`` also works and delays every peer.
Traffic to *and* from a targeted member is affected, on this member's side.
"""

from __future__ import annotations

from raftnode.failpoints import Value


def targets(value: Value, peer: int) -> bool:
    """Does a peerBlackhole/peerDelay value name this peer?"""
    if value is True:
        return True
    if not isinstance(value, str):
        return False
    ids = value.partition(":")[0].strip()
    if ids == "*":
        return True
    return f"{peer:x}" in {s.strip().lower() for s in ids.split(",")}


def delay_seconds(value: Value, peer: int) -> float:
    """Delay for this peer from a peerDelay value (0.0 when not targeted)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return max(value, 0) / 1000.0
    if isinstance(value, str) and ":" in value and targets(value, peer):
        try:
            return max(int(value.rpartition(":")[2]), 0) / 1000.0
        except ValueError:
            return 0.0
    return 0.0
