"""Unit tests of the core's building blocks and of its loud invariant checks."""

from __future__ import annotations

import random

import pytest

from raftnode.raft.config import Config
from raftnode.raft.errors import (
    InvalidArgumentError,
    InvalidConfChangeError,
    InvariantViolation,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
)
from raftnode.raft.log import RaftLog
from raftnode.raft.progress import Progress, ProgressState
from raftnode.raft.rawnode import RawNode
from raftnode.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    HardState,
    Message,
    MessageType,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
)

MT = MessageType


def log_of(terms: list[int], commit: int = 0) -> RaftLog:
    log = RaftLog()
    log.restore_persisted(None, [Entry(i + 1, t) for i, t in enumerate(terms)], commit)
    return log


# -- log ---------------------------------------------------------------------------------------


def test_log_terms_and_bounds() -> None:
    log = log_of([1, 1, 2])
    assert (log.first_index(), log.last_index(), log.last_term()) == (1, 3, 2)
    assert [log.term(i) for i in range(0, 5)] == [0, 1, 1, 2, None]
    assert log.match_term(2, 1) and not log.match_term(2, 2) and not log.match_term(9, 1)


def test_log_slice_respects_max_size_but_sends_one_entry() -> None:
    log = RaftLog()
    log.restore_persisted(None, [Entry(i, 1, data=b"x" * 10) for i in range(1, 6)], 0)
    assert [e.index for e in log.slice(1, 6, 25)] == [1, 2]
    assert [e.index for e in log.slice(1, 6, 5)] == [1]
    assert [e.index for e in log.slice(1, 6, 0)] == [1]  # 0: one entry per message
    assert [e.index for e in log.slice(2, 6, 1 << 20)] == [2, 3, 4, 5]


def test_log_find_conflict() -> None:
    log = log_of([1, 2, 3])
    assert log.find_conflict([Entry(1, 1), Entry(2, 2)]) == 0
    assert log.find_conflict([Entry(2, 2), Entry(3, 4)]) == 3
    assert log.find_conflict([Entry(3, 3), Entry(4, 3)]) == 4
    assert log.find_conflict([]) == 0


def test_log_find_conflict_by_term() -> None:
    log = log_of([1, 2, 2, 4, 4, 4])
    assert log.find_conflict_by_term(6, 3) == (3, 2)
    assert log.find_conflict_by_term(6, 4) == (6, 4)
    assert log.find_conflict_by_term(6, 0) == (0, 0)
    assert log.find_conflict_by_term(99, 1) == (1, 1)


def test_log_after_compaction() -> None:
    log = log_of([1, 1, 2, 2], commit=4)
    log.applied = 4
    snap = Snapshot(SnapshotMeta(3, 2, ConfState((1,))))
    log.compact(2, snap)
    assert log.term(1) is None and log.term(2) == 1 and log.first_index() == 3
    assert log.find_conflict([Entry(1, 1), Entry(2, 1)]) == 0  # compacted = committed
    assert log.find_conflict_by_term(2, 0) == (1, 0)  # below the compaction boundary
    with pytest.raises(InvariantViolation):
        log.slice(2, 4, 0)
    assert log.snapshot is snap


def test_log_invariants_raise() -> None:
    log = log_of([1, 1, 2], commit=2)
    with pytest.raises(InvariantViolation):
        log.commit_to(9)  # beyond the last index: the log was lost or corrupted
    with pytest.raises(InvariantViolation):
        log.append([Entry(2, 3)])  # would truncate a committed entry
    with pytest.raises(InvariantViolation):
        log.append([Entry(7, 3)])  # gap
    with pytest.raises(InvariantViolation):
        log.maybe_append(1, 1, 3, [Entry(2, 9)])  # conflicts with committed entry 2
    log.commit_to(1)
    assert log.commit == 2  # never goes back


def test_log_restore_persisted_drops_entries_covered_by_snapshot() -> None:
    log = RaftLog()
    snap = Snapshot(SnapshotMeta(2, 1, ConfState((1,))))
    log.restore_persisted(snap, [Entry(1, 1), Entry(2, 1), Entry(3, 2)], 2)
    assert log.first_index() == 3 and log.last_index() == 3
    assert log.applied == log.commit == 2


# -- progress ----------------------------------------------------------------------------------


def test_progress_probe_and_replicate() -> None:
    pr = Progress(match=0, next=6)
    assert not pr.is_paused(2)
    pr.probe_sent = True
    assert pr.is_paused(2)
    assert not pr.maybe_decr_to(3, 1)  # not the probe we sent (next - 1 == 5)
    assert pr.maybe_decr_to(5, 2)
    assert pr.next == 3 and not pr.probe_sent
    assert pr.maybe_update(4)
    assert (pr.match, pr.next) == (4, 5)
    assert not pr.maybe_update(3)
    pr.become_replicate()
    pr.inflights.extend([5, 6])
    assert pr.is_paused(2)
    pr.free_le(5)
    assert list(pr.inflights) == [6]
    assert not pr.maybe_decr_to(4, 0)  # stale rejection in REPLICATE
    assert pr.maybe_decr_to(6, 0) and pr.next == 5


def test_progress_snapshot_state() -> None:
    pr = Progress(match=2, next=3)
    pr.become_snapshot(10)
    assert pr.state == ProgressState.SNAPSHOT and pr.is_paused(100)
    pr.become_probe()
    assert pr.next == 11 and pr.state == ProgressState.PROBE


# -- types, config, errors ---------------------------------------------------------------------


def test_conf_change_round_trip_and_bad_input() -> None:
    cc = ConfChange(ConfChangeType.PROMOTE_LEARNER, 7, b"ctx")
    assert ConfChange.decode(cc.encode()) == cc
    with pytest.raises(InvalidConfChangeError):
        ConfChange.decode(b"\x00")
    with pytest.raises(InvalidConfChangeError):
        ConfChange.decode(b"\x09" + b"\x00" * 8)


@pytest.mark.parametrize("kw", [
    {"id": 0}, {"id": 1, "heartbeat_tick": 0}, {"id": 1, "election_tick": 1},
    {"id": 1, "max_inflight_msgs": 0}, {"id": 1, "max_size_per_msg": -1},
])
def test_config_validation(kw: dict[str, int]) -> None:
    with pytest.raises(InvalidArgumentError):
        Config(**kw).validate()


def test_error_hierarchy() -> None:
    err = NotLeaderError(3)
    assert isinstance(err, ProposalDroppedError) and isinstance(err, RaftError)
    assert err.leader_hint == 3 and "3" in str(err)


def test_ready_must_persist() -> None:
    empty = Ready(None, None, [], None, [], [], [], [])
    assert not empty.must_persist
    assert Ready(None, HardState(1), [], None, [], [], [], []).must_persist


# -- core invariants raise loudly --------------------------------------------------------------


def leader(n: int = 3) -> RawNode:
    node = RawNode(Config(1, pre_vote=False), random.Random(1),
                   hard_state=HardState(1, 0, 0), entries=[Entry(1, 1)],
                   conf_state=ConfState(tuple(range(1, n + 1))))
    node.campaign()
    while node.has_ready():
        node.advance(node.ready())
    if n > 1:
        node.step(Message(MT.VOTE_RESP, 1, 2, node.raft.term))
    assert node.raft.role == Role.LEADER
    return node


def test_two_leaders_in_one_term_raise() -> None:
    node = leader()
    with pytest.raises(InvariantViolation):
        node.step(Message(MT.APP, 1, 2, node.raft.term, log_term=1, index=1))


def test_vote_change_within_term_raises_at_ready() -> None:
    node = RawNode(Config(1), random.Random(1), hard_state=HardState(3, 2, 0),
                   entries=[Entry(1, 1)], conf_state=ConfState((1, 2, 3)))
    node.raft.vote = 3  # simulate a bug that votes twice in term 3
    with pytest.raises(InvariantViolation):
        node.ready()


def test_term_going_back_raises() -> None:
    node = leader()
    with pytest.raises(InvariantViolation):
        node.raft.become_follower(node.raft.term - 1, 0)


def test_leader_cannot_become_candidate() -> None:
    node = leader()
    with pytest.raises(InvariantViolation):
        node.raft._become_candidate()
    with pytest.raises(InvariantViolation):
        node.raft._become_pre_candidate()


def test_status_reports_progress_for_leader_only() -> None:
    node = leader()
    st = node.status()
    assert st.role == Role.LEADER and st.lead == 1 and set(st.progress) == {1, 2, 3}
    assert st.progress[1].match == st.persisted_index
    f = RawNode(Config(2), random.Random(2), conf_state=ConfState((1, 2, 3)))
    assert f.status().progress == {}


def test_propose_many_batches_into_one_append_per_follower() -> None:
    node = leader()
    while node.has_ready():
        node.advance(node.ready())
    for nid in (2, 3):
        node.step(Message(MT.APP_RESP, 1, nid, node.raft.term, index=node.raft.log.last_index()))
    while node.has_ready():
        node.advance(node.ready())
    last = node.propose_many([b"a", b"b", b"c"])
    node.propose(b"d")
    rd = node.ready()
    apps = [m for m in rd.messages if m.type == MT.APP]
    assert sorted(m.to for m in apps) == [2, 3]
    assert all([e.data for e in m.entries] == [b"a", b"b", b"c", b"d"] for m in apps)
    assert [e.index for e in rd.entries][-2] == last


@pytest.mark.parametrize("msg", [
    Message(MT.SNAP, 1, 2, 5),
    Message(MT.APP, 1, 0, 5),
    Message(MT.APP, 1, 2, -1),
    Message(MT.PROP, 1, 2, 0),
])
def test_malformed_messages_rejected_without_state_change(msg: Message) -> None:
    node = RawNode(Config(1), random.Random(1), hard_state=HardState(3, 0, 0),
                   entries=[Entry(1, 1)], conf_state=ConfState((1, 2, 3)))
    with pytest.raises(InvalidArgumentError):
        node.step(msg)
    assert node.raft.term == 3 and not node.has_ready()


def test_remote_transfer_to_non_voter_is_dropped() -> None:
    node = leader()
    node.step(Message(MT.TRANSFER_LEADER, 1, 2, 0, index=9))
    assert node.raft.lead_transferee == 0 and node.raft.role == Role.LEADER


def test_append_disagreeing_with_a_committed_entry_stops_the_member() -> None:
    """Log Matching below the commit index cannot fail in Raft; if it does, acknowledged
    state was lost somewhere (a power cut under --unsafe-no-fsync), and the member must stop
    rather than keep serving a history the cluster does not have (etcd panics likewise)."""
    node = RawNode(Config(id=2), random.Random(0),
                   hard_state=HardState(term=2, vote=0, commit=3),
                   entries=[Entry(1, 1), Entry(2, 2), Entry(3, 2)],
                   conf_state=ConfState(voters=(1, 2, 3)))
    agree = Message(MT.APP, 2, 1, 3, log_term=2, index=2, commit=3)
    node.step(agree)  # the leader has our committed entry 2: fine
    diverged = Message(MT.APP, 2, 1, 3, log_term=3, index=2, commit=3)
    with pytest.raises(InvariantViolation, match="committed entry 2"):
        node.step(diverged)


def test_stale_looking_append_is_still_compared_with_committed_entries() -> None:
    """An append below the commit index is not answered "I have up to commit" on trust
    (etcd-io/raft's shortcut): a member holding committed entries the leader lacks would
    otherwise be counted as holding the leader's log and diverge silently."""
    node = RawNode(Config(id=2), random.Random(0),
                   hard_state=HardState(term=2, vote=0, commit=3),
                   entries=[Entry(1, 1), Entry(2, 2), Entry(3, 2)],
                   conf_state=ConfState(voters=(1, 2, 3)))
    same = Message(MT.APP, 2, 1, 3, log_term=1, index=1, commit=3,
                   entries=[Entry(2, 2), Entry(3, 2)])
    node.step(same)  # a duplicate of what we hold: accepted, nothing changes
    assert node.status().commit == 3
    other = Message(MT.APP, 2, 1, 3, log_term=1, index=1, commit=3, entries=[Entry(2, 3)])
    with pytest.raises(InvariantViolation, match="conflicts with committed entry"):
        node.step(other)
