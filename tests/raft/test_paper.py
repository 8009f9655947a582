"""Scenarios from the Raft paper (Ongaro & Ousterhout 2014), section by section."""

from __future__ import annotations

import random

import pytest

from raftnode.raft.config import Config
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
CONF3 = ConfState((1, 2, 3))


def node_with_log(nid: int, terms: list[int], term: int, conf: ConfState = CONF3,
                  commit: int = 0, **cfg: object) -> RawNode:
    ents = [Entry(i + 1, t) for i, t in enumerate(terms)]
    kw: dict[str, object] = {"pre_vote": False}
    kw.update(cfg)
    return RawNode(Config(nid, **kw), random.Random(nid),  # type: ignore[arg-type]
                   hard_state=HardState(term, 0, commit), entries=ents, conf_state=conf)


def drain(node: RawNode) -> tuple[list[Message], list[Message]]:
    """Persist-and-advance every pending Ready (default mode); return (messages, persist_msgs)."""
    free: list[Message] = []
    after: list[Message] = []
    while node.has_ready():
        rd = node.ready()
        free += rd.messages
        after += rd.persist_messages
        node.advance(rd)
    return free, after


def make_leader(node: RawNode) -> None:
    node.campaign()
    drain(node)
    node.step(Message(MT.VOTE_RESP, node.raft.id, 2, node.raft.term))
    drain(node)
    assert node.raft.role == Role.LEADER


# -- §5.1 terms ---------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE, Role.LEADER])
def test_5_1_update_term_from_message(role: Role) -> None:
    """§5.1: a server seeing a larger term adopts it and reverts to follower."""
    n = node_with_log(1, [1], 1)
    if role == Role.CANDIDATE:
        n.campaign()
    elif role == Role.LEADER:
        make_leader(n)
    n.step(Message(MT.APP, 1, 2, 10, log_term=1, index=1))
    assert n.raft.term == 10
    assert n.raft.role == Role.FOLLOWER
    assert n.raft.lead == 2


def test_5_1_reject_stale_term_message() -> None:
    """§5.1: a request with a stale term is rejected; with CheckQuorum the sender learns ours."""
    n = node_with_log(1, [1, 2], 2)
    n.step(Message(MT.APP, 1, 2, 1, log_term=1, index=1, entries=[Entry(2, 1)]))
    assert n.raft.log.last_term() == 2  # nothing appended
    free, after = drain(n)
    assert [(m.type, m.term, m.to) for m in free] == [(MT.APP_RESP, 2, 2)]
    assert after == []


# -- §5.2 leader election ----------------------------------------------------------------------


def test_5_2_start_as_follower_and_elect_in_one_round() -> None:
    c = Cluster(3, pre_vote=False)
    assert all(c.role(i) == Role.FOLLOWER for i in (1, 2, 3))
    c.elect(1)
    assert c.leaders() == [1]
    assert c.term(2) == c.term(3) == c.term(1)
    assert c.nodes[2].raft.lead == 1


def test_5_2_leader_broadcasts_heartbeat() -> None:
    c = Cluster(3)
    c.elect(1)
    c.tick(1)
    c.handle_ready(1)
    beats = [m for m in c.queue if m.type == MT.HEARTBEAT]
    assert sorted(m.to for m in beats) == [2, 3]


def test_5_2_follower_votes_once_per_term() -> None:
    n = node_with_log(1, [1], 1)
    n.step(Message(MT.VOTE, 1, 2, 2, log_term=1, index=1))
    n.step(Message(MT.VOTE, 1, 3, 2, log_term=1, index=1))
    free, after = drain(n)
    assert [(m.to, m.reject) for m in after] == [(2, False)]  # grant waits for persistence
    assert [(m.to, m.reject) for m in free] == [(3, True)]
    assert n.raft.vote == 2


def test_5_2_candidate_falls_back_on_leader_of_same_term() -> None:
    n = node_with_log(1, [1], 1)
    n.campaign()
    assert n.raft.role == Role.CANDIDATE
    n.step(Message(MT.APP, 1, 2, n.raft.term, log_term=1, index=1))
    assert n.raft.role == Role.FOLLOWER and n.raft.lead == 2


def test_5_2_election_timeouts_are_randomized_and_bounded() -> None:
    seen = set()
    for seed in range(40):
        n = RawNode(Config(1, election_tick=10), random.Random(seed), conf_state=CONF3)
        drain(n)  # apply the bootstrap configuration first
        t = n.raft.randomized_timeout
        assert 10 <= t < 20
        seen.add(t)
        ticks = 0
        while n.raft.role == Role.FOLLOWER and ticks < 100:
            n.tick()
            ticks += 1
        assert ticks == t  # campaigns exactly when its own timeout passes
    assert len(seen) > 5


def test_5_2_split_vote_resolves() -> None:
    """§5.2: a split vote ends the term without a leader; randomized timeouts resolve it."""
    c = Cluster(4, pre_vote=False)
    c.cut(2, 3)
    c.cut(1, 4)
    c.nodes[1].campaign()
    c.nodes[2].campaign()
    c.stabilize()
    assert c.leaders() == []  # 1 has {1, 3}, 2 has {2, 4}: no majority of 4
    assert c.term(1) == c.term(2)
    c.heal()
    for _ in range(100):
        c.tick_all()
        if c.leaders():
            break
    (lead,) = c.leaders()
    assert c.term(lead) > 2  # the split term 2 ended without a leader


# -- §5.3 log replication ----------------------------------------------------------------------


def test_5_3_leader_commits_and_followers_apply() -> None:
    c = Cluster(3)
    lead = c.elect(1)
    idx = lead.propose(b"x")
    c.stabilize()
    for nid in (1, 2, 3):
        assert c.data_applied(nid) == [b"x"]
        assert c.nodes[nid].raft.log.commit == idx


def test_5_3_leader_commits_preceding_entries() -> None:
    """An entry of the new term commits every entry before it (Log Matching)."""
    lead = node_with_log(1, [1, 2], 2)
    make_leader(lead)  # appends an entry of term 3 at index 3
    lead.step(Message(MT.APP_RESP, 1, 2, lead.raft.term, index=3))
    assert lead.raft.log.commit == 3
    _free, _ = drain(lead)
    assert lead.raft.log.applied == 3


def test_5_3_follower_checks_previous_entry_and_hints() -> None:
    f = node_with_log(2, [1, 1, 2, 2, 2], 3)
    # mismatched term at index 4: reject with the hint "my last entry of term <= 3 before 4"
    f.step(Message(MT.APP, 2, 1, 3, log_term=3, index=4))
    free, after = drain(f)
    (resp,) = free
    assert resp.reject and resp.index == 4
    assert (resp.reject_hint, resp.log_term) == (4, 2)
    # beyond our log: the hint points at our last index
    f.step(Message(MT.APP, 2, 1, 3, log_term=3, index=9))
    (resp,) = drain(f)[0]
    assert resp.reject and resp.reject_hint == 5
    # matching: append and ack after persistence
    f.step(Message(MT.APP, 2, 1, 3, log_term=2, index=5, entries=[Entry(6, 3)], commit=6))
    free, after = drain(f)
    assert [(m.index, m.reject) for m in after] == [(6, False)]
    assert f.raft.log.commit == 6


def test_5_3_follower_truncates_conflicting_suffix() -> None:
    f = node_with_log(2, [1, 1, 2, 2], 3)
    f.step(Message(MT.APP, 2, 1, 3, log_term=1, index=2, entries=[Entry(3, 3)]))
    assert [e.term for e in f.raft.log.entries] == [1, 1, 3]


FIGURE7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("name", sorted(FIGURE7_FOLLOWERS))
@pytest.mark.parametrize("max_size", [0, 1 << 20])
def test_5_3_figure7_leader_brings_every_follower_in_line(name: str, max_size: int) -> None:
    """Figure 7: whatever the follower's log (missing or extra entries), it ends up equal to
    the leader's, which never changes its own."""
    c = Cluster(3, boot=False, pre_vote=False, max_size_per_msg=max_size)
    c.nodes[1] = node_with_log(1, FIGURE7_LEADER, 7, max_size_per_msg=max_size)
    c.nodes[2] = node_with_log(2, FIGURE7_FOLLOWERS[name], 7, max_size_per_msg=max_size)
    c.nodes[3] = node_with_log(3, [], 7, max_size_per_msg=max_size)
    leader_before = c.log_terms(1)
    c.elect(1)
    c.stabilize()
    assert c.log_terms(1)[: len(leader_before)] == leader_before
    assert c.log_terms(2) == c.log_terms(1)
    assert c.log_terms(3) == c.log_terms(1)
    assert c.nodes[2].raft.log.commit == c.nodes[1].raft.log.last_index()


def test_5_3_fast_backtracking_needs_few_round_trips() -> None:
    """The conflict hint skips a whole term per round trip, not one index."""
    c = Cluster(3, boot=False, pre_vote=False)
    c.nodes[1] = node_with_log(1, [1] + [5] * 30, 6)
    c.nodes[2] = node_with_log(2, [1] + [2] * 15 + [3] * 15 + [4] * 15, 4)
    c.nodes[3] = node_with_log(3, [1], 4)
    c.elect(1)
    c.stabilize()
    assert c.log_terms(2) == c.log_terms(1)
    rejects = [m for m in c.sent if m.type == MT.APP_RESP and m.reject and m.frm == 2]
    assert 1 <= len(rejects) <= 3


# -- §5.4 safety -------------------------------------------------------------------------------


@pytest.mark.parametrize("cand_terms,cand_index,granted", [
    ([1, 1], 2, True),        # same last term, same length
    ([1, 1, 1], 3, True),     # same last term, longer
    ([1], 1, False),          # same last term, shorter
    ([1, 2], 2, True),        # higher last term wins even if ...
    ([2], 1, True),           # ... shorter
])
def test_5_4_1_voter_grants_only_to_up_to_date_logs(cand_terms: list[int], cand_index: int,
                                                    granted: bool) -> None:
    voter = node_with_log(1, [1, 1], 2)
    voter.step(Message(MT.VOTE, 1, 2, 3, log_term=cand_terms[-1], index=cand_index))
    free, after = drain(voter)
    (resp,) = free + after
    assert resp.reject is not granted


@pytest.mark.parametrize("ack_index,want_commit", [(1, 0), (2, 0), (3, 3)])
def test_5_4_2_figure8_only_current_term_entries_commit_by_counting(ack_index: int,
                                                                    want_commit: int) -> None:
    """Figure 8: an entry of an older term replicated on a majority is NOT committed by
    counting; only once an entry of the leader's own term is, and that carries it along."""
    lead = node_with_log(1, [1, 2], 2)
    make_leader(lead)  # term 3, no-op at index 3, persisted
    assert lead.raft.log.last_index() == 3
    lead.step(Message(MT.APP_RESP, 1, 2, lead.raft.term, index=ack_index))
    assert lead.raft.log.commit == want_commit


def test_5_4_leader_completeness_in_election() -> None:
    """A node missing a committed entry cannot become leader: only 2 can win."""
    c = Cluster(3, pre_vote=False)
    c.elect(1)
    c.isolate(3)
    c.nodes[1].propose(b"committed")
    c.stabilize()
    assert c.data_applied(2) == [b"committed"]
    c.heal()
    c.isolate(1)
    winners = set()
    for _ in range(200):
        c.tick_all()
        winners.update(n for n in c.leaders() if n != 1)
        if winners:
            break
    assert winners == {2}
