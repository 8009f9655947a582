"""A real cut between network namespaces: the leader alone on the minority side.

Expected, as for etcd with check-quorum: the majority elects a new leader and takes writes;
the old leader, hearing from no quorum, steps down (reports no leader) and cannot commit;
after heal everyone converges to the same revision and hash.
"""

from __future__ import annotations

import asyncio

import pytest

from cluster import netns
from cluster.errors import ClusterError
from tests.netns.conftest import NetnsHarness

pytestmark = pytest.mark.timeout(120)

# check-quorum steps a lone leader down after one election timeout (750 ms with FAST); the
# deadlines below are generous bounds for a busy 2-core box, not timing assertions
STEP_DOWN_DEADLINE = 10.0


async def _status(h: NetnsHarness, name: str) -> tuple[int, int, int]:
    """(member id, leader id it reports, term) straight from ``name``."""
    async with h.client([name], timeout=1.0, connect_timeout=0.5) as c:
        s = await c.status(h.endpoint(name))
        return s.header.member_id, s.leader, s.raft_term


async def _majority_leader(h: NetnsHarness, side: list[str], not_id: int) -> int:
    deadline = asyncio.get_running_loop().time() + 15.0
    seen: object = None
    while asyncio.get_running_loop().time() < deadline:
        try:
            got = [await _status(h, n) for n in side]
        except ClusterError as e:
            seen = e
        else:
            seen = got
            ids = {mid for mid, _, _ in got}
            leaders = {lead for _, lead, _ in got}
            if len(leaders) == 1 and (lead := leaders.pop()) in ids and lead != not_id:
                return lead
        await asyncio.sleep(0.1)
    raise AssertionError(f"majority side {side} elected no new leader: {seen}")


async def test_leader_cut_off_steps_down_majority_elects_and_heal_converges(
        netns_harness: NetnsHarness) -> None:
    h = netns_harness
    await h.up(3)
    async with h.client() as c:
        before = await c.put("before", "1")
    old = await h.leader()
    rest = [n for n in h.names() if n != old]
    old_id, _, old_term = await _status(h, old)

    sides = await asyncio.to_thread(h.launcher.partition, f"{old} / {','.join(rest)}")
    assert sides == (frozenset([old]), frozenset(rest))
    rules = netns.filter_rules(h.ns(old))
    assert all(h.ip(n) in rules for n in rest) and "drop" in rules

    new_id = await _majority_leader(h, rest, not_id=old_id)
    assert new_id != old_id

    # check-quorum: the old leader hears no quorum and steps down to a follower with no leader
    deadline = asyncio.get_running_loop().time() + STEP_DOWN_DEADLINE
    lone = await _status(h, old)
    while lone[1] != 0 and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.1)
        lone = await _status(h, old)
    assert lone[1] == 0, f"old leader {old} still reports leader {lone[1]:x} while cut off"

    async with h.client(rest, timeout=5.0) as c:
        acked = [(await c.put(f"majority-{i}", str(i))).header.revision for i in range(20)]
    assert acked == sorted(acked) and acked[0] > before.header.revision

    # the minority side cannot commit: a write sent only to the old leader is never acked
    # (its fate after heal is indeterminate, as for any failed write, so it is not checked)
    async with h.client([old], timeout=1.5, connect_timeout=0.5) as c:
        with pytest.raises(ClusterError):
            await c.put("minority", "x")

    await asyncio.to_thread(h.launcher.heal)
    assert "drop" not in netns.filter_rules(h.ns(old))
    rev = await h.converged(timeout=30.0)
    assert rev >= acked[-1]
    leader = await h.leader()
    assert leader in h.names()
    async with h.client([old]) as c:
        got = await c.get("majority-", prefix=True)
        assert sorted(kv.key for kv in got.kvs) == sorted(
            f"majority-{i}".encode() for i in range(20))
    _, _, term_after = await _status(h, old)
    assert term_after > old_term
