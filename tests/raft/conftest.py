"""Options for the Raft core tests: how many simulation seeds to run."""

from __future__ import annotations

import os

import pytest

DEFAULT_SEEDS = 2000


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--sim-seeds", type=int, default=None,
                     help=f"simulation seeds to run (default {DEFAULT_SEEDS}, env RAFT_SIM_SEEDS)")
    parser.addoption("--sim-first-seed", type=int, default=None,
                     help="first seed (default 0, env RAFT_SIM_FIRST_SEED)")


def sim_seed_range(config: pytest.Config) -> range:
    n = config.getoption("--sim-seeds")
    if n is None:
        n = int(os.environ.get("RAFT_SIM_SEEDS", DEFAULT_SEEDS))
    first = config.getoption("--sim-first-seed")
    if first is None:
        first = int(os.environ.get("RAFT_SIM_FIRST_SEED", 0))
    return range(first, first + n)


CHUNK = 100


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "seed_chunk" in metafunc.fixturenames:
        seeds = sim_seed_range(metafunc.config)
        chunks = [seeds[i : i + CHUNK] for i in range(0, len(seeds), CHUNK)]
        metafunc.parametrize("seed_chunk", chunks,
                             ids=[f"seeds{c.start}-{c.stop - 1}" for c in chunks])
