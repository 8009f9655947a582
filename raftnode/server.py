"""One running member: storage, core, driver, transport, HTTP servers, signals.

This is the imperative shell's top: it builds every part from the parsed flags, starts the
client and peer listeners, and runs until SIGTERM (orderly: a leader hands leadership to
the most caught-up voter first) or a fatal storage error (exit 1, fail-stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from raftnode.api.server import create_app
from raftnode.bootstrap import CLUSTER_INFO_PATH, Booted, BootSpec, BootstrapError, boot
from raftnode.config import Config, host_port
from raftnode.driver import Driver, Hooks
from raftnode.failpoints import FAILPOINTS, Failpoints
from raftnode.failpoints import add_routes as add_failpoint_routes
from raftnode.ids import fmt_id
from raftnode.metrics import Metrics
from raftnode.raft.types import Message, MessageType, Role
from raftnode.service import RaftService
from raftnode.statemachine import encode_publish
from raftnode.transport import Transport
from raftnode.watch import WatchHub
from raftnode.wire import WireError, decode, encode_message, encode_proposals
from wal.backends import open_backend
from wal.errors import WALError
from wal.hooks import HOOKS
from wal.storage import Storage

log = logging.getLogger("raftnode.server")


@dataclass(slots=True)
class Member:
    """Everything of one running member; :func:`serve` builds it and waits on ``stop_event``."""

    cfg: Config
    storage: Storage
    booted: Booted
    driver: Driver
    service: RaftService
    transport: Transport
    metrics: Metrics
    failpoints: Failpoints
    stop_event: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int = 0
    runners: list[web.AppRunner] = field(default_factory=list)
    _lead: int = 0
    _bg: set[asyncio.Task[None]] = field(default_factory=set)
    _role: Role = Role.FOLLOWER

    # -- network in/out -------------------------------------------------------------------

    def send(self, msgs: list[Message]) -> None:
        fp = self.failpoints if self.cfg.enable_failpoints else None
        for m in msgs:
            if m.type == MessageType.SNAP and m.snapshot is not None:
                task = asyncio.get_running_loop().create_task(self._send_snapshot(m))
                self._bg.add(task)
                task.add_done_callback(self._bg.discard)
                continue
            if fp is not None:
                fp.trigger("raftBeforeLeaderSend" if self.driver.role == Role.LEADER
                           else "raftBeforeFollowerSend")
            self.transport.send(m.to, encode_message(m))

    async def _send_snapshot(self, m: Message) -> None:
        assert m.snapshot is not None
        data = m.snapshot.data
        ok = False
        try:
            res = await self.transport.send_snapshot(
                m.to, encode_message(m), [data] if isinstance(data, bytes) else data)
            ok = res.ok
            if not ok:
                log.warning("snapshot at %d to %s refused: %s", m.snapshot.meta.index,
                            fmt_id(m.to), res.reason)
        except Exception as e:
            log.warning("sending snapshot at %d to %s failed: %s", m.snapshot.meta.index,
                        fmt_id(m.to), e)
        self.driver.rn.report_snapshot(m.to, ok)
        self.driver.notify()

    def forward(self, leader: int, datas: list[bytes]) -> None:
        self.transport.send(leader, encode_proposals(datas))

    def on_payloads(self, frm: int, payloads: list[bytes]) -> None:
        for p in payloads:
            try:
                obj = decode(p)
            except WireError as e:
                log.warning("bad payload from %x: %s", frm, e)
                continue
            if isinstance(obj, list):
                self.driver.receive_forwarded(obj)
            else:
                self.driver.step(obj)

    async def on_snapshot(self, frm: int, meta: bytes, data: bytes) -> None:
        obj = decode(meta, data)
        if isinstance(obj, Message):
            if self.cfg.enable_failpoints:
                self.failpoints.trigger("applyBeforeOpenSnapshot")
            self.driver.step(obj)

    # -- lifecycle ------------------------------------------------------------------------

    async def publish(self) -> None:
        """etcd's publish: replicate our name and client URLs so others can list them."""
        me = self.booted.member_id
        while not self.stop_event.is_set():
            info = self.booted.sm.members.get(me)
            if info is not None and info.name == self.cfg.name and \
                    tuple(info.client_urls) == tuple(self.cfg.advertise_client_urls):
                return
            try:
                await self.driver.wait_leader()
                rid = self.driver.next_request_id()
                await self.driver.propose_data(
                    rid, encode_publish(rid, me, self.cfg.name, self.cfg.advertise_client_urls))
                log.info("published member attributes name=%s client_urls=%s", self.cfg.name,
                         ",".join(self.cfg.advertise_client_urls))
                return
            except Exception as e:
                log.debug("publish not done yet: %s", e)
                await asyncio.sleep(0.5)

    async def orderly_stop(self) -> None:
        """SIGTERM: a leader transfers leadership to the most caught-up voter, then stops."""
        d = self.driver
        if d.role == Role.LEADER:
            st = d.rn.status()
            voters = [(pr.match, nid) for nid, pr in st.progress.items()
                      if nid != st.id and not pr.is_learner and nid in st.conf_state.voters]
            if voters:
                _, target = max(voters)
                log.info("leader stepping down: transferring leadership to %s", fmt_id(target))
                try:
                    await asyncio.wait_for(d.transfer(target), timeout=3.0)
                    log.info("leadership transferred to %s", fmt_id(target))
                except Exception as e:
                    log.warning("leadership transfer to %s failed: %r", fmt_id(target), e)
        await d.drain(timeout=2.0)  # let requests in flight here finish on the new leader
        self.stop_event.set()

    def on_soft_state(self, lead: int, role: Role, term: int) -> None:
        m = self.metrics
        prev_lead = self._lead
        if lead != prev_lead and lead != 0:
            m.leader_changes.inc()
            log.info("leader is now %s (term %d)", fmt_id(lead), term)
        if lead == 0 and prev_lead != 0:
            log.warning("lost leader %s (term %d)", fmt_id(prev_lead), term)
        if role == Role.PRE_CANDIDATE and self._role != Role.PRE_CANDIDATE:
            m.pre_votes_started.inc()
        if role == Role.CANDIDATE:
            m.elections_started.inc()
        if role == Role.LEADER and self._role != Role.LEADER:
            self.service.on_became_leader()
        self._lead, self._role = lead, role
        m.has_leader.set(1 if lead else 0)
        m.is_leader.set(1 if role == Role.LEADER else 0)
        m.term.set(term)

    def on_applied(self, entries: list[Any], seconds: float) -> None:
        m = self.metrics
        m.proposals_applied.set(self.driver.applied)
        m.proposals_committed.set(self.driver.rn.raft.log.commit)
        m.backend_commit_duration.observe(seconds)
        if seconds > 0.1:
            m.slow_apply.inc()
        m.current_revision.set(self.booted.sm.store.revision)
        m.db_total_size.set(self.booted.sm.store.approx_size())
        me = self.booted.sm.members.get(self.booted.member_id)
        m.is_learner.set(1 if me is not None and me.is_learner else 0)
        delays = self.driver.heartbeat_delays
        if delays:
            for d in delays:
                m.heartbeat_delay.observe(max(0.0, d))
            delays.clear()

    def sync_peers(self, want: dict[int, tuple[str, ...]]) -> None:
        """Membership changed (conf change or snapshot): make the transport match it."""
        have = self.transport.peers()
        loop = asyncio.get_running_loop()
        for pid, urls in want.items():
            if pid not in have:
                self.transport.add_peer(pid, urls)
            elif tuple(have[pid]) != tuple(urls):
                self.transport.update_peer(pid, urls)
        for pid in set(have) - set(want):
            task = loop.create_task(self.transport.remove_peer(pid))
            self._bg.add(task)
            task.add_done_callback(self._bg.discard)
        if self.booted.member_id in self.booted.sm.removed:
            log.critical("this member has been removed from the cluster; stopping")
            self.stop_event.set()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.service.close()
        with contextlib.suppress(Exception):
            await self.driver.stop()
        with contextlib.suppress(Exception):
            await self.transport.close()
        for r in self.runners:
            with contextlib.suppress(Exception):
                await r.cleanup()
        with contextlib.suppress(Exception):
            self.storage.close()

    def fatal(self, e: BaseException) -> None:
        log.critical("fatal: %s: %s; stopping (fail-stop, no retry)", type(e).__name__, e)
        self.exit_code = 1
        self.stop_event.set()


def cluster_info_handler(member: Member) -> Any:
    async def handler(request: web.Request) -> web.Response:
        sm = member.booted.sm
        return web.json_response({
            "cluster_id": str(member.booted.cluster_id),
            "members": [{"id": str(m.id), "name": m.name, "peer_urls": list(m.peer_urls),
                         "client_urls": list(m.client_urls), "is_learner": m.is_learner}
                        for m in sm.member_list()]})
    return handler


async def serve(cfg: Config) -> int:
    """Build and run a member until it stops; return the process exit code."""
    loop = asyncio.get_running_loop()
    fps = FAILPOINTS
    metrics = Metrics()
    metrics.bind_failpoint_hits(lambda: fps.hits)
    hook = fps.check_io if cfg.enable_failpoints else None
    opts: dict[str, Any] = {}
    if cfg.wal_backend == "file":
        opts = {"max_wals": cfg.max_wals, "max_snapshots": cfg.max_snapshots, "hook": hook}
    storage = open_backend(cfg.wal_backend, cfg.data_dir, unsafe_no_fsync=cfg.unsafe_no_fsync,
                           **opts)
    bind_wal_metrics(metrics)
    tick = cfg.heartbeat_interval_ms / 1000.0
    spec = BootSpec(name=cfg.name, peer_urls=tuple(cfg.initial_advertise_peer_urls),
                    initial_cluster={n: tuple(u) for n, u in cfg.initial_cluster},
                    state=cfg.initial_cluster_state, token=cfg.initial_cluster_token,
                    election_tick=max(2, round(cfg.election_timeout_ms / cfg.heartbeat_interval_ms)),
                    async_storage_writes=cfg.async_storage_writes, tick_seconds=tick)
    broken_before = broken_wal_files(cfg)
    try:
        booted = await loop.run_in_executor(None, boot, spec, storage, random.Random())
    except (BootstrapError, WALError) as e:
        log.critical("cannot start: %s", e)
        with contextlib.suppress(Exception):
            storage.close()
        return 1
    for path in sorted(broken_wal_files(cfg) - broken_before):
        log.warning("repaired a torn WAL tail; the segment as found is kept in %s", path)
    gc.collect()
    gc.freeze()  # the restored state is long-lived: keep full collections off it (see driver)
    me = booted.member_id
    log.info("starting member %s name=%s cluster=%s applied=%d snapshot=%d mode=%s",
             fmt_id(me), cfg.name, fmt_id(booted.cluster_id), booted.applied,
             booted.snapshot_index, mode_name(cfg))
    member: Member | None = None

    def peers_now() -> dict[int, tuple[str, ...]]:
        return {m.id: m.peer_urls for m in booted.sm.member_list() if m.id != me}

    def on_payloads(frm: int, payloads: list[bytes]) -> None:
        if member is not None:
            member.on_payloads(frm, payloads)

    async def on_snapshot(frm: int, meta: bytes, chunks: AsyncIterator[bytes]) -> None:
        data = b"".join([c async for c in chunks])
        if member is not None:
            await member.on_snapshot(frm, meta, data)

    transport = Transport(booted.cluster_id, me, {**booted.peers, **peers_now()}, on_payloads,
                          on_snapshot,
                          metrics=metrics, failpoints=fps,
                          on_unreachable=lambda pid: booted.rn.report_unreachable(pid))
    hooks = Hooks(send=lambda msgs: None, forward=lambda to, d: None, on_fatal=lambda e: None,
                  failpoint=fps.trigger if cfg.enable_failpoints else _no_failpoint)
    driver = Driver(booted.rn, storage, booted.sm, hooks, me,
                    async_writes=cfg.async_storage_writes, snapshot_count=cfg.snapshot_count,
                    catchup_entries=cfg.snapshot_catchup_entries, tick_seconds=tick,
                    request_timeout=5.0 + 2 * cfg.election_timeout_ms / 1000.0,
                    applied=booted.applied, snapshot_index=booted.snapshot_index,
                    conf_state=booted.conf_state)
    service = RaftService(driver, booted.sm, cluster_id=booted.cluster_id, member_id=me,
                          token=cfg.initial_cluster_token,
                          election_seconds=cfg.election_timeout_ms / 1000.0)
    member = Member(cfg, storage, booted, driver, service, transport, metrics, fps)
    hooks.send = member.send
    hooks.forward = member.forward
    hooks.on_fatal = member.fatal
    hooks.on_soft_state = member.on_soft_state
    hooks.on_conf_change = lambda: member.sync_peers(peers_now())
    hooks.on_applied = member.on_applied

    hub = WatchHub(booted.sm.store)  # fed from this member's applied state
    hooks.on_restore = hub.on_restore
    client_app = create_app(service, max_request_bytes=cfg.max_request_bytes, watch_hub=hub)
    metrics.add_routes(client_app)
    if cfg.enable_failpoints:
        add_failpoint_routes(client_app, fps)
    peer_app = web.Application(client_max_size=64 << 20)
    transport.add_routes(peer_app)
    peer_app.router.add_get(CLUSTER_INFO_PATH, cluster_info_handler(member))
    try:
        for app, urls in ((peer_app, cfg.listen_peer_urls), (client_app, cfg.listen_client_urls)):
            runner = web.AppRunner(app, access_log=None, handle_signals=False)
            await runner.setup()
            member.runners.append(runner)
            for url in urls:
                host, port = host_port(url)
                await web.TCPSite(runner, host, port, reuse_address=True).start()
    except OSError as e:
        log.critical("cannot listen: %s", e)
        await member.close()
        return 1
    await transport.start()
    driver.start()
    service.start()
    publish = loop.create_task(member.publish())
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: loop.create_task(member.orderly_stop()))
    log.info("serving clients on %s, peers on %s", ",".join(cfg.listen_client_urls),
             ",".join(cfg.listen_peer_urls))
    await member.stop_event.wait()
    publish.cancel()
    await member.close()
    log.info("stopped (exit code %d)", member.exit_code)
    return member.exit_code


def bind_wal_metrics(metrics: Metrics) -> None:
    """Feed the WAL's fsync/write observers into etcd's disk metrics."""
    HOOKS.on_fsync = metrics.wal_fsync_duration.observe

    def on_write(seconds: float, nbytes: int) -> None:
        metrics.wal_write_bytes.inc(nbytes)

    HOOKS.on_write = on_write


def broken_wal_files(cfg: Config) -> set[str]:
    """The file backend's ``.broken`` copies (kept by a torn-tail repair during load)."""
    if cfg.wal_backend != "file":
        return set()
    return {str(p) for p in (Path(cfg.data_dir) / "member" / "wal").glob("*.broken")}


def _no_failpoint(name: str) -> None:
    return None


def mode_name(cfg: Config) -> str:
    if cfg.unsafe_no_fsync:
        return "unsafe-no-fsync"
    return "async-storage-writes" if cfg.async_storage_writes else "default"
