"""PreVote, CheckQuorum, leadership transfer, membership, snapshots, ReadIndex and limits."""

from __future__ import annotations

import pytest

from raftnode.raft.errors import (
    ConfChangePendingError,
    InvalidArgumentError,
    InvalidConfChangeError,
    NoLeaderError,
    NotLeaderError,
    ReadIndexNotReadyError,
    TransferInProgressError,
    UncommittedSizeExceededError,
)
from raftnode.raft.progress import ProgressState
from raftnode.raft.types import (
    ConfChange,
    ConfChangeType,
    ConfState,
    Message,
    MessageType,
    Role,
    Snapshot,
    SnapshotMeta,
)
from tests.raft.harness import Cluster

MT = MessageType
CC = ConfChangeType


def tick_until_leader(c: Cluster, limit: int = 300) -> int:
    for _ in range(limit):
        c.tick_all()
        lead = c.leaders()
        if len(lead) == 1:
            return lead[0]
    raise AssertionError("no leader elected")


# -- PreVote and CheckQuorum -------------------------------------------------------------------


def test_prevote_rejoining_member_neither_raises_term_nor_steals_leadership() -> None:
    """Thesis §9.6: a partitioned member keeps pre-campaigning without raising its term; when
    it rejoins, the leader and term are unchanged."""
    c = Cluster(3)
    c.elect(1)
    term = c.term(1)
    c.isolate(3)
    c.tick_all(100)
    assert c.term(3) == term  # pre-votes failed, the real term never moved
    assert c.role(3) in (Role.PRE_CANDIDATE, Role.FOLLOWER)
    c.heal()
    c.tick_all(30)
    assert c.leaders() == [1]
    assert {c.term(i) for i in (1, 2, 3)} == {term}
    assert c.nodes[3].raft.lead == 1


def test_without_prevote_a_rejoining_member_disrupts() -> None:
    """The contrast: without PreVote the isolated member inflates its term and forces an
    election when it rejoins (the leader learns the higher term and steps down)."""
    c = Cluster(3, pre_vote=False, check_quorum=False)
    c.elect(1)
    term = c.term(1)
    c.isolate(3)
    c.tick_all(60)
    assert c.term(3) > term + 1
    c.heal()
    c.tick_all(25)
    assert c.term(1) > term


def test_check_quorum_leader_steps_down_without_quorum() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(1)
    c.tick(1, 10)  # one election timeout without hearing from anyone
    c.stabilize()
    c.tick(1, 10)
    assert c.role(1) == Role.FOLLOWER
    assert c.nodes[1].raft.lead == 0


def test_check_quorum_followers_ignore_votes_while_leader_is_alive() -> None:
    """Leader stickiness: a member that heard from the leader within the election timeout
    ignores a (non-transfer) vote request even from a higher term."""
    c = Cluster(3, pre_vote=False)
    c.elect(1)
    term = c.term(1)
    c.cut(1, 3)  # 3 stops hearing from the leader, 2 still does
    for _ in range(40):
        c.tick_all()
    assert c.leaders() == [1]
    assert c.term(2) == term  # 2 never adopted 3's higher term


def test_prevote_candidate_with_stale_log_cannot_win() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(3)
    c.nodes[1].propose(b"a")
    c.stabilize()
    c.heal()
    c.isolate(1)
    assert tick_until_leader_excluding(c, 1) == 2


# -- leadership transfer -----------------------------------------------------------------------


def test_transfer_to_up_to_date_follower() -> None:
    c = Cluster(3)
    c.elect(1)
    term = c.term(1)
    c.nodes[1].transfer_leadership(2)
    c.stabilize()
    assert c.leaders() == [2]
    assert c.term(2) == term + 1
    assert c.nodes[1].raft.lead == 2


def test_transfer_to_lagging_follower_catches_it_up_first() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(3)
    for i in range(5):
        c.nodes[1].propose(b"%d" % i)
    c.stabilize()
    c.heal()
    c.nodes[1].transfer_leadership(3)
    with pytest.raises(TransferInProgressError):
        c.nodes[1].propose(b"refused")
    c.stabilize()
    assert c.leaders() == [3]
    assert c.data_applied(3)[:5] == [b"%d" % i for i in range(5)]
    timeout_now = [m for m in c.sent if m.type == MT.TIMEOUT_NOW]
    assert [m.to for m in timeout_now] == [3]


def test_transfer_aborts_after_election_timeout() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(3)
    c.nodes[1].transfer_leadership(3)
    c.stabilize()
    assert c.nodes[1].raft.lead_transferee == 3
    c.tick_all(10)
    assert c.nodes[1].raft.lead_transferee == 0
    assert c.leaders() == [1]
    c.nodes[1].propose(b"accepted again")


def test_transfer_requested_on_follower_is_forwarded() -> None:
    c = Cluster(3)
    c.elect(1)
    c.nodes[3].transfer_leadership(2)
    c.stabilize()
    assert c.leaders() == [2]


def test_transfer_to_learner_refused_and_to_self_ignored() -> None:
    c = Cluster(3, learners=[4])
    c.elect(1)
    with pytest.raises(InvalidArgumentError):
        c.nodes[1].transfer_leadership(4)
    c.nodes[1].transfer_leadership(1)
    assert c.nodes[1].raft.lead_transferee == 0


# -- membership --------------------------------------------------------------------------------


def commit_own_term(c: Cluster, lead: int) -> None:
    c.stabilize()
    log = c.nodes[lead].raft.log
    assert log.term(log.commit) == c.term(lead)


def test_add_learner_then_promote() -> None:
    c = Cluster(3)
    c.elect(1)
    commit_own_term(c, 1)
    c.nodes[1].propose(b"before")
    c.stabilize()
    c.add_node(4, None)  # a brand-new member: empty, waits for the leader
    c.nodes[1].propose_conf_change(ConfChange(CC.ADD_LEARNER, 4))
    c.stabilize()
    c.tick_all(3)
    assert c.nodes[1].raft.learners == {4}
    assert c.data_applied(4) == [b"before"]  # replayed the log from the start
    assert c.nodes[4].raft.voters == {1, 2, 3}
    assert c.nodes[4].raft.learners == {4}
    # learners do not vote and do not count for commit
    assert c.nodes[1].raft.quorum() == 2
    c.nodes[1].propose_conf_change(ConfChange(CC.PROMOTE_LEARNER, 4))
    c.stabilize()
    assert c.nodes[1].raft.voters == {1, 2, 3, 4}
    assert c.nodes[4].raft.voters == {1, 2, 3, 4}
    assert c.nodes[1].raft.quorum() == 3


def test_learner_does_not_campaign_and_its_ack_does_not_commit() -> None:
    c = Cluster(3, learners=[4])
    c.tick(4, 100)
    c.stabilize()
    assert c.role(4) == Role.FOLLOWER and c.term(4) == 1
    c.elect(1)
    c.isolate(2)
    c.isolate(3)
    idx = c.nodes[1].propose(b"x")
    c.stabilize()
    assert c.nodes[4].raft.log.last_index() >= idx  # replicated to the learner
    assert c.nodes[1].raft.log.commit < idx  # ... which does not make a quorum


def test_one_pending_conf_change_at_a_time() -> None:
    c = Cluster(3)
    c.elect(1)
    commit_own_term(c, 1)
    c.isolate(2)
    c.isolate(3)
    c.nodes[1].propose_conf_change(ConfChange(CC.ADD_LEARNER, 4))
    with pytest.raises(ConfChangePendingError):
        c.nodes[1].propose_conf_change(ConfChange(CC.ADD_LEARNER, 5))
    c.heal()
    c.stabilize()
    c.nodes[1].propose_conf_change(ConfChange(CC.ADD_LEARNER, 5))


def test_leader_must_commit_in_its_term_before_conf_change() -> None:
    """Ongaro 2015 (raft-dev): single-server changes are only safe once the leader has
    committed an entry of its own term."""
    c = Cluster(3)
    c.nodes[1].campaign()
    c.stabilize(drop=lambda m: m.type == MT.APP)  # elected, but its no-op cannot replicate
    assert c.role(1) == Role.LEADER
    with pytest.raises(ConfChangePendingError):
        c.nodes[1].propose_conf_change(ConfChange(CC.ADD_LEARNER, 4))
    c.tick_all(1)  # heartbeat -> reply -> the no-op goes out and commits
    commit_own_term(c, 1)
    c.nodes[1].propose_conf_change(ConfChange(CC.ADD_LEARNER, 4))


def test_invalid_conf_changes_rejected() -> None:
    c = Cluster(3, learners=[4])
    c.elect(1)
    commit_own_term(c, 1)
    lead = c.nodes[1]
    for cc in (ConfChange(CC.ADD_NODE, 2), ConfChange(CC.ADD_LEARNER, 4),
               ConfChange(CC.ADD_LEARNER, 3), ConfChange(CC.PROMOTE_LEARNER, 2),
               ConfChange(CC.REMOVE_NODE, 9), ConfChange(CC.ADD_NODE, 0)):
        with pytest.raises(InvalidConfChangeError):
            lead.propose_conf_change(cc)
    assert lead.raft.pending_conf_index <= lead.raft.log.applied  # nothing was appended


def test_cannot_remove_last_voter() -> None:
    c = Cluster(1)
    c.elect(1)
    c.stabilize()
    with pytest.raises(InvalidConfChangeError):
        c.nodes[1].propose_conf_change(ConfChange(CC.REMOVE_NODE, 1))


def test_removed_leader_steps_down_and_the_rest_elect() -> None:
    c = Cluster(3)
    c.elect(1)
    commit_own_term(c, 1)
    c.nodes[1].propose_conf_change(ConfChange(CC.REMOVE_NODE, 1))
    c.stabilize()
    assert c.role(1) == Role.FOLLOWER
    assert c.nodes[2].raft.voters == {2, 3}
    del c.nodes[1]
    lead = tick_until_leader(c)
    assert lead in (2, 3)
    c.nodes[lead].propose(b"after")
    c.stabilize()
    assert c.data_applied(2)[-1] == c.data_applied(3)[-1] == b"after"


def test_removing_a_voter_shrinks_the_quorum() -> None:
    c = Cluster(4)
    c.elect(1)
    commit_own_term(c, 1)
    c.nodes[1].propose_conf_change(ConfChange(CC.REMOVE_NODE, 4))
    c.stabilize()
    c.isolate(3)
    c.isolate(4)
    idx = c.nodes[1].propose(b"x")
    c.stabilize()
    assert c.nodes[1].raft.log.commit >= idx  # 2 of the remaining 3


def test_no_campaign_with_unapplied_conf_change() -> None:
    c = Cluster(3)
    node = c.nodes[2]
    # freshly booted: the bootstrap conf entries are committed; apply them first
    assert node.raft.log.applied == 3
    node.raft.log.applied = 2  # pretend the driver has not applied the last one yet
    node.campaign()
    assert c.role(2) == Role.FOLLOWER
    node.raft.log.applied = 3
    node.campaign()
    assert c.role(2) == Role.PRE_CANDIDATE


# -- snapshots ---------------------------------------------------------------------------------


def snapshot_of(c: Cluster, nid: int) -> Snapshot:
    node = c.nodes[nid]
    applied = node.raft.log.applied
    term = node.term_at(applied)
    assert term is not None
    data = b"|".join(c.data_applied(nid))
    return Snapshot(SnapshotMeta(applied, term, node.raft.conf_state()), data)


def test_snapshot_sent_to_lagging_follower_and_restored() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(3)
    for i in range(10):
        c.nodes[1].propose(b"%d" % i)
    c.stabilize()
    snap = snapshot_of(c, 1)
    c.nodes[1].compact(snap.meta.index, snap)
    assert c.nodes[1].raft.log.first_index() == snap.meta.index + 1
    c.heal()
    c.tick_all(3)
    (got,) = c.snapshots_applied[3]
    assert got.meta == snap.meta
    assert c.nodes[3].raft.log.commit == snap.meta.index
    assert c.disks[3].snapshot == snap
    c.nodes[1].propose(b"after")
    c.stabilize()
    assert c.data_applied(3) == [b"after"]
    assert c.nodes[1].status().progress[3].state == ProgressState.REPLICATE


def test_failed_snapshot_is_retried() -> None:
    c = Cluster(3)
    c.elect(1)
    c.isolate(3)
    for i in range(5):
        c.nodes[1].propose(b"%d" % i)
    c.stabilize()
    snap = snapshot_of(c, 1)
    c.nodes[1].compact(snap.meta.index, snap)
    c.heal()
    c.tick_all(1, stabilize=False)
    c.stabilize(drop=lambda m: m.type == MT.SNAP and not c.nodes[1].report_snapshot(3, False))
    assert c.snapshots_applied[3] == []
    assert c.nodes[1].status().progress[3].state == ProgressState.PROBE
    c.tick_all(3)
    assert len(c.snapshots_applied[3]) == 1


def test_restart_from_snapshot_and_log() -> None:
    c = Cluster(3)
    c.elect(1)
    for i in range(4):
        c.nodes[1].propose(b"%d" % i)
    c.stabilize()
    snap = snapshot_of(c, 2)
    c.nodes[2].compact(snap.meta.index - 1, snap)
    c.disks[2].snapshot = snap
    c.disks[2].entries = [e for e in c.disks[2].entries if e.index > snap.meta.index]
    c.nodes[1].propose(b"tail")
    c.stabilize()
    node = c.restart(2)
    assert node.raft.log.applied == snap.meta.index
    c.stabilize()
    assert c.data_applied(2) == [b"tail"]  # only what came after the snapshot is re-applied


def test_compact_validates_arguments() -> None:
    c = Cluster(3)
    c.elect(1)
    c.stabilize()
    node = c.nodes[1]
    applied = node.raft.log.applied
    good = snapshot_of(c, 1)
    with pytest.raises(InvalidArgumentError):
        node.compact(applied + 1, good)
    bad_term = Snapshot(SnapshotMeta(applied, 99, good.meta.conf_state))
    with pytest.raises(InvalidArgumentError):
        node.compact(applied, bad_term)
    with pytest.raises(InvalidArgumentError):
        node.compact(applied, Snapshot(SnapshotMeta(applied - 1, 1, ConfState((1,)))))
    node.compact(applied, good)
    node.compact(1, good)  # already compacted past 1: a no-op


# -- ReadIndex ---------------------------------------------------------------------------------


def test_read_index_on_leader_and_follower() -> None:
    c = Cluster(3)
    c.elect(1)
    c.nodes[1].propose(b"x")
    c.stabilize()
    commit = c.nodes[1].raft.log.commit
    c.nodes[1].read_index(b"r1")
    c.nodes[2].read_index(b"r2")
    c.stabilize()
    assert [(r.index, r.request_ctx) for r in c.read_states[1]] == [(commit, b"r1")]
    assert [(r.index, r.request_ctx) for r in c.read_states[2]] == [(commit, b"r2")]


def test_read_index_refused_before_leader_commits_in_its_term() -> None:
    c = Cluster(3)
    c.nodes[1].campaign()
    c.stabilize(drop=lambda m: m.type == MT.APP)
    assert c.role(1) == Role.LEADER
    with pytest.raises(ReadIndexNotReadyError):
        c.nodes[1].read_index(b"early")
    c.tick(1)
    c.stabilize(drop=lambda m: m.type == MT.APP)  # heartbeats tell 2 who leads
    c.nodes[2].read_index(b"via-follower")  # held by the leader until it commits in its term
    c.stabilize(drop=lambda m: m.type == MT.APP)
    assert c.read_states[2] == []
    c.tick_all(1)
    c.nodes[1].read_index(b"later")
    c.stabilize()
    commit = c.nodes[1].raft.log.commit
    assert c.nodes[1].raft.log.term(commit) == c.nodes[1].raft.term
    assert [(r.index, r.request_ctx) for r in c.read_states[1]] == [(commit, b"later")]
    # the follower's request was not lost: answered with an index of the leader's term
    assert [(r.index, r.request_ctx) for r in c.read_states[2]] == [(commit, b"via-follower")]


def test_held_follower_reads_are_dropped_when_the_leader_steps_down() -> None:
    c = Cluster(3)
    c.nodes[1].campaign()
    c.stabilize(drop=lambda m: m.type == MT.APP)
    c.tick(1)
    c.stabilize(drop=lambda m: m.type == MT.APP)
    c.nodes[2].read_index(b"held")
    c.stabilize(drop=lambda m: m.type == MT.APP)
    assert c.nodes[1].raft.reads_waiting_commit == [(b"held", 2)]
    c.isolate(1)  # a newer term deposes 1 before it ever commits in its own
    new = tick_until_leader_excluding(c, 1)
    c.heal()
    c.tick_all(3)
    assert c.role(1) == Role.FOLLOWER and c.nodes[1].raft.reads_waiting_commit == []
    assert c.role(new) == Role.LEADER
    assert b"held" not in [r.request_ctx for r in c.read_states[2]]  # the node re-asks


def test_read_index_on_deposed_leader_is_never_answered() -> None:
    c = Cluster(3)
    c.elect(1)
    c.stabilize()
    c.isolate(1)
    new = tick_until_leader_excluding(c, 1)
    c.nodes[new].propose(b"newer")
    c.stabilize()
    assert c.role(1) == Role.LEADER  # it does not know yet
    c.nodes[1].read_index(b"stale?")
    c.stabilize()
    assert c.read_states[1] == []
    c.heal()
    c.tick_all(3)
    assert c.read_states[1] == []
    assert c.role(1) == Role.FOLLOWER


def tick_until_leader_excluding(c: Cluster, old: int) -> int:
    for _ in range(300):
        c.tick_all()
        others = [n for n in c.leaders() if n != old]
        if others:
            return others[0]
    raise AssertionError("no new leader")


def test_read_index_single_voter_is_immediate() -> None:
    c = Cluster(1)
    c.elect(1)
    c.stabilize()
    c.nodes[1].read_index(b"x")
    c.stabilize()
    assert [r.request_ctx for r in c.read_states[1]] == [b"x"]


def test_read_index_without_leader() -> None:
    c = Cluster(3)
    with pytest.raises(NoLeaderError):
        c.nodes[2].read_index(b"x")


def test_read_index_batches_release_in_order() -> None:
    c = Cluster(3)
    c.elect(1)
    c.stabilize()
    c.nodes[1].read_index(b"a")
    c.nodes[1].read_index(b"b")
    c.nodes[1].read_index(b"a")  # duplicate context: one request
    c.stabilize()
    assert [r.request_ctx for r in c.read_states[1]] == [b"a", b"b"]


# -- proposal errors and limits ----------------------------------------------------------------


def test_proposal_without_leader_fails_fast() -> None:
    c = Cluster(3)
    with pytest.raises(NoLeaderError):
        c.nodes[1].propose(b"x")


def test_proposal_on_follower_names_the_leader() -> None:
    c = Cluster(3)
    c.elect(2)
    with pytest.raises(NotLeaderError) as info:
        c.nodes[1].propose(b"x")
    assert info.value.leader_hint == 2


def test_uncommitted_size_limit_drops_and_recovers() -> None:
    c = Cluster(3, max_uncommitted_entries_size=100)
    c.elect(1)
    c.isolate(2)
    c.isolate(3)
    lead = c.nodes[1]
    lead.propose(b"x" * 60)
    with pytest.raises(UncommittedSizeExceededError):
        lead.propose(b"y" * 60)
    lead.propose(b"z" * 40)  # still fits
    c.heal()
    c.stabilize()
    assert lead.raft.uncommitted_size == 0
    lead.propose(b"w" * 90)  # room again once committed


def test_oversized_single_proposal_allowed_when_nothing_uncommitted() -> None:
    c = Cluster(3, max_uncommitted_entries_size=10)
    c.elect(1)
    c.stabilize()
    c.nodes[1].propose(b"x" * 50)


# -- flow control ------------------------------------------------------------------------------


def test_inflight_window_limits_appends_and_heartbeat_frees_a_slot() -> None:
    c = Cluster(2, max_inflight_msgs=3, max_size_per_msg=0)
    c.elect(1)
    c.stabilize()
    c.isolate(2)
    lead = c.nodes[1]
    c.heal()
    # without acks the window fills: 3 appends in flight, then nothing more
    for i in range(10):
        lead.propose(b"%d" % i)
        c.handle_ready(1)
    apps = [m for m in c.queue if m.type == MT.APP and m.entries]
    assert len(apps) == 3
    assert lead.status().progress[2].inflight == 3
    c.queue.clear()  # lost
    c.tick(1)  # heartbeat
    c.stabilize()
    assert c.nodes[2].raft.log.last_index() == lead.raft.log.last_index()


def test_report_unreachable_moves_follower_to_probe() -> None:
    c = Cluster(3)
    c.elect(1)
    c.stabilize()
    assert c.nodes[1].status().progress[2].state == ProgressState.REPLICATE
    c.nodes[1].report_unreachable(2)
    assert c.nodes[1].status().progress[2].state == ProgressState.PROBE


def test_read_state_released_only_once_applied_reaches_its_index() -> None:
    c = Cluster(3, async_ids=[2])
    c.elect(1)
    c.stabilize()
    c.nodes[1].propose(b"x")
    c.stabilize(persist_async=False)  # committed on 1 and 3; 2 has not persisted/applied it
    commit = c.nodes[1].raft.log.commit
    assert c.nodes[2].raft.log.applied < commit
    c.nodes[2].read_index(b"r")
    c.stabilize(persist_async=False)
    assert c.read_states[2] == []  # confirmed by the leader, but 2 cannot serve it yet
    assert c.nodes[2].raft.read_states[0].index == commit
    c.persist(2)
    c.stabilize()
    assert [(r.index, r.request_ctx) for r in c.read_states[2]] == [(commit, b"r")]
    assert c.nodes[2].raft.log.applied >= commit


def test_learner_vote_does_not_count() -> None:
    c = Cluster(3, learners=[4], pre_vote=False)
    c.cut(1, 2)
    c.cut(1, 3)
    c.nodes[1].campaign()
    c.stabilize()
    grants = [m for m in c.sent if m.type == MT.VOTE_RESP and m.frm == 4 and not m.reject]
    assert grants == []  # not even asked: only voters are
    c.nodes[1].step(Message(MT.VOTE_RESP, 1, 4, c.term(1)))  # an unsolicited grant
    assert c.role(1) == Role.CANDIDATE
