"""What may leave the node before persistence, and what must wait (default and async modes)."""

from __future__ import annotations

import random

import pytest

from raftnode.raft.config import Config
from raftnode.raft.errors import InvalidArgumentError, InvariantViolation
from raftnode.raft.rawnode import RawNode
from raftnode.raft.types import (
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    Role,
)
from tests.raft.harness import Cluster

MT = MessageType


def test_async_follower_acks_only_after_persistence() -> None:
    c = Cluster(3, async_ids=[2])
    c.elect(1)
    c.stabilize()
    idx = c.nodes[1].propose(b"x")
    c.handle_ready(1)
    c.deliver()  # 2 receives the append
    c.handle_ready(2)
    assert [m for m in c.queue if m.frm == 2 and m.type == MT.APP_RESP] == []
    (rd,) = c.disk_queue[2]
    assert [e.index for e in rd.entries] == [idx]
    assert [(m.type, m.index) for m in rd.persist_messages] == [(MT.APP_RESP, idx)]
    c.persist(2)
    assert [(m.type, m.index) for m in c.queue if m.frm == 2] == [(MT.APP_RESP, idx)]


def test_async_heartbeat_responses_flow_during_disk_stall() -> None:
    """The point of --async-storage-writes: a stalled fsync does not stop heartbeats."""
    c = Cluster(3, async_ids=[1, 2, 3])
    c.elect(1)
    c.stabilize()
    c.nodes[1].propose(b"x")
    for _ in range(30):  # 30 ticks with every disk stalled
        c.tick_all(1, stabilize=False)
        c.stabilize(persist_async=False)
    assert c.leaders() == [1]
    assert {c.term(i) for i in (1, 2, 3)} == {c.term(1)}
    assert c.data_applied(1) == []  # nothing durable on a majority: nothing applied
    for nid in (1, 2, 3):
        c.persist(nid)
    c.stabilize()
    assert c.data_applied(1) == c.data_applied(2) == [b"x"]


def test_async_leader_counts_itself_only_when_persisted() -> None:
    c = Cluster(3, async_ids=[1])
    c.elect(1)
    c.stabilize()
    c.isolate(3)
    idx = c.nodes[1].propose(b"x")
    c.stabilize(persist_async=False)
    # follower 2 acked: 1 + 2 would be a quorum, but 1's own copy is not durable yet
    assert c.nodes[1].status().progress[2].match == idx
    assert c.nodes[1].raft.log.commit < idx
    c.persist(1)
    assert c.nodes[1].raft.log.commit == idx


def test_async_vote_requests_and_grants_wait_for_their_hard_state() -> None:
    c = Cluster(3, async_ids=[1, 2], pre_vote=False)
    c.nodes[1].campaign()
    c.handle_ready(1)
    # the candidate's new term and self-vote must be durable before it asks anyone: sent
    # earlier, a crash could bring it back with its old term to win the same term twice
    assert [m for m in c.queue if m.type == MT.VOTE] == []
    (rd1,) = c.disk_queue[1]
    assert rd1.hard_state is not None and rd1.hard_state.vote == 1
    assert {m.type for m in rd1.persist_messages} == {MT.VOTE}
    c.persist(1)
    c.deliver()
    c.handle_ready(2)
    assert [m for m in c.queue if m.type == MT.VOTE_RESP] == []  # 2's grant waits
    (rd2,) = c.disk_queue[2]
    assert rd2.hard_state is not None and rd2.hard_state.vote == 1
    assert [(m.type, m.reject) for m in rd2.persist_messages] == [(MT.VOTE_RESP, False)]
    c.persist(2)
    c.deliver()
    assert c.role(1) == Role.LEADER


def test_committed_entries_never_exceed_persisted_single_node() -> None:
    """etcd #14370: a single voter must not apply what it has not made durable."""
    c = Cluster(1, async_ids=[1])
    c.elect(1)
    c.stabilize()
    c.nodes[1].propose(b"x")
    c.handle_ready(1)
    assert c.data_applied(1) == []
    assert not c.nodes[1].has_ready()
    c.persist(1)
    c.handle_ready(1)
    assert c.data_applied(1) == [b"x"]


def test_async_on_persisted_after_truncation_is_ignored() -> None:
    """The ABA race: a write of entries that were meanwhile overwritten must not count."""
    f = RawNode(Config(2, async_storage_writes=True, pre_vote=False), random.Random(2),
                hard_state=HardState(1, 0, 0), entries=[Entry(1, 1)],
                conf_state=ConfState((1, 2, 3)))
    f.step(Message(MT.APP, 2, 1, 2, log_term=1, index=1, entries=[Entry(2, 2), Entry(3, 2)]))
    rd1 = f.ready()
    f.advance(rd1)
    # a newer leader overwrites index 2 and 3 before the disk finished
    f.step(Message(MT.APP, 2, 3, 3, log_term=1, index=1, entries=[Entry(2, 3)]))
    rd2 = f.ready()
    f.advance(rd2)
    f.on_persisted(rd1.persist_index, rd1.persist_term)  # (3, 2): gone from the log
    assert f.raft.log.persisted == 1
    f.on_persisted(rd2.persist_index, rd2.persist_term)
    assert f.raft.log.persisted == 2
    f.on_persisted(99, 9)  # unknown: ignored
    assert f.raft.log.persisted == 2


def test_default_mode_acks_travel_as_persist_messages() -> None:
    c = Cluster(3)
    c.elect(1)
    c.stabilize()
    c.nodes[1].propose(b"x")
    c.handle_ready(1)
    c.deliver()
    rd = c.nodes[2].ready()
    assert [m.type for m in rd.persist_messages] == [MT.APP_RESP]
    assert [e.data for e in rd.entries] == [b"x"]
    assert rd.messages == []


def test_ack_of_already_held_entries_still_waits_for_persistence() -> None:
    """A duplicate append acks entries that may still be in flight to disk."""
    c = Cluster(3, async_ids=[2])
    c.elect(1)
    c.stabilize()
    c.nodes[1].propose(b"x")
    c.handle_ready(1)
    dup = [m for m in c.queue if m.to == 2 and m.type == MT.APP]
    c.queue.extend(dup)  # duplicated by the network
    c.deliver()
    c.handle_ready(2)
    assert [m for m in c.queue if m.frm == 2 and m.type == MT.APP_RESP] == []
    assert len(c.disk_queue[2]) == 1
    c.persist(2)
    assert len([m for m in c.queue if m.frm == 2 and m.type == MT.APP_RESP]) == 2


def test_restart_loses_unpersisted_and_recovers() -> None:
    c = Cluster(3, async_ids=[3])
    c.elect(1)
    c.stabilize()
    c.nodes[1].propose(b"a")
    c.stabilize()
    c.nodes[1].propose(b"b")
    c.handle_ready(1)
    c.deliver()
    c.handle_ready(3)  # 3 has "b" in memory, not on disk
    c.restart(3)
    assert c.nodes[3].raft.log.last_index() == c.nodes[1].raft.log.last_index() - 1
    c.stabilize()
    c.tick_all(2)
    assert c.data_applied(3) == [b"a", b"b"]


def test_restart_keeps_term_and_vote() -> None:
    c = Cluster(3, pre_vote=False)
    c.elect(2)
    c.stabilize()
    term = c.term(1)
    node = c.restart(1)
    assert node.raft.term == term and node.raft.vote == 2
    assert node.raft.role == Role.FOLLOWER


def test_ready_contract_is_enforced() -> None:
    c = Cluster(3)
    c.elect(1)
    node = c.nodes[1]
    node.propose(b"x")
    rd = node.ready()
    assert not node.has_ready()
    with pytest.raises(InvariantViolation):
        node.ready()
    with pytest.raises(InvariantViolation):
        node.advance(type(rd)(None, None, [], None, [], [], [], []))
    node.advance(rd)


def test_bad_restart_state_is_rejected() -> None:
    cfg = Config(1)
    rng = random.Random(1)
    conf = ConfState((1, 2, 3))
    with pytest.raises(InvalidArgumentError):
        RawNode(cfg, rng, hard_state=HardState(1, 0, 5), entries=[Entry(1, 1)], conf_state=conf)
    with pytest.raises(InvalidArgumentError):
        RawNode(cfg, rng, hard_state=HardState(1, 0, 0), entries=[Entry(1, 1), Entry(3, 1)],
                conf_state=conf)
    with pytest.raises(InvalidArgumentError):
        RawNode(cfg, rng, hard_state=HardState(1, 0, 1), entries=[Entry(1, 1)],
                conf_state=conf, applied=2)
    with pytest.raises(InvalidArgumentError):
        RawNode(cfg, rng, conf_state=ConfState((1, 2), (2,)))
    with pytest.raises(InvalidArgumentError):
        RawNode(Config(0), rng)


def test_step_of_message_for_another_node_is_rejected() -> None:
    c = Cluster(3)
    with pytest.raises(InvalidArgumentError):
        c.nodes[1].step(Message(MT.HEARTBEAT, 2, 3, 1))
