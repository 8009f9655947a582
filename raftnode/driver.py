"""The imperative shell around the pure core: ticks, Ready loop, persistence, apply.

One asyncio task owns the RawNode. Disk work runs on one dedicated thread (FIFO, so
persistence order is log order). The three persistence modes differ only here:

* default (etcd 3.x): each Ready is persisted before the next is taken. A slow fsync stalls
  the loop; the leader's next heartbeats wait in the core; followers time out — the storm.
* ``--async-storage-writes``: a Ready's free messages go at once, its persistence is queued,
  and the loop takes the next Ready; acks and vote grants (``persist_messages``) leave only
  when their fsync has completed (``on_persisted``).
* ``--unsafe-no-fsync``: the storage skips fsync; the loop is the default one.

A storage failure is fatal (fail-stop): ``on_fatal`` is called and nothing more is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import msgpack

from raftnode.cowsnapshot import ForkedSerialization, SnapshotChildError, fork_serialize
from raftnode.deltasnapshot import DeltaSerialization
from raftnode.mvcc.errors import EtcdError, GrpcCode
from raftnode.mvcc.messages import Request, Response
from raftnode.mvcc.store import SnapshotToken, StaleSnapshotError
from raftnode.raft.errors import (
    InvariantViolation,
    ProposalDroppedError,
    RaftError,
    ReadIndexNotReadyError,
    TransferInProgressError,
)
from raftnode.raft.rawnode import RawNode
from raftnode.raft.types import (
    NONE,
    ConfChange,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    snapshot_bytes,
)
from raftnode.snapparts import SnapParts
from raftnode.statemachine import (
    StateMachine,
    as_resubmission,
    decode_cc_context,
    encode_kv,
)
from wal import Entry as WalEntry
from wal import HardState as WalHardState
from wal import SnapshotRecord as WalSnapshotRecord
from wal.errors import SliceOutOfRangeError, StorageFailedError
from wal.snap import Snapshot as WalSnapshot
from wal.storage import SnapshotDataWriter, Storage

log = logging.getLogger("raftnode.driver")

ErrTimeout = type("ErrTimeout", (EtcdError,), {"message": "etcdserver: request timed out",
                                                "code": GrpcCode.UNAVAILABLE})
ErrNoLeader = type("ErrNoLeader", (EtcdError,), {"message": "etcdserver: no leader",
                                                  "code": GrpcCode.UNAVAILABLE})
ErrStopped = type("ErrStopped", (EtcdError,), {"message": "etcdserver: server stopped",
                                                "code": GrpcCode.UNAVAILABLE})
ErrLeaderChanged = type("ErrLeaderChanged", (EtcdError,), {
    "message": "etcdserver: leader changed", "code": GrpcCode.UNAVAILABLE})


def pack_snapshot_data(conf: ConfState, sm_data: bytes) -> bytes:
    """Snapshot file payload: the conf state travels with the state machine (as in etcd)."""
    return pack_snapshot_parts(conf, SnapParts([sm_data])).join()


def pack_snapshot_parts(conf: ConfState, sm_parts: SnapParts) -> SnapParts:
    """:func:`pack_snapshot_data` of the state machine's parts, as parts."""
    packb = msgpack.packb
    return sm_parts.as_bin(b"\x93" + packb(list(conf.voters)) + packb(list(conf.learners)))


def unpack_snapshot_data(data: bytes) -> tuple[ConfState, bytes]:
    voters, learners, sm_data = msgpack.unpackb(data)
    return ConfState(tuple(voters), tuple(learners)), sm_data


def to_wal(entries: list[Entry]) -> list[WalEntry]:
    return [WalEntry(e.index, e.term, e.data, int(e.type)) for e in entries]


def from_wal(entries: list[WalEntry]) -> list[Entry]:
    conf = EntryType.CONF_CHANGE
    norm = EntryType.NORMAL
    return [Entry(e.index, e.term, conf if e.type == 1 else norm, e.data) for e in entries]


@dataclass(slots=True)
class Hooks:
    """What the shell around the driver wants to hear about (metrics, transport, logs)."""

    send: Callable[[list[Message]], None]
    forward: Callable[[int, list[bytes]], None]  # (leader id, proposals)
    on_fatal: Callable[[BaseException], None]
    on_soft_state: Callable[[int, Role, int], None] = lambda lead, role, term: None
    on_conf_change: Callable[[], None] = lambda: None
    on_restore: Callable[[], None] = lambda: None  # the state machine was replaced by a snapshot
    on_applied: Callable[[list[Entry], float], None] = lambda ents, seconds: None
    failpoint: Callable[[str], None] = lambda name: None


@dataclass(slots=True)
class _Waiter:
    future: asyncio.Future[Any]
    deadline: float
    data: bytes = b""  # the proposal, kept to re-submit it to a new leader (not conf changes)
    since: int = 0  # applied index when first proposed (see statemachine.as_resubmission)


@dataclass(slots=True)
class Driver:
    rn: RawNode
    storage: Storage
    sm: StateMachine
    hooks: Hooks
    member_id: int
    async_writes: bool = False
    snapshot_count: int = 10_000
    catchup_entries: int = 5_000
    tick_seconds: float = 0.1
    request_timeout: float = 7.0
    applied: int = 0
    snapshot_index: int = 0
    conf_state: ConfState = field(default_factory=ConfState)
    lead: int = NONE
    role: Role = Role.FOLLOWER
    term: int = 0
    # internals
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _disk: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(1, thread_name_prefix="raftnode-disk"))
    _pending: list[bytes] = field(default_factory=list)
    _waiters: dict[int, _Waiter] = field(default_factory=dict)
    _next_rid: int = 0
    _reads_next: list[asyncio.Future[int]] = field(default_factory=list)
    _reads_inflight: dict[bytes, list[asyncio.Future[int]]] = field(default_factory=dict)
    _read_seq: int = 0
    _apply_waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    _leader_waiters: list[asyncio.Future[None]] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stopped: bool = False
    _fatal: BaseException | None = None
    heartbeat_delays: list[float] = field(default_factory=list)
    # default mode: set while the loop waits for a persist; ticks are then held back
    _stalled_since: float | None = None
    _tick_owed: bool = False
    _epoch: tuple[int, int] = (NONE, 0)  # (leader, term) the pending proposals went to
    _snap_job: ForkedSerialization | DeltaSerialization | None = None  # a snapshot being packed
    _snap_task: asyncio.Task[None] | None = None
    _snap_done: Snapshot | None = None  # saved; the ready loop compacts the log below it
    _snap_not_before: int = 0  # applied index before which no new snapshot is tried
    _disk_snapshot_index: int = 0  # newest snapshot saved (the disk thread's view)
    # async writes: Readies handed to the disk thread, persisted in batches (_persist_queued)
    _persist_queue: deque[Ready] = field(default_factory=deque)
    _persist_failed: bool = False  # (the disk thread's): later calls must not report success

    def __post_init__(self) -> None:
        # request IDs unique across restarts: member bits + start time, then a counter
        self._next_rid = ((self.member_id & 0xFFFF) << 47) | ((time.time_ns() >> 20) << 8)
        self._next_rid &= (1 << 63) - 1
        self._read_seq = time.time_ns()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._ready_loop(), name="raft-ready"),
                       loop.create_task(self._tick_loop(), name="raft-tick"),
                       loop.create_task(self._timeout_loop(), name="raft-timeouts")]

    async def stop(self) -> None:
        self._stopped = True
        tasks = [*self._tasks, *([self._snap_task] if self._snap_task else [])]
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._fail_all(ErrStopped())
        await asyncio.get_running_loop().run_in_executor(None, self._disk.shutdown, True)

    def notify(self) -> None:
        self._wake.set()

    # -- inputs from the network ------------------------------------------------------------

    def step(self, m: Message) -> None:
        if self._stopped:
            return
        try:
            self.rn.step(m)
        except InvariantViolation as e:
            # etcd panics here ("tocommit out of range", "conflict with committed entry"):
            # this member's log lost what it had acknowledged or applied; going on would
            # serve a state the cluster does not have. Fail-stop; the operator replaces it.
            self._die(e)
            return
        except RaftError as e:
            log.warning("dropped message from %x: %s", m.frm, e)
        self._wake.set()

    def receive_forwarded(self, datas: list[bytes]) -> None:
        """Proposals a follower forwarded: append them if we lead, else drop (they time out)."""
        if self.role == Role.LEADER:
            self._pending.extend(datas)
            self._wake.set()

    # -- client-facing ----------------------------------------------------------------------

    def next_request_id(self) -> int:
        self._next_rid = (self._next_rid + 1) & ((1 << 63) - 1)
        return self._next_rid

    async def propose(self, req: Request) -> Response:
        """Replicate a write and return its result once applied here."""
        rid = self.next_request_id()
        return await self.propose_data(rid, encode_kv(rid, req))  # type: ignore[no-any-return]

    async def propose_data(self, rid: int, data: bytes) -> Any:
        if self._fatal is not None or self._stopped:
            raise ErrStopped()
        if self.lead == NONE:
            await self.wait_leader()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = _Waiter(fut, time.monotonic() + self.request_timeout, data,
                                     self.applied)
        if self.role == Role.LEADER:
            self._pending.append(data)
            self._wake.set()
        else:
            self.hooks.forward(self.lead, [data])
        result = await fut
        if isinstance(result, EtcdError):
            raise result
        return result

    async def propose_conf_change(self, cc: ConfChange, rid: int) -> None:
        """Replicate a membership change (leader only); resolves when applied here."""
        if self.role != Role.LEADER:
            raise ErrNoLeader("etcdserver: not leader (member changes go to the leader)")
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters[rid] = _Waiter(fut, time.monotonic() + self.request_timeout)
        try:
            self.rn.propose_conf_change(cc)
        except ProposalDroppedError as e:
            self._waiters.pop(rid, None)
            raise EtcdError(f"etcdserver: {e}", GrpcCode.FAILED_PRECONDITION) from e
        self._wake.set()
        await fut

    async def transfer(self, target: int) -> None:
        """Leadership transfer (MsgTimeoutNow); resolves once ``target`` leads."""
        try:
            self.rn.transfer_leadership(target)
        except RaftError as e:
            raise EtcdError(f"etcdserver: {e}", GrpcCode.FAILED_PRECONDITION) from e
        self._wake.set()
        deadline = time.monotonic() + self.request_timeout
        while self.lead != target:
            if time.monotonic() > deadline:
                raise ErrTimeout("etcdserver: request timed out, leader transfer took too long")
            await asyncio.sleep(self.tick_seconds / 2)

    async def drain(self, timeout: float) -> None:
        """Wait (bounded) until no client request here is still waiting for its apply."""
        deadline = time.monotonic() + timeout
        while self._waiters and time.monotonic() < deadline:
            await asyncio.sleep(self.tick_seconds / 2)

    async def wait_leader(self, timeout: float | None = None) -> None:
        if self.lead != NONE:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._leader_waiters.append(fut)
        try:
            await asyncio.wait_for(fut, timeout or self.request_timeout)
        except TimeoutError:
            raise ErrNoLeader() from None

    async def read_barrier(self) -> None:
        """Linearizable read: ReadIndex, then wait until applied reaches that index."""
        if self._fatal is not None or self._stopped:
            raise ErrStopped()
        if self.lead == NONE:
            await self.wait_leader()
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._reads_next.append(fut)
        self._wake.set()
        try:
            index = await asyncio.wait_for(fut, self.request_timeout)
        except TimeoutError:
            raise ErrTimeout() from None
        await self.wait_applied(index)

    async def wait_applied(self, index: int) -> None:
        if self.applied >= index:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._apply_waiters.append((index, fut))
        try:
            await asyncio.wait_for(fut, self.request_timeout)
        except TimeoutError:
            raise ErrTimeout() from None

    # -- the loops --------------------------------------------------------------------------

    async def _tick_loop(self) -> None:
        period = self.tick_seconds
        next_at = time.monotonic() + period
        while True:
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            now = time.monotonic()
            late = now - next_at
            if self.role == Role.LEADER:
                self.heartbeat_delays.append(late)
            next_at += period
            if next_at < now:  # the loop was starved: skip the missed ticks, as Go's ticker
                next_at = now + period
            if self._stalled_since is not None:
                # etcd's raftNode ticks and persists in one goroutine, so its clock stands
                # still while Save blocks, and Go's ticker keeps one tick for afterwards.
                # Without this, a member stalled in its own fsync would time out elections
                # it cannot even take part in (votes cannot leave until the fsync is done).
                self._tick_owed = True
                continue
            self.rn.tick()
            self._wake.set()

    async def _timeout_loop(self) -> None:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            expired = [rid for rid, w in self._waiters.items() if w.deadline <= now]
            for rid in expired:
                w = self._waiters.pop(rid)
                if not w.future.done():
                    w.future.set_exception(ErrTimeout())

    async def _ready_loop(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                if self._snap_done is not None:
                    snap, self._snap_done = self._snap_done, None
                    await self._compact(loop, snap)
                self._flush_inputs()
                while self.rn.has_ready():
                    rd = self.rn.ready()
                    await self._handle(loop, rd)
                    self._flush_inputs()
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # an invariant or storage failure: fail-stop
            self._die(e)

    def _flush_inputs(self) -> None:
        if self._pending:
            datas, self._pending = self._pending, []
            if self.role == Role.LEADER:
                try:
                    self.rn.propose_many(datas)
                except TransferInProgressError:
                    # held, not failed: they go to the new leader once the transfer is
                    # done (never appended here, so they cannot apply twice)
                    self._pending = datas + self._pending
                except ProposalDroppedError as e:
                    self._fail_datas(datas, e)
            elif self.lead != NONE:
                self.hooks.forward(self.lead, datas)
        if self._reads_next:
            # the leader tells reads apart by context alone: unique across members and
            # restarts, or one member's read answers another's (and a restarted member
            # could be handed an index older than its request)
            self._read_seq = (self._read_seq + 1) & ((1 << 64) - 1)
            ctx = self.member_id.to_bytes(8, "big") + self._read_seq.to_bytes(8, "big")
            batch, self._reads_next = self._reads_next, []
            try:
                self.rn.read_index(ctx)
            except ReadIndexNotReadyError:
                # a new leader has not committed in its term yet: retry on the next turn
                self._reads_next = batch + self._reads_next
                return
            except RaftError as e:
                for f in batch:
                    if not f.done():
                        f.set_exception(ErrNoLeader(f"etcdserver: {e}"))
                return
            self._reads_inflight[ctx] = batch

    def _fail_datas(self, datas: list[bytes], e: Exception) -> None:
        err = ErrLeaderChanged() if not isinstance(e, EtcdError) else e
        for d in datas:
            with contextlib.suppress(Exception):
                rid = msgpack.unpackb(d)[1]
                w = self._waiters.pop(rid, None)
                if w is not None and not w.future.done():
                    w.future.set_exception(err)

    async def _handle(self, loop: asyncio.AbstractEventLoop, rd: Ready) -> None:
        if rd.hard_state is not None:  # first: the soft-state hooks report this term
            self.term = rd.hard_state.term
        if rd.soft_state is not None:
            self._on_soft(rd.soft_state.leader, rd.soft_state.role)
        if self.lead != NONE and (self.lead, self.term) != self._epoch:
            self._on_new_epoch()
        if self.async_writes:
            self.hooks.send(rd.messages)
            if rd.must_persist:
                self._persist_queue.append(rd)
                fut = loop.run_in_executor(self._disk, self._persist_queued)
                fut.add_done_callback(functools.partial(self._persisted, rd))
            elif rd.persist_messages:
                self.hooks.send(rd.persist_messages)
        else:
            self.hooks.send(rd.messages)  # leader's appends go before its own fsync (§10.2.1)
            if rd.must_persist:
                self._stalled_since = time.monotonic()
                try:
                    await loop.run_in_executor(self._disk, self._save_readies, [rd])
                finally:
                    self._end_stall()
            self.hooks.send(rd.persist_messages)
        if rd.snapshot is not None:
            self._apply_snapshot(rd.snapshot)
        if rd.committed_entries:
            self._apply(rd.committed_entries)
        for rs in rd.read_states:
            batch = self._reads_inflight.pop(rs.request_ctx, None)
            for f in batch or ():
                if not f.done():
                    f.set_result(rs.index)
        self.rn.advance(rd)
        if (self.applied - self.snapshot_index >= self.snapshot_count
                and self._snap_job is None and self.applied >= self._snap_not_before):
            self._start_snapshot(loop)

    def _end_stall(self) -> None:
        """Deliver the one tick Go's ticker would have kept during the stall."""
        since, self._stalled_since = self._stalled_since, None
        if self._tick_owed and not self._stopped:
            self._tick_owed = False
            now = time.monotonic()
            if self.role == Role.LEADER and since is not None:
                self.heartbeat_delays.append(now - since)  # heartbeats held back this long
            self.rn.tick()
            self._wake.set()

    def _persisted(self, rd: Ready, f: asyncio.Future[None]) -> None:
        if f.exception() is not None:
            self._die(f.exception())  # type: ignore[arg-type]
            return
        if self._fatal is not None:  # fail-stop: nothing more is acknowledged
            return
        self.rn.on_persisted(rd.persist_index, rd.persist_term)
        self.hooks.send(rd.persist_messages)
        self._wake.set()

    def _persist_queued(self) -> None:
        """On the disk thread (async writes): persist every Ready queued so far in one save,
        one fsync. The loop queues a Ready and submits one call per Ready; the first call
        takes all those waiting (the disk thread is FIFO, so a Ready is durable when its
        own call returns) and later ones find less or nothing to do. Without this, each
        Ready cost an fsync of its own: the loop does not wait, so it makes many small
        Readies while one fsync runs, where the default mode batches them by waiting."""
        if self._persist_failed:  # its Ready may have gone down with an earlier batch
            raise StorageFailedError("an earlier save failed: nothing is durable after it")
        batch: list[Ready] = []
        q = self._persist_queue
        while q:  # (deque.popleft is atomic against the loop's append)
            batch.append(q.popleft())
        if batch:
            try:
                self._save_readies(batch)
            except BaseException:
                self._persist_failed = True
                raise

    def _save_readies(self, batch: list[Ready]) -> None:
        """On the disk thread: each Ready's snapshot first, then its hard state and entries
        (etcd's order), those of consecutive Readies merged into as few saves as the
        snapshots allow: a later Ready's entries replace those of earlier
        ones from their first index on (raft's conflict truncation); the newest hard state
        stands for all."""
        fp = self.hooks.failpoint
        entries: list[Entry] = []
        hs: HardState | None = None
        for rd in batch:
            if rd.snapshot is not None:
                if entries or hs is not None:
                    self._save(hs, entries)
                    entries, hs = [], None
                fp("raftBeforeSaveSnap")
                s = rd.snapshot
                self.storage.save_snapshot(WalSnapshot(s.meta.index, s.meta.term,
                                                       snapshot_bytes(s.data)))
                self._disk_snapshot_index = max(self._disk_snapshot_index, s.meta.index)
                fp("raftAfterSaveSnap")
            if rd.entries:
                first = rd.entries[0].index
                if entries and first <= entries[-1].index:
                    del entries[max(0, first - entries[0].index):]
                if entries and entries[-1].index + 1 != first:  # a gap: save what is held
                    self._save(hs, entries)
                    entries, hs = [], None
                entries.extend(rd.entries)
            if rd.hard_state is not None:
                hs = rd.hard_state
        if entries or hs is not None:
            self._save(hs, entries)

    def _save(self, hs: HardState | None, entries: list[Entry]) -> None:
        fp = self.hooks.failpoint
        fp("raftBeforeSave")
        self.storage.save(None if hs is None else WalHardState(hs.term, hs.vote, hs.commit),
                          to_wal(entries))
        fp("raftAfterSave")

    # -- apply ------------------------------------------------------------------------------

    def _apply_snapshot(self, snap: Snapshot) -> None:
        self.hooks.failpoint("raftBeforeApplySnap")
        _, sm_data = unpack_snapshot_data(snapshot_bytes(snap.data))
        self.sm.restore(sm_data)
        self.applied = snap.meta.index
        self.snapshot_index = snap.meta.index
        self.conf_state = snap.meta.conf_state
        self.hooks.on_restore()
        self.hooks.on_conf_change()
        self.hooks.failpoint("raftAfterApplySnap")
        self._release_apply_waiters()

    def _apply(self, entries: list[Entry]) -> None:
        t0 = time.perf_counter()
        sm = self.sm
        waiters = self._waiters
        conf_changed = False
        for e in entries:
            if e.index <= self.applied:
                continue
            if e.type == EntryType.CONF_CHANGE:
                cc = ConfChange.decode(e.data)
                self.conf_state = self.rn.apply_conf_change(cc)
                sm.apply_conf_change(cc)
                rid = decode_cc_context(cc.context)[2]
                conf_changed = True
                w = waiters.pop(rid, None) if rid else None
                if w is not None and not w.future.done():
                    w.future.set_result(None)
                if cc.node_id == self.member_id and cc.type.name == "REMOVE_NODE":
                    log.warning("this member was removed from the cluster")
            else:
                rid, result = sm.apply_normal(e.data, e.index)
                if rid:
                    w = waiters.pop(rid, None)
                    if w is not None and not w.future.done():
                        w.future.set_result(result)
            self.applied = e.index
        if conf_changed:
            self.hooks.on_conf_change()
        self.hooks.on_applied(entries, time.perf_counter() - t0)
        self._release_apply_waiters()

    def _release_apply_waiters(self) -> None:
        if not self._apply_waiters:
            return
        keep = []
        for index, fut in self._apply_waiters:
            if index <= self.applied:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((index, fut))
        self._apply_waiters = keep

    def _start_snapshot(self, loop: asyncio.AbstractEventLoop) -> None:
        """etcd's triggerSnapshot, off the loop: capture the state at ``applied`` and pack it
        while this loop goes on, the whole store in a forked child, or only what was written
        since the last snapshot here, in slices; :meth:`_save_snapshot` takes it from there."""
        index = self.applied
        term = self.rn.term_at(index)
        if term is None:
            return
        conf, sm = self.conf_state, self.sm
        # the file backend's data file is written by a thread of its own (below): 20+ MB and
        # an fsync would otherwise sit on the disk thread, ahead of the next persist
        write = self.storage.snapshot_data_writer()

        plan = sm.store.plan_delta()
        job: ForkedSerialization | DeltaSerialization
        if plan is not None:  # the versions since the last snapshot, packed here, no fork
            tail = sm.snapshot_tail()
            job = DeltaSerialization(plan, sm.store,
                                     lambda sp: pack_snapshot_parts(conf, sm.wrap(sp, tail)))
            token = plan.token
        else:  # the whole store: in a forked child, a frozen image of this instant

            def pack() -> SnapParts:
                return pack_snapshot_parts(conf, sm.snapshot_parts())

            job = fork_serialize(pack)
            token = sm.store.snapshot_forked()
        self._snap_job = job
        self._snap_task = loop.create_task(
            self._save_snapshot(loop, job, index, term, conf, token, write),
            name=f"raft-snapshot-{index}")

    async def _save_snapshot(self, loop: asyncio.AbstractEventLoop,
                             job: ForkedSerialization | DeltaSerialization,
                             index: int, term: int, conf: ConfState, token: SnapshotToken,
                             write: SnapshotDataWriter | None) -> None:
        try:
            t0 = time.monotonic()
            try:
                parts = await job.result()
            except SnapshotChildError as e:  # not fatal: the log is intact; try again later
                log.error("snapshot at index %d failed: %s", index, e)
                self._snap_not_before = self.applied + self.snapshot_count
                return
            except StaleSnapshotError as e:  # a compaction or restore: the next one packs all
                log.info("snapshot at index %d abandoned: %s", index, e)
                return
            if index <= self.snapshot_index:  # the leader's newer snapshot was installed
                return
            # never joined: the store's chunks are shared with the next snapshot, which the
            # file writer turns into references to the files already holding them
            data = tuple(parts.parts)
            if write is not None:  # (GIL released while it writes and syncs)
                await loop.run_in_executor(None, write, WalSnapshotRecord(index, term), data)
                wal_snap = WalSnapshot(index, term, b"")  # the record only: the file is written
            else:  # the data lives in the log store (memory, sqlite): one bytes object
                wal_snap = WalSnapshot(index, term,
                                       await loop.run_in_executor(None, snapshot_bytes, data))
            # queued behind every persist already handed to the disk thread, so the WAL's
            # hard state covers ``index`` (committed and applied here) when the record lands
            saved = await loop.run_in_executor(self._disk, self._save_own_snapshot,
                                               wal_snap, write is not None)
            if not saved or index <= self.snapshot_index:
                log.info("snapshot at index %d dropped: the leader's newer one came first", index)
                return
            self.snapshot_index = index
            i, j = parts.region
            self.sm.store.snapshot_saved(token, data[i:j], parts.chunks)
            # what is alive now is mostly the store, long-lived and acyclic: take it out of
            # the collector's full passes, which otherwise scan it all and pause the loop
            # for hundreds of ms as it grows (docs/bench.md); gc.freeze is O(1)
            gc.freeze()
            # the core's log is compacted between Readies, by the ready loop
            self._snap_done = Snapshot(SnapshotMeta(index, term, conf), data)
            self._wake.set()
            log.info("snapshot at index %d (term %d, %d bytes) saved in %.0f ms beside the loop",
                     index, term, parts.size(), (time.monotonic() - t0) * 1000)
        except asyncio.CancelledError:
            job.cancel()
            raise
        except BaseException as e:  # the storage failed: fail-stop
            self._die(e)
        finally:
            if self._snap_job is job:
                self._snap_job = None

    def _save_own_snapshot(self, snap: WalSnapshot, data_written: bool) -> bool:
        """On the disk thread, so in order with the persists of snapshots received from the
        leader: a snapshot of ours that one of those overtook while ours was being packed
        or written is dropped (the storage refuses an older snapshot, and that is fatal)."""
        if snap.index <= self._disk_snapshot_index:
            return False
        self.storage.save_snapshot(snap, data_written=data_written)
        self._disk_snapshot_index = snap.index
        return True

    async def _compact(self, loop: asyncio.AbstractEventLoop, snap: Snapshot) -> None:
        """Let the log go up to the catch-up margin below a saved snapshot."""
        index = snap.meta.index
        compact_to = max(0, index - self.catchup_entries)
        self.rn.compact(compact_to, snap)  # keeps catch-up entries; snap serves the rest
        try:
            await loop.run_in_executor(self._disk, self.storage.compact, compact_to)
        except SliceOutOfRangeError as e:  # commit not durable yet: release next time
            log.debug("log release deferred: %s", e)
        log.info("log compacted to %d below the snapshot at %d", compact_to, index)

    # -- state changes ----------------------------------------------------------------------

    def _on_soft(self, lead: int, role: Role) -> None:
        self.lead, self.role = lead, role
        self.hooks.on_soft_state(lead, role, self.term)
        if lead != NONE:
            for lw in self._leader_waiters:
                if not lw.done():
                    lw.set_result(None)
            self._leader_waiters.clear()

    def _on_new_epoch(self) -> None:
        """A new (leader, term): what was in flight to the old leader may be lost. Send it
        again to the new one: reads are idempotent; writes are re-submitted marked as such,
        and the state machine applies each request ID at most once."""
        self._epoch = (self.lead, self.term)
        if self._reads_inflight:
            for batch in self._reads_inflight.values():
                self._reads_next.extend(f for f in batch if not f.done())
            self._reads_inflight.clear()
        again = [as_resubmission(w.data, w.since) for w in self._waiters.values()
                 if w.data and not w.future.done()]
        if not again:
            return
        log.info("re-submitting %d pending proposals to the new leader %x (term %d)",
                 len(again), self.lead, self.term)
        if self.role == Role.LEADER:
            self._pending.extend(again)
        else:
            self.hooks.forward(self.lead, again)

    def _fail_all(self, err: Exception) -> None:
        for w in self._waiters.values():
            if not w.future.done():
                w.future.set_exception(err)
        self._waiters.clear()
        for batch in self._reads_inflight.values():
            for f in batch:
                if not f.done():
                    f.set_exception(err)
        self._reads_inflight.clear()
        pending: list[asyncio.Future[Any]] = [*self._reads_next, *self._leader_waiters]
        for pf in pending:
            if not pf.done():
                pf.set_exception(err)
        self._reads_next.clear()
        self._leader_waiters.clear()
        for _, f2 in self._apply_waiters:
            if not f2.done():
                f2.set_exception(err)
        self._apply_waiters.clear()

    def _die(self, e: BaseException) -> None:
        if self._fatal is not None:
            return
        self._fatal = e
        self._stopped = True
        self._fail_all(ErrStopped())
        self.hooks.on_fatal(e)
