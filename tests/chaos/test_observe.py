"""Leader-change counting across member restarts (counters that reset)."""

from __future__ import annotations

from chaos.observe import LeaderObserver, _Counter
from cluster.types import ResponseHeader, Status


def test_counter_increase_survives_resets() -> None:
    c = _Counter()
    for v in (3, 3, 5, 1, 2, 0, 4):  # restart after 5 (back to 1), and after 2 (back to 0)
        c.observe(v)
    assert c.increase == 2 + 1 + 1 + 4


def _st(term: int, leader: int, member: int = 1) -> Status:
    return Status("http://127.0.0.1:1", ResponseHeader(member_id=member, raft_term=term),
                  leader=leader, raft_term=term)


def test_terms_and_leaders_from_status() -> None:
    obs = LeaderObserver(["http://127.0.0.1:1"])
    for st in (_st(5, 0xA), _st(5, 0xA, 2), _st(7, 0xB), _st(6, 0xC, 3)):
        obs._status(st)
    s = obs.summary()
    assert s["term_delta"] == 2
    assert s["leaders_seen"] == {"5": "a", "6": "c", "7": "b"}
    assert s["max_member"] is None  # no metrics were read
