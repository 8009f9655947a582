"""The MVCC key-value store: etcd's revision semantics as a deterministic, pure object.

No I/O, no clock: every member applying the same requests in the same order ends in
the same state (checked with :meth:`MVCCStore.hash`). Layout:

* ``_keys``: sorted list of every key with any retained history (bisect for ranges);
* ``_index``: key -> :class:`_History`, parallel lists of mod revisions and records;
  a tombstone record (deletion) has ``version == 0``;
* ``_leases``: lease ID -> :class:`Lease` (granted TTL and attached keys).

Single-key operations are O(log n); ranges are O(log n + keys in range).
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, bisect_right, insort
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

from raftnode.mvcc.errors import (
    ErrCompacted,
    ErrFutureRev,
    ErrKeyNotFound,
    ErrLeaseExists,
    ErrLeaseNotFound,
    ErrLeaseTTLTooLarge,
    SnapshotError,
)
from raftnode.mvcc.messages import (
    CompactionRequest,
    CompactionResponse,
    Compare,
    CompareResult,
    CompareTarget,
    DeleteRangeRequest,
    DeleteRangeResponse,
    Event,
    EventType,
    HashKVResponse,
    KeyValue,
    Lease,
    LeaseGrantRequest,
    LeaseGrantResponse,
    LeaseLeasesRequest,
    LeaseLeasesResponse,
    LeaseRevokeRequest,
    LeaseRevokeResponse,
    LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
    OpResponse,
    PutRequest,
    PutResponse,
    RangeRequest,
    RangeResponse,
    Request,
    Response,
    SortOrder,
    SortTarget,
    TxnRequest,
    TxnResponse,
)
from raftnode.snapparts import SnapParts, array_header
from wal.pagewriter import Chunk

MAX_LEASE_TTL = 9_000_000_000
SNAPSHOT_FORMAT = "raftnode-mvcc/3"  # 3: versions column-wise, in chunks (incremental)
_SNAPSHOT_FORMAT_2 = "raftnode-mvcc/2"  # one list per version; still restored
_VERSION_OVERHEAD = 48

EventSink = Callable[[int, list[Event]], None]

_SORT_KEYS: dict[SortTarget, Callable[[KeyValue], Any]] = {
    SortTarget.KEY: lambda kv: kv.key,
    SortTarget.VERSION: lambda kv: kv.version,
    SortTarget.CREATE: lambda kv: kv.create_revision,
    SortTarget.MOD: lambda kv: kv.mod_revision,
    SortTarget.VALUE: lambda kv: kv.value,
}


class _History:
    """All retained versions of one key, oldest first: ``revs[i]`` is ``kvs[i].mod_revision``
    and ``subs[i]`` its position among the changes of that revision (etcd's sub-revision;
    a key changed twice in one txn, e.g. put then deleted by a later op, has two entries)."""

    __slots__ = ("kvs", "revs", "subs")

    def __init__(self) -> None:
        self.revs: list[int] = []
        self.subs: list[int] = []
        self.kvs: list[KeyValue] = []

    def append(self, kv: KeyValue, sub: int) -> None:
        self.revs.append(kv.mod_revision)
        self.subs.append(sub)
        self.kvs.append(kv)

    def latest(self) -> KeyValue | None:
        kv = self.kvs[-1] if self.kvs else None
        return kv if kv is not None and kv.version else None

    def at(self, rev: int) -> KeyValue | None:
        i = bisect_right(self.revs, rev) - 1
        if i < 0:
            return None
        kv = self.kvs[i]
        return kv if kv.version else None


@dataclass(slots=True)
class _SnapBase:
    """The versions up to ``rev`` (compacted at ``compact_rev``) packed as ``chunks`` chunks
    in ``parts``, the buffers of the snapshot the member keeps. The same objects go into
    every later snapshot, so the snapshot file writer can tell they are already on disk."""

    rev: int
    compact_rev: int
    parts: tuple[Chunk, ...]
    chunks: int


class StaleSnapshotError(SnapshotError):
    """A compaction or a restore changed the history under a snapshot being packed."""


@dataclass(slots=True)
class DeltaPlan:
    """An incremental snapshot being packed in the parent (:meth:`MVCCStore.plan_delta`):
    the versions of ``keys`` in (base revision, token revision], collected column-wise."""

    token: SnapshotToken
    base: _SnapBase
    keys: list[bytes]
    head: bytes
    pos: int = 0
    ks: list[bytes] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    revs: list[int] = field(default_factory=list)
    subs: list[int] = field(default_factory=list)
    kvs: list[KeyValue] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class SnapshotToken:
    """The store as a forked snapshot child saw it (see :meth:`MVCCStore.snapshot_forked`)."""

    epoch: int
    rev: int
    compact_rev: int


def _strip_value(kv: KeyValue) -> KeyValue:
    return KeyValue(kv.key, kv.create_revision, kv.mod_revision, kv.version, b"", kv.lease)


def _compare_ok(c: Compare, kv: KeyValue) -> bool:
    t = c.target
    have: int | bytes
    if t is CompareTarget.VALUE:
        have = kv.value
        want: int | bytes = c.value if isinstance(c.value, bytes) else b""
    else:
        if t is CompareTarget.VERSION:
            have = kv.version
        elif t is CompareTarget.CREATE:
            have = kv.create_revision
        elif t is CompareTarget.MOD:
            have = kv.mod_revision
        else:
            have = kv.lease
        want = c.value if isinstance(c.value, int) else 0
    r = c.result
    if r is CompareResult.EQUAL:
        return have == want
    if r is CompareResult.NOT_EQUAL:
        return have != want
    if r is CompareResult.GREATER:
        return have > want  # type: ignore[operator]
    return have < want  # type: ignore[operator]


class MVCCStore:
    """etcd's MVCC semantics. Drive it with :meth:`apply`; it raises :class:`EtcdError`
    subclasses for requests etcd rejects, and then has changed nothing."""

    def __init__(self, *, min_lease_ttl: int = 1) -> None:
        self.min_lease_ttl = min_lease_ttl
        #: called as ``sink(revision, events)`` after each request that changed keys
        self.event_sink: EventSink | None = None
        self._rev = 1
        self._compact_rev = -1
        self._keys: list[bytes] = []
        self._index: dict[bytes, _History] = {}
        self._leases: dict[int, Lease] = {}
        self._next_lease_id = 1
        self._size = 0  # approximate bytes of retained history, see approx_size()
        self._changes = 0
        self._events: list[Event] | None = None
        # incremental snapshots (plan_delta): the last one's packed versions, the keys
        # written since it was taken, and a count of restores (which void both)
        self._base: _SnapBase | None = None
        self._changed: set[bytes] | None = None
        self._epoch = 0
        self._dispatch: dict[type, Callable[[Any], Response]] = {
            PutRequest: self.put,
            RangeRequest: self.range,
            DeleteRangeRequest: self.delete_range,
            TxnRequest: self.txn,
            CompactionRequest: self.compact,
            LeaseGrantRequest: self.lease_grant,
            LeaseRevokeRequest: self.lease_revoke,
            LeaseTimeToLiveRequest: self.lease_time_to_live,
            LeaseLeasesRequest: self.lease_leases,
        }

    # ------------------------------------------------------------------ queries

    @property
    def revision(self) -> int:
        return self._rev

    @property
    def compact_revision(self) -> int:
        """The last compaction revision, -1 if never compacted (as etcd)."""
        return self._compact_rev

    def get(self, key: bytes) -> KeyValue | None:
        h = self._index.get(key)
        return h.latest() if h is not None else None

    def lease(self, lease_id: int) -> Lease | None:
        return self._leases.get(lease_id)

    def lease_ids(self) -> list[int]:
        return sorted(self._leases)

    def approx_size(self) -> int:
        """Bytes of retained history (keys, values, ~48 bytes per version): what etcd's
        ``dbSize`` approximates, kept up to date in O(1) per change."""
        return self._size

    def __len__(self) -> int:
        return sum(1 for k in self._keys if self._index[k].latest() is not None)

    # -------------------------------------------------------------------- apply

    def apply(self, req: Request) -> Response:
        """Apply any request; the entry point for the driver's apply loop."""
        try:
            handler = self._dispatch[type(req)]
        except KeyError:
            raise TypeError(f"not a state machine request: {type(req).__name__}") from None
        return handler(req)

    def _begin(self) -> None:
        assert self._changes == 0, "nested write"
        self._events = [] if self.event_sink is not None else None

    def _end(self) -> int:
        events = self._events
        self._events = None
        if self._changes:
            self._changes = 0
            self._rev += 1
            if events is not None and self.event_sink is not None:
                self.event_sink(self._rev, events)
        return self._rev

    def _cur(self) -> int:
        """The revision reads see now (inside a write: including its own changes)."""
        return self._rev + 1 if self._changes else self._rev

    # ---------------------------------------------------------- key primitives

    def _span(self, key: bytes, range_end: bytes) -> list[bytes]:
        keys = self._keys
        lo = bisect_left(keys, key)
        if range_end == b"\x00":
            return keys[lo:]
        if range_end <= key:
            return []
        return keys[lo:bisect_left(keys, range_end, lo)]

    def _live(self, key: bytes, range_end: bytes, rev: int) -> list[KeyValue]:
        """Live key-values in [key, range_end) at ``rev`` (``rev == _cur()`` is the fast path)."""
        index = self._index
        latest = rev >= self._cur()
        if not range_end:
            h = index.get(key)
            kv = None if h is None else (h.latest() if latest else h.at(rev))
            return [] if kv is None else [kv]
        out: list[KeyValue] = []
        append = out.append
        for k in self._span(key, range_end):
            h = index[k]
            if latest:
                kv = h.kvs[-1]
                if kv.version:
                    append(kv)
            else:
                kv2 = h.at(rev)
                if kv2 is not None:
                    append(kv2)
        return out

    def _write_put(self, key: bytes, value: bytes, lease: int) -> tuple[KeyValue, KeyValue | None]:
        rev = self._rev + 1
        h = self._index.get(key)
        if h is None:
            h = self._index[key] = _History()
            insort(self._keys, key)
        prev = h.latest()
        if prev is None:
            kv = KeyValue(key, rev, rev, 1, value, lease)
        else:
            kv = KeyValue(key, prev.create_revision, rev, prev.version + 1, value, lease)
            if prev.lease and prev.lease != lease:
                old = self._leases.get(prev.lease)
                if old is not None:
                    old.keys.discard(key)
        h.append(kv, self._changes)
        if self._changed is not None:
            self._changed.add(key)
        self._size += len(key) + len(value) + _VERSION_OVERHEAD
        if lease:
            self._leases[lease].keys.add(key)
        self._changes += 1
        if self._events is not None:
            self._events.append(Event(EventType.PUT, kv, prev))
        return kv, prev

    def _write_delete(self, key: bytes, range_end: bytes) -> list[KeyValue]:
        rev = self._rev + 1
        deleted = self._live(key, range_end, self._cur())
        index, events = self._index, self._events
        for prev in deleted:
            tomb = KeyValue(prev.key, 0, rev, 0, b"", 0)
            index[prev.key].append(tomb, self._changes)
            if self._changed is not None:
                self._changed.add(prev.key)
            self._size += len(prev.key) + _VERSION_OVERHEAD
            self._changes += 1
            if prev.lease:
                lease = self._leases.get(prev.lease)
                if lease is not None:
                    lease.keys.discard(prev.key)
            if events is not None:
                events.append(Event(EventType.DELETE, tomb, prev))
        return deleted

    # ------------------------------------------------------------------ KV ops

    def range(self, r: RangeRequest) -> RangeResponse:
        return self._range(r, self._cur())

    def _range(self, r: RangeRequest, cur: int) -> RangeResponse:
        rev = r.revision
        if rev > cur:
            raise ErrFutureRev()
        if rev <= 0:
            rev = cur
        elif rev < self._compact_rev:
            raise ErrCompacted()
        kvs = self._live(r.key, r.range_end, rev)
        count = len(kvs)
        if r.count_only:
            return RangeResponse(cur, (), False, count)
        if r.max_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision <= r.max_mod_revision]
        if r.min_mod_revision:
            kvs = [kv for kv in kvs if kv.mod_revision >= r.min_mod_revision]
        if r.max_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision <= r.max_create_revision]
        if r.min_create_revision:
            kvs = [kv for kv in kvs if kv.create_revision >= r.min_create_revision]
        order, target = r.sort_order, r.sort_target
        if order == SortOrder.NONE and target != SortTarget.KEY:
            order = SortOrder.ASCEND
        if order == SortOrder.DESCEND:
            kvs.sort(key=_SORT_KEYS[SortTarget(target)], reverse=True)
        elif order == SortOrder.ASCEND and target != SortTarget.KEY:
            kvs.sort(key=_SORT_KEYS[SortTarget(target)])  # stable: ties stay in key order
        more = False
        if 0 < r.limit < len(kvs):
            del kvs[r.limit:]
            more = True
        if r.keys_only:
            kvs = [_strip_value(kv) for kv in kvs]
        return RangeResponse(cur, tuple(kvs), more, count)

    def _check_put(self, r: PutRequest) -> None:
        if r.lease and r.lease not in self._leases:
            raise ErrLeaseNotFound()
        if (r.ignore_value or r.ignore_lease) and self.get(r.key) is None:
            raise ErrKeyNotFound()

    def _do_put(self, r: PutRequest) -> PutResponse:
        value, lease = r.value, r.lease
        if r.ignore_value or r.ignore_lease:
            cur = self.get(r.key)
            assert cur is not None, "checked before the write"
            if r.ignore_value:
                value = cur.value
            if r.ignore_lease:
                lease = cur.lease
        _, prev = self._write_put(r.key, value, lease)
        return PutResponse(self._rev + 1, prev if r.prev_kv else None)

    def put(self, r: PutRequest) -> PutResponse:
        self._check_put(r)
        self._begin()
        resp = self._do_put(r)
        self._end()
        return resp

    def delete_range(self, r: DeleteRangeRequest) -> DeleteRangeResponse:
        self._begin()
        deleted = self._write_delete(r.key, r.range_end)
        rev = self._end()
        return DeleteRangeResponse(rev, len(deleted), tuple(deleted) if r.prev_kv else ())

    # --------------------------------------------------------------------- txn

    def _compare(self, c: Compare) -> bool:
        kvs = self._live(c.key, c.range_end, self._cur())
        if not kvs:
            return c.target != CompareTarget.VALUE and _compare_ok(c, KeyValue(c.key))
        return all(_compare_ok(c, kv) for kv in kvs)

    def _path(self, t: TxnRequest, path: list[bool]) -> None:
        """etcd's compareToPath: every compare on the taken branches, evaluated up front."""
        ok = all(self._compare(c) for c in t.compare)
        path.append(ok)
        for op in t.success if ok else t.failure:
            if isinstance(op, TxnRequest):
                self._path(op, path)

    def _check_ops(self, t: TxnRequest, path: list[bool], pos: int) -> int:
        ok = path[pos]
        pos += 1
        for op in t.success if ok else t.failure:
            if isinstance(op, PutRequest):
                self._check_put(op)
            elif isinstance(op, RangeRequest):
                if op.revision > self._rev:
                    raise ErrFutureRev()
                if 0 < op.revision < self._compact_rev:
                    raise ErrCompacted()
            elif isinstance(op, TxnRequest):
                pos = self._check_ops(op, path, pos)
        return pos

    def _exec(self, t: TxnRequest, path: list[bool], pos: int) -> tuple[TxnResponse, int]:
        ok = path[pos]
        pos += 1
        out: list[OpResponse] = []
        for op in t.success if ok else t.failure:
            resp: OpResponse
            if isinstance(op, RangeRequest):
                resp = self._range(op, self._cur())
            elif isinstance(op, PutRequest):
                resp = self._do_put(op)
            elif isinstance(op, DeleteRangeRequest):
                deleted = self._write_delete(op.key, op.range_end)
                resp = DeleteRangeResponse(self._cur(), len(deleted),
                                           tuple(deleted) if op.prev_kv else ())
            else:
                resp, pos = self._exec(op, path, pos)
            out.append(resp)
        return TxnResponse(self._cur(), ok, tuple(out)), pos

    def txn(self, t: TxnRequest) -> TxnResponse:
        path: list[bool] = []
        self._path(t, path)
        self._check_ops(t, path, 0)
        self._begin()
        resp, _ = self._exec(t, path, 0)
        rev = self._end()
        return TxnResponse(rev, resp.succeeded, resp.responses)

    # -------------------------------------------------------------- compaction

    def compact(self, r: CompactionRequest) -> CompactionResponse:
        """Drop every version superseded at or before ``r.revision`` (tombstones included)."""
        rev = r.revision
        if rev <= self._compact_rev:
            raise ErrCompacted()
        if rev > self._rev:
            raise ErrFutureRev()
        kept: list[bytes] = []
        index = self._index
        for k in self._keys:
            h = index[k]
            i = bisect_right(h.revs, rev) - 1
            if i >= 0:
                if not h.kvs[i].version:
                    i += 1
                if i:
                    self._size -= sum(len(kv.key) + len(kv.value) + _VERSION_OVERHEAD
                                      for kv in h.kvs[:i])
                    del h.revs[:i]
                    del h.subs[:i]
                    del h.kvs[:i]
            if h.kvs:
                kept.append(k)
            else:
                del index[k]
        self._keys = kept
        self._compact_rev = rev
        return CompactionResponse(self._rev)

    # ------------------------------------------------------------------ leases

    def lease_grant(self, r: LeaseGrantRequest) -> LeaseGrantResponse:
        if r.TTL > MAX_LEASE_TTL:
            raise ErrLeaseTTLTooLarge()
        lease_id = r.ID
        if lease_id in self._leases:
            raise ErrLeaseExists()
        if lease_id == 0:
            while self._next_lease_id in self._leases:
                self._next_lease_id += 1
            lease_id = self._next_lease_id
            self._next_lease_id += 1
        ttl = max(r.TTL, self.min_lease_ttl)
        self._leases[lease_id] = Lease(lease_id, ttl)
        return LeaseGrantResponse(self._rev, lease_id, ttl)

    def lease_revoke(self, r: LeaseRevokeRequest) -> LeaseRevokeResponse:
        """Delete every attached key in one revision, then forget the lease."""
        lease = self._leases.get(r.ID)
        if lease is None:
            raise ErrLeaseNotFound()
        self._begin()
        for key in sorted(lease.keys):
            self._write_delete(key, b"")
        del self._leases[r.ID]
        return LeaseRevokeResponse(self._end())

    def lease_time_to_live(self, r: LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse:
        lease = self._leases.get(r.ID)
        if lease is None:
            return LeaseTimeToLiveResponse(self._rev, r.ID, -1)
        keys = tuple(sorted(lease.keys)) if r.keys else ()
        return LeaseTimeToLiveResponse(self._rev, r.ID, lease.TTL, lease.TTL, keys)

    def lease_leases(self, r: LeaseLeasesRequest | None = None) -> LeaseLeasesResponse:
        return LeaseLeasesResponse(self._rev, tuple(sorted(self._leases)))

    # ----------------------------------------------------------- watch support

    def events_since(self, key: bytes, range_end: bytes, start_rev: int) -> list[Event]:
        """Every retained change in [key, range_end) with revision >= ``start_rev``, in
        (revision, sub-revision) order, i.e. as they were applied. For watch replay."""
        if start_rev < self._compact_rev:
            raise ErrCompacted()
        keys = self._span(key, range_end) if range_end else (
            [key] if key in self._index else [])
        out: list[tuple[int, int, Event]] = []
        for k in keys:
            h = self._index[k]
            j = bisect_left(h.revs, start_rev)
            for i in range(j, len(h.kvs)):
                kv = h.kvs[i]
                prev = h.kvs[i - 1] if i > 0 and h.kvs[i - 1].version else None
                etype = EventType.PUT if kv.version else EventType.DELETE
                out.append((h.revs[i], h.subs[i], Event(etype, kv, prev)))
        out.sort(key=lambda t: (t[0], t[1]))
        return [e for _, _, e in out]

    # ---------------------------------------------------------------- hashing

    def hash_kv(self, revision: int = 0) -> HashKVResponse:
        """CRC-32 (zlib) over every retained version with mod_revision <= ``revision``, in
        key then revision order, seeded with the compact revision. Equal on members that
        applied the same history and compactions (etcd's HashKV idea, not its bytes)."""
        rev = revision or self._rev
        if rev > self._rev:
            raise ErrFutureRev()
        if 0 < rev < self._compact_rev:
            raise ErrCompacted()
        packb = msgpack.packb
        crc = zlib.crc32(packb(self._compact_rev))
        for k in self._keys:
            h = self._index[k]
            for kv, sub in zip(h.kvs, h.subs):
                if kv.mod_revision > rev:
                    break
                crc = zlib.crc32(packb((k, kv.create_revision, kv.mod_revision, sub, kv.version,
                                        kv.value, kv.lease)), crc)
        return HashKVResponse(self._rev, crc, self._compact_rev, rev)

    def hash(self) -> int:
        """CRC-32 (zlib) of :meth:`snapshot`: the whole state, leases included."""
        return zlib.crc32(self.snapshot())

    # ------------------------------------------------------- snapshot/restore

    def snapshot(self) -> bytes:
        """The whole state as msgpack, canonical (one chunk): equal states give equal bytes."""
        return self.snapshot_parts().join()

    def snapshot_parts(self) -> SnapParts:
        """The whole state as parts: ``[format, rev, compact_rev, next_lease, leases,
        chunks]``, each chunk holding versions column-wise (:func:`_pack_columns`); here one
        chunk of everything. Later snapshots add a chunk each (:meth:`plan_delta`)."""
        return SnapParts([self._head(1), self._pack_chunk()], (1, 2), 1)

    def _head(self, chunks: int) -> bytes:
        """A snapshot's bytes before its chunks: format, revisions, leases, chunk count."""
        leases = [[lid, self._leases[lid].TTL] for lid in sorted(self._leases)]
        packb = msgpack.packb
        return (array_header(6) + packb(SNAPSHOT_FORMAT) + packb(self._rev)
                + packb(self._compact_rev) + packb(self._next_lease_id) + packb(leases)
                + array_header(chunks))


    def _pack_chunk(self) -> bytes:
        """Every version of every key as one chunk (see :func:`_pack_columns`)."""
        hs = [self._index[k] for k in self._keys]
        return _pack_columns(self._keys, [len(h.revs) for h in hs],
                             [r for h in hs for r in h.revs], [sub for h in hs for sub in h.subs],
                             [kv for h in hs for kv in h.kvs])

    def plan_delta(self) -> DeltaPlan | None:
        """An incremental snapshot of this instant that this process packs itself, later, in
        slices (:meth:`pack_delta`, :meth:`finish_delta`) while writes go on: no fork. None
        when there is no valid base (then fork and pack with ``snapshot_parts``).

        The history only grows between compactions, so the state at this revision stays
        readable: the keys written since the base, their versions up to this revision. What
        is not history (the leases, the next lease ID) is packed now. Like
        :meth:`snapshot_forked`, this starts recording writes for the next snapshot.
        """
        b = self._base
        if b is None or self._changed is None or b.compact_rev != self._compact_rev:
            return None
        keys = sorted(self._changed)
        plan = DeltaPlan(SnapshotToken(self._epoch, self._rev, self._compact_rev), b, keys,
                         self._head(b.chunks + (1 if keys else 0)))
        self._changed = set()
        self._base = None
        return plan

    def pack_delta(self, plan: DeltaPlan, n: int) -> bool:
        """Collect the versions of the plan's next ``n`` keys; True once all are collected.
        Raises StaleSnapshotError if a compaction or a restore changed the history since."""
        t = plan.token
        if t.epoch != self._epoch or t.compact_rev != self._compact_rev:
            raise StaleSnapshotError(f"the store changed under the snapshot at revision {t.rev}")
        index = self._index
        lo, hi = plan.base.rev, t.rev
        end = min(plan.pos + n, len(plan.keys))
        for k in plan.keys[plan.pos:end]:
            h = index[k]
            i, j = bisect_right(h.revs, lo), bisect_right(h.revs, hi)
            if i < j:
                plan.ks.append(k)
                plan.counts.append(j - i)
                plan.revs += h.revs[i:j]
                plan.subs += h.subs[i:j]
                plan.kvs += h.kvs[i:j]
        plan.pos = end
        return end == len(plan.keys)

    def finish_delta(self, plan: DeltaPlan) -> SnapParts:
        """The snapshot of the plan's instant, as :meth:`snapshot_parts` would have packed it."""
        chunks: list[Chunk] = [*plan.base.parts]
        if plan.keys:
            chunks.append(_pack_columns(plan.ks, plan.counts, plan.revs, plan.subs, plan.kvs))
        return SnapParts([plan.head, *chunks], (1, 1 + len(chunks)),
                         plan.base.chunks + (1 if plan.keys else 0))

    def snapshot_forked(self) -> SnapshotToken:
        """Call in the parent right after forking a child that runs :meth:`snapshot_parts`:
        from here on the keys written are recorded, for the snapshot after that child's,
        which :meth:`snapshot_saved` makes the base of the next (:meth:`plan_delta`)."""
        self._changed = set()
        self._base = None  # valid for the child only: if it fails, the next one packs all
        return SnapshotToken(self._epoch, self._rev, self._compact_rev)

    def snapshot_saved(self, token: SnapshotToken, parts: Sequence[Chunk], chunks: int) -> None:
        """The snapshot taken at ``token`` was saved: ``parts`` (its ``chunks`` chunks, as the
        buffers the member keeps) are the base of the next incremental snapshot."""
        if token.epoch == self._epoch:  # else a restore replaced the history since
            self._base = _SnapBase(token.rev, token.compact_rev, tuple(parts), chunks)

    def restore(self, data: bytes) -> None:
        """Replace the state with a :meth:`snapshot` (format 3, or 2 from older members);
        on any error nothing changes."""
        try:
            obj = msgpack.unpackb(data, raw=False, strict_map_key=True)
            fmt = obj[0]
        except Exception as e:
            raise SnapshotError(f"not an MVCC snapshot: {e}") from e
        if fmt == SNAPSHOT_FORMAT:
            parse = _parse_chunks
        elif fmt == _SNAPSHOT_FORMAT_2:
            parse = _parse_rows
        else:
            raise SnapshotError(f"unknown snapshot format {fmt!r}")
        try:
            rev, compact_rev, next_lease, key_list, index, lease_map = parse(obj)
        except SnapshotError:
            raise
        except Exception as e:
            raise SnapshotError(f"malformed MVCC snapshot: {e}") from e
        self._rev, self._compact_rev = rev, compact_rev
        self._next_lease_id = next_lease
        self._keys, self._index, self._leases = key_list, index, lease_map
        self._size = sum(len(kv.key) + len(kv.value) + _VERSION_OVERHEAD
                         for h in index.values() for kv in h.kvs)
        self._epoch += 1
        self._base, self._changed = None, None


def _pack_columns(keys: list[bytes], counts: list[int], revs: list[int], subs: list[int],
                  kvs: list[KeyValue]) -> bytes:
    """A chunk: ``[keys, counts, revs, subs, creates, versions, values, leases]``, the
    versions of ``keys`` (sorted; ``counts`` of them each) in key-then-revision order, one
    flat list per field. msgpack packs a list of ints or bytes in C, so the Python work is
    one comprehension per field, not a list per version."""
    out: bytes = msgpack.packb(
        [keys, counts, revs, subs, [kv.create_revision for kv in kvs], [kv.version for kv in kvs],
         [kv.value for kv in kvs], [kv.lease for kv in kvs]], use_bin_type=True)
    return out


_Parsed = tuple[int, int, int, list[bytes], dict[bytes, _History], dict[int, Lease]]


def _parse_leases(leases: list[list[int]]) -> dict[int, Lease]:
    return {int(lid): Lease(int(lid), int(ttl)) for lid, ttl in leases}


def _check_history(k: object, h: _History, rev: int, key_list: list[bytes],
                   lease_map: dict[int, Lease]) -> None:
    """Every restored key: bytes, sorted, versions in (revision, sub) order within ``rev``,
    values bytes, its live lease known (and told that it holds the key)."""
    if not isinstance(k, bytes) or not h.revs:
        raise SnapshotError(f"bad key entry {k!r}")
    if key_list and key_list[-1] >= k:
        raise SnapshotError("keys not sorted")
    prev = (0, -1)
    for kv, sub in zip(h.kvs, h.subs):
        m = kv.mod_revision
        if not (type(kv.value) is bytes and type(m) is int and type(sub) is int
                and 0 < m <= rev and prev < (m, sub)):
            raise SnapshotError(f"bad version of key {k!r} at revision {m}")
        prev = (m, sub)
    last = h.kvs[-1]
    if last.version and last.lease:
        if last.lease not in lease_map:
            raise SnapshotError(f"key {k!r} attached to unknown lease {last.lease}")
        lease_map[last.lease].keys.add(k)


def _parse_chunks(obj: list[Any]) -> _Parsed:
    """Format 3: the chunks in order; a key's versions may span chunks, in revision order."""
    _, rev, compact_rev, next_lease, leases, chunks = obj
    rev = int(rev)
    lease_map = _parse_leases(leases)
    index: dict[bytes, _History] = {}
    for chunk in chunks:
        keys, counts, revs, subs, creates, versions, values, vleases = chunk
        n = len(revs)
        if (len(keys) != len(counts) or sum(counts) != n
                or not n == len(subs) == len(creates) == len(versions) == len(values)
                == len(vleases)):
            raise SnapshotError("MVCC snapshot columns disagree in length")
        pos = 0
        for k, c in zip(keys, counts):
            if type(c) is not int or c <= 0:
                raise SnapshotError(f"bad version count {c!r} of key {k!r}")
            end = pos + c
            h = index.get(k)
            if h is None:
                h = index[k] = _History()
            mods = revs[pos:end]
            h.revs += mods
            h.subs += subs[pos:end]
            h.kvs += [KeyValue(k, int(cr), m, int(v), val, int(le)) for cr, m, v, val, le in
                      zip(creates[pos:end], mods, versions[pos:end], values[pos:end],
                          vleases[pos:end])]
            pos = end
    key_list: list[bytes] = []
    for k in sorted(index):
        _check_history(k, index[k], rev, key_list, lease_map)
        key_list.append(k)
    return rev, int(compact_rev), int(next_lease), key_list, index, lease_map


def _parse_rows(obj: list[Any]) -> _Parsed:
    """Format 2: ``keys`` is ``[[key, [[create, mod, sub, version, value, lease], ...]]``."""
    _, rev, compact_rev, next_lease, keys, leases = obj
    rev = int(rev)
    lease_map = _parse_leases(leases)
    index: dict[bytes, _History] = {}
    key_list: list[bytes] = []
    for k, rows in keys:
        h = _History()
        for c, m, sub, v, val, lease in rows:
            h.append(KeyValue(k, int(c), m, int(v), val, int(lease)), sub)
        _check_history(k, h, rev, key_list, lease_map)
        key_list.append(k)
        index[k] = h
    return rev, int(compact_rev), int(next_lease), key_list, index, lease_map
