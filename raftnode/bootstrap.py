"""From a data dir and etcd's ``--initial-*`` flags to a ready-to-run member.

Three cases, as in etcd's ``bootstrap.go``:

* the data dir holds a member: load it; the ``--initial-*`` flags are ignored;
* ``--initial-cluster-state new``: write the initial membership as conf-change entries at
  term 1 (every member writes the same ones, like etcd-io/raft's ``StartNode``), committed;
* ``--initial-cluster-state existing``: ask a running member for the cluster ID and find our
  own ID by our peer URLs in its member list (the member was added by ``member add``).
"""

from __future__ import annotations

import json
import logging
import math
import random
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import msgpack

from raftnode.driver import from_wal, unpack_snapshot_data
from raftnode.ids import cluster_id, member_id
from raftnode.mvcc.store import MVCCStore
from raftnode.raft.config import Config as RaftConfig
from raftnode.raft.rawnode import RawNode
from raftnode.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Snapshot,
    SnapshotMeta,
)
from raftnode.statemachine import StateMachine, encode_cc_context
from wal import Entry as WalEntry
from wal import HardState as WalHardState
from wal.storage import Storage

log = logging.getLogger("raftnode.bootstrap")

METADATA_FORMAT = 1
CLUSTER_INFO_PATH = "/raftnode/cluster"  # on the peer port: cluster ID and members


class BootstrapError(RuntimeError):
    """The member cannot start from this data dir with these flags; the message says why."""


@dataclass(slots=True, frozen=True)
class BootSpec:
    name: str
    peer_urls: tuple[str, ...]
    initial_cluster: Mapping[str, tuple[str, ...]]  # name -> peer URLs
    state: str  # "new" | "existing"
    token: str
    election_tick: int
    heartbeat_tick: int = 1
    async_storage_writes: bool = False
    max_size_per_msg: int = 1024 * 1024
    max_inflight_msgs: int = 256
    tick_seconds: float = 0.1


@dataclass(slots=True)
class Booted:
    member_id: int
    cluster_id: int
    rn: RawNode
    sm: StateMachine
    applied: int
    snapshot_index: int
    conf_state: ConfState
    fresh: bool
    # peers known before the log says so: the initial cluster, or a joined cluster's members
    peers: dict[int, tuple[str, ...]] = field(default_factory=dict)


def encode_metadata(mid: int, cid: int, name: str, state: str) -> bytes:
    """The WAL metadata naming the member and its cluster (also written by `restore`)."""
    return msgpack.packb([METADATA_FORMAT, mid, cid, name, state])


def _parse_metadata(data: bytes) -> tuple[int, int, str, str]:
    try:
        fmt, mid, cid, name, state = msgpack.unpackb(data)
    except (ValueError, TypeError, msgpack.UnpackException) as e:
        raise BootstrapError(f"WAL metadata is not a raftnode member's: {e}") from e
    if fmt != METADATA_FORMAT:
        raise BootstrapError(f"WAL metadata format {fmt} is not supported")
    return int(mid), int(cid), str(name), str(state)


def fetch_cluster(peer_urls: Sequence[str], timeout: float = 2.0) -> dict[str, object]:
    """GET the cluster info from the first running member that answers."""
    errors = []
    for url in peer_urls:
        try:
            with urllib.request.urlopen(url.rstrip("/") + CLUSTER_INFO_PATH,
                                        timeout=timeout) as r:
                info: dict[str, object] = json.loads(r.read())
                return info
        except (OSError, urllib.error.URLError, ValueError) as e:
            errors.append(f"{url}: {e}")
    raise BootstrapError("cannot reach any existing member to join: " + "; ".join(errors))


def boot(spec: BootSpec, storage: Storage, rng: random.Random) -> Booted:
    """Open or create the member's durable state and build its RawNode and state machine."""
    raft_cfg = RaftConfig(id=1, election_tick=spec.election_tick,
                          heartbeat_tick=spec.heartbeat_tick,
                          async_storage_writes=spec.async_storage_writes,
                          max_size_per_msg=spec.max_size_per_msg,
                          max_inflight_msgs=spec.max_inflight_msgs)
    fresh = not storage.exists()
    peers: dict[int, tuple[str, ...]] = {}
    if fresh:
        mid, cid, peers = _identify(spec)
        storage.bootstrap(encode_metadata(mid, cid, spec.name, spec.state))
    state = storage.load()
    mid, cid, name, born = _parse_metadata(state.metadata)
    if name != spec.name:
        log.warning("data dir belongs to member %r, started as %r: keeping %r", name,
                    spec.name, name)
    raft_cfg = _with_id(raft_cfg, mid)
    sm = StateMachine(MVCCStore(min_lease_ttl=_min_lease_ttl(spec)))
    hard = HardState(state.hard_state.term, state.hard_state.vote, state.hard_state.commit)
    entries = from_wal(state.entries)
    snapshot = None
    conf = ConfState()
    applied = 0
    if state.snapshot is not None:
        conf, sm_data = unpack_snapshot_data(state.snapshot.data)
        sm.restore(sm_data)
        snapshot = Snapshot(SnapshotMeta(state.snapshot.index, state.snapshot.term, conf),
                            state.snapshot.data)
        applied = state.snapshot.index
    if born == "new" and not entries and snapshot is None and hard.term == 0:
        # a new member's first act (also redone if it crashed right after bootstrap)
        entries, hard = initial_entries(spec, storage)
    rn = RawNode(raft_cfg, rng, hard_state=hard, snapshot=snapshot, entries=entries,
                 conf_state=conf if snapshot is not None else None, applied=applied)
    if not peers:
        peers = {member_id(urls, spec.token): urls for urls in spec.initial_cluster.values()}
    peers.pop(mid, None)
    return Booted(mid, cid, rn, sm, applied,
                  state.snapshot.index if state.snapshot else 0, conf, fresh, peers)


def _with_id(cfg: RaftConfig, mid: int) -> RaftConfig:
    return RaftConfig(id=mid, election_tick=cfg.election_tick,
                      heartbeat_tick=cfg.heartbeat_tick, pre_vote=cfg.pre_vote,
                      check_quorum=cfg.check_quorum, max_size_per_msg=cfg.max_size_per_msg,
                      max_inflight_msgs=cfg.max_inflight_msgs,
                      max_uncommitted_entries_size=cfg.max_uncommitted_entries_size,
                      async_storage_writes=cfg.async_storage_writes)


def _min_lease_ttl(spec: BootSpec) -> int:
    """etcd's MinLeaseTTL: 1.5 election timeouts, rounded up to whole seconds."""
    return max(1, math.ceil(1.5 * spec.election_tick * spec.tick_seconds))


def _identify(spec: BootSpec) -> tuple[int, int, dict[int, tuple[str, ...]]]:
    if spec.state == "new":
        if spec.name not in spec.initial_cluster:
            raise BootstrapError(f"--initial-cluster has no member named {spec.name!r}")
        if set(spec.initial_cluster[spec.name]) != set(spec.peer_urls):
            raise BootstrapError(
                f"--initial-cluster has {spec.name}={','.join(spec.initial_cluster[spec.name])} "
                f"but --initial-advertise-peer-urls is {','.join(spec.peer_urls)}")
        ids = [member_id(urls, spec.token) for urls in spec.initial_cluster.values()]
        if len(set(ids)) != len(ids):
            raise BootstrapError("--initial-cluster lists the same peer URLs twice")
        peers = {member_id(urls, spec.token): urls for urls in spec.initial_cluster.values()}
        return member_id(spec.peer_urls, spec.token), cluster_id(ids), peers
    others = [u for n, urls in spec.initial_cluster.items() if n != spec.name for u in urls]
    info = fetch_cluster(others)
    mine = set(spec.peer_urls)
    members = {int(m["id"]): tuple(m["peer_urls"])
               for m in info.get("members", [])}  # type: ignore[attr-defined]
    for mid, urls in members.items():
        if mine & set(urls):
            return mid, int(str(info["cluster_id"])), members
    raise BootstrapError(
        f"this member ({','.join(spec.peer_urls)}) is not in the cluster's member list; "
        "add it first with `member add`")


def initial_entries(spec: BootSpec, storage: Storage
                     ) -> tuple[list[Entry], HardState]:
    """etcd-io/raft's StartNode: one ADD_NODE per initial member at term 1, committed.

    Saved to ``storage`` (open); `raftnode.restore` writes the same ones under its snapshot.
    """
    members = sorted((member_id(urls, spec.token), name, urls)
                     for name, urls in spec.initial_cluster.items())
    entries = [Entry(i, 1, EntryType.CONF_CHANGE,
                     ConfChange(ConfChangeType.ADD_NODE, mid,
                                encode_cc_context(urls, name)).encode())
               for i, (mid, name, urls) in enumerate(members, start=1)]
    hard = HardState(1, 0, len(entries))
    storage.save(WalHardState(hard.term, hard.vote, hard.commit),
                 [WalEntry(e.index, e.term, e.data, int(e.type)) for e in entries])
    return entries, hard
