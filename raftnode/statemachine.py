"""What every member applies from the log: the MVCC store plus the membership table.

Deterministic: the same committed entries give the same state (and the same ``hash``) on
every member. Normal entry data is ``msgpack [op, request_id, body]``; an empty entry is a
leader's no-op. Conf-change entries carry the new member's attributes in their context.

A proposer re-submits its pending proposals when the leader changes (the first copy may or
may not have made it into the log), as ``[op, request_id, body, since]``: ``since`` is the
proposer's applied index when it first proposed, so any earlier copy sits above it. The
machine remembers the request IDs of the last ``DEDUP_WINDOW`` entries (replicated state:
it travels in snapshots) and applies a request ID at most once; a re-submission whose
``since`` has slid out of the window is refused, since it can no longer be checked.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

import msgpack

from raftnode.mvcc.codec import decode_request, encode_request
from raftnode.mvcc.errors import EtcdError, GrpcCode
from raftnode.mvcc.messages import Request, Response
from raftnode.mvcc.store import MVCCStore
from raftnode.raft.types import ConfChange, ConfChangeType
from raftnode.snapparts import SnapParts, array_header

OP_KV = 0  # body: mvcc encode_request bytes
OP_PUBLISH = 1  # body: [member_id, name, client_urls]
OP_UPDATE = 2  # body: [member_id, peer_urls] (not a raft conf change: quorum is unchanged)
SNAPSHOT_FORMAT = 2  # 2: + the deduplication window
DEDUP_WINDOW = 20_000  # entries; ≥ a request timeout's worth of writes at several k/s


class StateMachineError(RuntimeError):
    """A committed entry that cannot be applied: the log is corrupt or from another program."""


@dataclass(slots=True)
class MemberInfo:
    id: int
    name: str = ""
    peer_urls: tuple[str, ...] = ()
    client_urls: tuple[str, ...] = ()
    is_learner: bool = False


def encode_kv(request_id: int, req: Request) -> bytes:
    return msgpack.packb([OP_KV, request_id, encode_request(req)])


def as_resubmission(data: bytes, since: int) -> bytes:
    """The same proposal, marked as a re-submission (see the module docstring)."""
    op, request_id, body = msgpack.unpackb(data)[:3]
    return msgpack.packb([op, request_id, body, since])


def encode_publish(request_id: int, member_id: int, name: str, client_urls: Iterable[str]) -> bytes:
    return msgpack.packb([OP_PUBLISH, request_id, [member_id, name, list(client_urls)]])


def encode_update(request_id: int, member_id: int, peer_urls: Iterable[str]) -> bytes:
    return msgpack.packb([OP_UPDATE, request_id, [member_id, list(peer_urls)]])


def encode_cc_context(peer_urls: Iterable[str], name: str = "", request_id: int = 0) -> bytes:
    """A conf change's context: the member's attributes and the proposer's request ID."""
    return msgpack.packb([list(peer_urls), name, request_id])


def decode_cc_context(ctx: bytes) -> tuple[tuple[str, ...], str, int]:
    if not ctx:
        return (), "", 0
    try:
        urls, name, rid = msgpack.unpackb(ctx)
        return tuple(str(u) for u in urls), str(name), int(rid)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise StateMachineError(f"bad conf change context: {e}") from e


@dataclass(slots=True)
class StateMachine:
    store: MVCCStore
    members: dict[int, MemberInfo] = field(default_factory=dict)
    removed: set[int] = field(default_factory=set)
    # request ID -> index of the entry that applied it, for the last DEDUP_WINDOW entries
    applied_ids: OrderedDict[int, int] = field(default_factory=OrderedDict)

    def apply_normal(self, data: bytes, index: int = 0
                     ) -> tuple[int, Response | EtcdError | None]:
        """Apply the normal entry at ``index``; return (request_id, result) for its waiter.

        A request ID already applied inside the window is a duplicate: it is skipped and
        reported with ID 0, so no waiter is resolved twice.
        """
        if not data:
            return 0, None
        try:
            item = msgpack.unpackb(data)
            op, request_id, body = item[0], item[1], item[2]
            since = item[3] if len(item) > 3 else None
        except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as e:
            raise StateMachineError(f"undecodable entry ({len(data)} bytes): {e}") from e
        if request_id:
            ids = self.applied_ids
            while ids and next(iter(ids.values())) <= index - DEDUP_WINDOW:
                ids.popitem(last=False)
            if request_id in ids:
                return 0, None
            if since is not None and since < index - DEDUP_WINDOW:
                # an earlier copy may have applied before the window: refuse, uncheckable
                ids[request_id] = index
                return request_id, EtcdError(
                    "etcdserver: request timed out (re-submitted too late to deduplicate)",
                    GrpcCode.UNAVAILABLE)
            ids[request_id] = index
        if op == OP_KV:
            req = decode_request(body)
            try:
                return request_id, self.store.apply(req)
            except EtcdError as e:  # a deterministic refusal: the same on every member
                return request_id, e
        if op == OP_PUBLISH:
            member_id, name, client_urls = body
            m = self.members.get(member_id)
            if m is not None:
                m.name = str(name)
                m.client_urls = tuple(str(u) for u in client_urls)
            return request_id, None
        if op == OP_UPDATE:
            member_id, peer_urls = body
            m = self.members.get(member_id)
            if m is not None:
                m.peer_urls = tuple(str(u) for u in peer_urls)
            return request_id, None
        raise StateMachineError(f"unknown entry op {op!r}")

    def apply_conf_change(self, cc: ConfChange) -> None:
        peer_urls, name, _ = decode_cc_context(cc.context)
        t = cc.type
        if t in (ConfChangeType.ADD_NODE, ConfChangeType.ADD_LEARNER):
            learner = t == ConfChangeType.ADD_LEARNER
            self.members[cc.node_id] = MemberInfo(cc.node_id, name, peer_urls, (), learner)
        elif t == ConfChangeType.PROMOTE_LEARNER:
            if cc.node_id in self.members:
                self.members[cc.node_id].is_learner = False
        elif t == ConfChangeType.REMOVE_NODE:
            self.members.pop(cc.node_id, None)
            self.removed.add(cc.node_id)

    # -- snapshots --------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        return self.snapshot_parts().join()

    def snapshot_parts(self) -> SnapParts:
        """``[format, store, members, removed, applied IDs]``, the store as its parts (see
        :meth:`MVCCStore.snapshot_parts`); the same bytes as ``msgpack.packb`` of the list."""
        return self.wrap(self.store.snapshot_parts(), self.snapshot_tail())

    def snapshot_tail(self) -> tuple[bytes, ...]:
        """What follows the store in a snapshot (members, removed IDs, the dedup window),
        packed now: a snapshot packed later (MVCCStore.plan_delta) takes it at its instant."""
        members = [[m.id, m.name, list(m.peer_urls), list(m.client_urls), m.is_learner]
                   for m in sorted(self.members.values(), key=lambda m: m.id)]
        packb = msgpack.packb
        return (packb(members), packb(sorted(self.removed)),
                packb(list(self.applied_ids.items())))

    @staticmethod
    def wrap(store_parts: SnapParts, tail: tuple[bytes, ...]) -> SnapParts:
        return store_parts.as_bin(array_header(5) + msgpack.packb(SNAPSHOT_FORMAT), tail)

    def restore(self, data: bytes) -> None:
        try:
            fmt, kv, members, removed, *rest = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException) as e:
            raise StateMachineError(f"not a raftnode snapshot: {e}") from e
        if fmt not in (1, SNAPSHOT_FORMAT):
            raise StateMachineError(f"unknown snapshot format {fmt!r}")
        self.applied_ids = OrderedDict((int(r), int(i)) for r, i in (rest[0] if rest else ()))
        self.store.restore(kv)
        self.members = {int(i): MemberInfo(int(i), str(n), tuple(p), tuple(c), bool(lr))
                        for i, n, p, c, lr in members}
        self.removed = {int(i) for i in removed}

    def member_list(self) -> list[MemberInfo]:
        return sorted(self.members.values(), key=lambda m: m.id)

