"""Deterministic simulation: thousands of seeded runs with faults, safety checked every tick.

Each seed draws its own variant (3 or 5 voters, learners, async or default persistence, drop /
duplicate / delay rates, partitions, crashes, disk stalls, membership changes, transfers,
snapshots) and runs ``CHAOS_TICKS`` ticks of faults, then heals and demands liveness. A failing
seed reports itself with a one-line replay command.
"""

from __future__ import annotations

import pytest

from tests.raft.sim import CHAOS_TICKS, ELECTION_TICK, SimFailure, Simulation, Variant, run_seed


def test_simulation_seeds(seed_chunk: range) -> None:
    failures: list[str] = []
    for seed in seed_chunk:
        try:
            run_seed(seed, CHAOS_TICKS)
        except SimFailure as exc:
            failures.append(str(exc))
            if len(failures) >= 3:
                break
    assert not failures, "\n\n".join(failures)


def test_seed_replays_identically() -> None:
    a = run_seed(7, CHAOS_TICKS)
    b = run_seed(7, CHAOS_TICKS)
    assert a.history == b.history
    assert a.leaders == b.leaders
    assert a.now == b.now


@pytest.mark.parametrize("async_writes", [False, True])
@pytest.mark.parametrize("voters,learners", [(3, 1), (5, 0)])
def test_fault_free_cluster_commits_everything(async_writes: bool, voters: int,
                                               learners: int) -> None:
    v = Variant(voters=voters, learners=learners, async_writes=async_writes, chaos_ticks=0,
                drop=0.0, dup=0.0, max_delay=0, membership=False, transfers=False,
                snapshot_every=0, max_inflight=256, max_size=1 << 20)
    sim = Simulation(11, variant=v)
    sim.faults = False
    for _ in range(6 * ELECTION_TICK):
        sim.tick()
    lead = sim.leader()
    assert lead is not None and lead.raw is not None
    idx = [sim.propose(lead) for _ in range(50)]
    assert all(i is not None for i in idx)
    for _ in range(5):
        sim.tick()
    for n in sim.nodes.values():
        assert n.sm.applied >= idx[-1], (n.id, n.sm.applied)  # learners apply too
    assert len(sim.leaders) == 1  # no faults: one election, no churn


def test_simulation_reports_a_replayable_failure() -> None:
    sim = Simulation(5)
    with pytest.raises(SimFailure) as info:
        sim.fail("boom")
    assert "RAFT_SIM_SEED=5 .venv/bin/python -m tests.raft.sim" in str(info.value)
    assert "seed 5" in str(info.value)
    short = Simulation(5, chaos_ticks=10)
    with pytest.raises(SimFailure) as info:
        short.fail("boom")
    assert "RAFT_SIM_SEED=5 RAFT_SIM_TICKS=10 " in str(info.value)
