"""The list-append checker: good histories pass, each kind of anomaly is caught."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from chaos import appendcheck
from chaos.history import History, Op
from chaos.result import INVALID, UNKNOWN, VALID
from tests.chaos.fake import FakeStore


def h(*rows: tuple) -> list[Op]:
    hist = History()
    for kind, proc, f, key, val, t in rows:
        if kind == "i":
            hist.invoke(proc, f, key, val, t)
        else:
            hist.complete(proc, kind, f, key, val, t)
    return hist.ops()


def append(proc: int, v: int, t: int, outcome: str = "ok", key: str = "k") -> list[tuple]:
    return [("i", proc, "append", key, v, t), (outcome, proc, "append", key, None, t + 1)]


def read(proc: int, lst: list[int] | str, t: int, key: str = "k") -> list[tuple]:
    return [("i", proc, "read", key, None, t), ("ok", proc, "read", key, lst, t + 1)]


def kinds(ops: list[Op], final: dict) -> set[str]:
    res = appendcheck.check(ops, final)
    return {a["type"] for a in res.anomalies} if res.verdict == INVALID else set()


def test_sequential_history_is_valid() -> None:
    ops = h(*append(0, 1, 0), *read(1, [1], 2), *append(0, 2, 4), *read(1, [1, 2], 6))
    res = appendcheck.check(ops, {"k": [1, 2]})
    assert res.verdict == VALID, res.anomalies


def test_lost_acknowledged_append() -> None:
    ops = h(*append(0, 1, 0), *append(0, 2, 2))
    assert kinds(ops, {"k": [1]}) == {"lost-append"}


def test_stale_read_misses_acknowledged_append() -> None:
    ops = h(*append(0, 1, 0), *append(0, 2, 2), *read(1, [1], 4))
    assert kinds(ops, {"k": [1, 2]}) == {"stale-read"}


def test_nonmonotonic_reads() -> None:
    # the append of 2 is concurrent with both reads (info), so only monotonicity is violated
    ops = h(*append(0, 1, 0), ("i", 2, "append", "k", 2, 1), *read(1, [1, 2], 3),
            *read(1, [1], 5), ("info", 2, "append", "k", None, 9))
    assert kinds(ops, {"k": [1, 2]}) == {"nonmonotonic-read"}


def test_read_that_is_not_a_prefix_of_the_final_list() -> None:
    ops = h(*append(0, 1, 0), ("i", 2, "append", "k", 2, 1), ("info", 2, "append", "k", None, 2),
            *read(1, [2], 3))
    assert "read-not-prefix-of-final" in kinds(ops, {"k": [1, 2]})


def test_duplicate_element() -> None:
    ops = h(*append(0, 1, 0), *read(1, [1, 1], 2))
    assert "duplicate-element" in kinds(ops, {"k": [1, 1]})


def test_failed_append_must_not_appear() -> None:
    ops = h(*append(0, 1, 0, outcome="fail"), *read(1, [1], 2))
    assert kinds(ops, {"k": [1]}) == {"failed-append-applied"}


def test_phantom_element() -> None:
    ops = h(*append(0, 1, 0), *read(1, [1, 42], 2))
    assert "phantom-element" in kinds(ops, {"k": [1, 42]})


def test_read_from_the_future() -> None:
    ops = h(*read(1, [1], 0), *append(0, 1, 5, outcome="info"))
    assert kinds(ops, {"k": [1]}) == {"read-from-future"}


def test_real_time_append_order() -> None:
    ops = h(*append(0, 1, 0), *append(0, 2, 2))
    assert kinds(ops, {"k": [2, 1]}) == {"append-order"}


def test_indeterminate_append_may_apply_or_not() -> None:
    ops = h(*append(0, 1, 0, outcome="info"), *read(1, [], 2), *read(1, [1], 4))
    assert appendcheck.check(ops, {"k": [1]}).verdict == VALID
    ops = h(*append(0, 1, 0, outcome="info"), *read(1, [], 2))
    assert appendcheck.check(ops, {"k": []}).verdict == VALID


def test_corrupt_stored_value_is_reported() -> None:
    ops = h(*append(0, 1, 0), *read(1, "1,x", 2))
    assert kinds(ops, {"k": [1]}) == {"corrupt-value"}
    assert kinds(h(*append(0, 1, 0)), {"k": "garbage"}) == {"corrupt-value"}


def test_missing_final_read_is_unknown() -> None:
    ops = h(*append(0, 1, 0), *read(1, [1], 2))
    assert appendcheck.check(ops, {}).verdict == UNKNOWN


@pytest.mark.parametrize("seed", range(25))
def test_random_fake_histories_pass(seed: int) -> None:
    fake = FakeStore("append", ["a", "b", "c"], random.Random(seed))
    fake.run(300, concurrency=5)
    final = fake.final_reads()
    res = appendcheck.check(fake.history.ops(), final)
    assert res.verdict == VALID, res.anomalies[:2]


@pytest.mark.parametrize("seed", range(25))
def test_random_fake_histories_with_a_lost_append_fail(seed: int) -> None:
    rng = random.Random(500 + seed)
    fake = FakeStore("append", ["a", "b"], rng)
    fake.run(200, concurrency=4)
    final = fake.final_reads()
    ops = fake.history.ops()
    acked = [o for o in ops if o.f == "append" and o.ok and o.key == "a"]
    victim = rng.choice(acked)
    bad_final = {**final, "a": [v for v in final["a"] if v != victim.value]}
    assert "lost-append" in kinds(ops, bad_final)
    # and a stale read: a read that began after the last append on "a" returned, missing it
    last = max(acked, key=lambda o: o.ret)
    i = next(i for i, o in enumerate(ops) if o.process == -1 and o.key == "a")
    trimmed = final["a"][:final["a"].index(last.value)]
    bad = [*ops[:i], replace(ops[i], result=trimmed), *ops[i + 1:]]
    assert "stale-read" in kinds(bad, final)
