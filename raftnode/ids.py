"""Member and cluster IDs, derived exactly as etcd derives them.

etcd (server/etcdserver/api/membership/member.go) computes a member ID as the
first 8 bytes (big-endian) of sha1(sorted peer URLs joined with "" + cluster
token [+ unix seconds when a member is added at run time]). The cluster ID is
the first 8 bytes of sha1 over the sorted member IDs, each as 8 big-endian
bytes. Same inputs give the same IDs as a real etcd, so operators can compare.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable

MAX_ID = (1 << 64) - 1


def member_id(peer_urls: Iterable[str], token: str, added_at_unix: int | None = None) -> int:
    """etcd's computeMemberID; `added_at_unix` is set only for run-time adds (MemberAdd)."""
    urls = sorted(peer_urls)
    if not urls:
        raise ValueError("a member needs at least one peer URL")
    raw = "".join(urls) + token
    if added_at_unix is not None:
        raw += str(added_at_unix)
    mid = int.from_bytes(hashlib.sha1(raw.encode()).digest()[:8], "big")
    if mid == 0:  # raft.None is reserved; etcd refuses it too
        raise ValueError("peer URLs hash to the reserved member id 0")
    return mid


def cluster_id(member_ids: Iterable[int]) -> int:
    """etcd's RaftCluster.genID: sha1 over the sorted member IDs as big-endian uint64s."""
    ids = sorted(member_ids)
    for i in ids:
        assert 0 < i <= MAX_ID, i
    blob = struct.pack(f">{len(ids)}Q", *ids)
    return int.from_bytes(hashlib.sha1(blob).digest()[:8], "big")


def fmt_id(value: int) -> str:
    """etcd prints IDs with %x (lower-case hex, no padding)."""
    return f"{value:x}"


def parse_id(text: str) -> int:
    """Inverse of fmt_id; raises ValueError on anything that is not a uint64 in hex."""
    value = int(text, 16)
    if not 0 <= value <= MAX_ID:
        raise ValueError(f"member id {text!r} does not fit in uint64")
    return value
