"""The linearizability checker on hand-made histories (good and bad) and on random histories
of a trivially linearizable fake, intact and corrupted."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from chaos import linearizable
from chaos.checker import lost_writes
from chaos.history import History, Op
from chaos.result import INVALID, UNKNOWN, VALID
from tests.chaos.fake import FakeStore


def h(*rows: tuple) -> list[Op]:
    """Rows: ("i", proc, f, key, value, t) invoke; (outcome, proc, f, key, result, t)."""
    hist = History()
    for kind, proc, f, key, val, t in rows:
        if kind == "i":
            hist.invoke(proc, f, key, val, t)
        else:
            hist.complete(proc, kind, f, key, val, t)
    return hist.ops()


def verdict(ops: list[Op]) -> str:
    return linearizable.check(ops).verdict


def test_sequential_write_then_read_is_linearizable() -> None:
    assert verdict(h(("i", 0, "write", "x", "1", 0), ("ok", 0, "write", "x", None, 1),
                     ("i", 1, "read", "x", None, 2), ("ok", 1, "read", "x", "1", 3))) == VALID


def test_stale_read_after_acknowledged_write_is_rejected() -> None:
    ops = h(("i", 0, "write", "x", "1", 0), ("ok", 0, "write", "x", None, 1),
            ("i", 0, "write", "x", "2", 2), ("ok", 0, "write", "x", None, 3),
            ("i", 1, "read", "x", None, 4), ("ok", 1, "read", "x", "1", 5))
    res = linearizable.check(ops)
    assert res.verdict == INVALID
    (a,) = res.anomalies
    assert a["key"] == "x"
    assert a["could_not_linearize"]["result"] == "1"
    assert a["state"] == "2"


def test_concurrent_read_may_see_either_value() -> None:
    base = [("i", 0, "write", "x", "1", 0), ("ok", 0, "write", "x", None, 1),
            ("i", 0, "write", "x", "2", 2), ("i", 1, "read", "x", None, 3)]
    for seen in ("1", "2"):
        ops = h(*base, ("ok", 1, "read", "x", seen, 4), ("ok", 0, "write", "x", None, 5))
        assert verdict(ops) == VALID


def test_read_of_a_value_never_written_is_rejected() -> None:
    assert verdict(h(("i", 0, "read", "x", None, 0), ("ok", 0, "read", "x", "7", 1))) == INVALID


def test_nonmonotonic_reads_are_rejected() -> None:
    # the write is concurrent with both reads, but once a read saw 2 a later one cannot see 1
    ops = h(("i", 0, "write", "x", "1", 0), ("ok", 0, "write", "x", None, 1),
            ("i", 0, "write", "x", "2", 2),
            ("i", 1, "read", "x", None, 3), ("ok", 1, "read", "x", "2", 4),
            ("i", 2, "read", "x", None, 5), ("ok", 2, "read", "x", "1", 6),
            ("ok", 0, "write", "x", None, 7))
    assert verdict(ops) == INVALID


def test_indeterminate_write_may_take_effect_later_or_never() -> None:
    info = [("i", 0, "write", "x", "1", 0), ("info", 0, "write", "x", None, 1)]
    never = h(*info, ("i", 1, "read", "x", None, 5), ("ok", 1, "read", "x", None, 6))
    later = h(*info, ("i", 1, "read", "x", None, 5), ("ok", 1, "read", "x", None, 6),
              ("i", 1, "read", "x", None, 7), ("ok", 1, "read", "x", "1", 8))
    assert verdict(never) == VALID
    assert verdict(later) == VALID


def test_indeterminate_write_cannot_vanish_once_seen() -> None:
    ops = h(("i", 0, "write", "x", "1", 0), ("info", 0, "write", "x", None, 1),
            ("i", 1, "read", "x", None, 5), ("ok", 1, "read", "x", "1", 6),
            ("i", 1, "read", "x", None, 7), ("ok", 1, "read", "x", None, 8))
    assert verdict(ops) == INVALID


def test_indeterminate_write_cannot_apply_before_it_was_invoked() -> None:
    ops = h(("i", 1, "read", "x", None, 0), ("ok", 1, "read", "x", "1", 1),
            ("i", 0, "write", "x", "1", 2), ("info", 0, "write", "x", None, 3))
    assert verdict(ops) == INVALID


def test_failed_write_must_not_be_visible() -> None:
    ops = h(("i", 0, "write", "x", "1", 0), ("fail", 0, "write", "x", None, 1),
            ("i", 1, "read", "x", None, 2), ("ok", 1, "read", "x", "1", 3))
    assert verdict(ops) == INVALID


def test_cas_semantics() -> None:
    w = [("i", 0, "write", "x", "1", 0), ("ok", 0, "write", "x", None, 1)]
    good = h(*w, ("i", 0, "cas", "x", ["1", "2"], 2), ("ok", 0, "cas", "x", True, 3),
             ("i", 0, "read", "x", None, 4), ("ok", 0, "read", "x", "2", 5))
    wrong_success = h(*w, ("i", 0, "cas", "x", ["9", "2"], 2), ("ok", 0, "cas", "x", True, 3))
    wrong_failure = h(*w, ("i", 0, "cas", "x", ["1", "2"], 2), ("ok", 0, "cas", "x", False, 3))
    on_missing_key = h(("i", 0, "cas", "y", ["1", "2"], 0), ("ok", 0, "cas", "y", True, 1))
    assert verdict(good) == VALID
    assert verdict(wrong_success) == INVALID
    assert verdict(wrong_failure) == INVALID
    assert verdict(on_missing_key) == INVALID


def test_keys_are_checked_independently() -> None:
    ops = h(("i", 0, "write", "a", "1", 0), ("ok", 0, "write", "a", None, 1),
            ("i", 0, "write", "b", "2", 2), ("ok", 0, "write", "b", None, 3),
            ("i", 1, "read", "a", None, 4), ("ok", 1, "read", "a", "1", 5),
            ("i", 1, "read", "b", None, 6), ("ok", 1, "read", "b", "1", 7))
    res = linearizable.check(ops)
    assert res.verdict == INVALID
    assert [a["key"] for a in res.anomalies] == ["b"]


def test_budget_exhaustion_is_unknown_not_valid() -> None:
    rng = random.Random(3)
    ops = FakeStore("register", ["k"], rng).run(200, concurrency=6, p_info=0.3)
    assert linearizable.check(ops.ops(), max_states=5).verdict == UNKNOWN


@pytest.mark.parametrize("seed", range(30))
def test_random_fake_histories_are_linearizable(seed: int) -> None:
    fake = FakeStore("register", ["a", "b", "c"], random.Random(seed))
    fake.run(300, concurrency=5)
    final = fake.final_reads()
    ops = fake.history.ops()
    assert linearizable.check(ops).verdict == VALID
    assert lost_writes(ops, final).verdict == VALID


@pytest.mark.parametrize("seed", range(30))
def test_corrupted_fake_histories_are_rejected(seed: int) -> None:
    """Replace one ok read's result by a value no one wrote, or make the final read return
    the value the key had before its last acknowledged write (a lost write)."""
    rng = random.Random(1000 + seed)
    fake = FakeStore("register", ["a", "b"], rng)
    fake.run(200, concurrency=4)
    final = fake.final_reads()
    ops = fake.history.ops()
    reads = [i for i, o in enumerate(ops) if o.f == "read" and o.ok and o.process >= 0]
    i = rng.choice(reads)
    bad = list(ops)
    bad[i] = replace(ops[i], result="never-written")
    assert linearizable.check(bad).verdict == INVALID

    # lost write: the key's last acknowledged write is followed only by the final read
    key = "a"
    writes = [o for o in ops if o.key == key and o.f in ("write", "cas") and o.ok
              and (o.f == "write" or o.result)]
    last = max(writes, key=lambda o: o.ret)
    stale = next((o for o in reversed(writes) if o.ret < last.call), None)
    if stale is not None:
        old = stale.value if stale.f == "write" else stale.value[1]
        tail = max(o.ret for o in ops if o.process >= 0) + 10
        extra = h(("i", 99, "write", key, "fresh", tail), ("ok", 99, "write", key, None, tail + 1),
                  ("i", -2, "read", key, None, tail + 2), ("ok", -2, "read", key, old, tail + 3))
        assert linearizable.check([*ops, *extra]).verdict == INVALID
        assert lost_writes([*ops, *extra], {**final, key: old}).verdict == INVALID


def _corrupt(ops: list[Op], rng: random.Random) -> list[Op]:
    """Change one ok read or cas answer to something plausible but possibly wrong."""
    cands = [i for i, o in enumerate(ops) if o.ok and o.f in ("read", "cas")]
    if not cands:
        return ops
    i = rng.choice(cands)
    values = [None, *(o.value if o.f == "write" else o.value[1] for o in ops
                      if o.f in ("write", "cas"))]
    op = ops[i]
    if op.f == "read":
        new = replace(op, result=rng.choice(values))
    else:
        new = replace(op, result=rng.choice([True, False, {"current": rng.choice(values)}]))
    return [*ops[:i], new, *ops[i + 1:]]


@pytest.mark.parametrize("seed", range(40))
def test_bounding_indeterminate_writes_never_changes_the_verdict(seed: int) -> None:
    """The pruning of indeterminate writes is exact: same verdict as the plain search on
    small histories full of info ops, linearizable or corrupted."""
    rng = random.Random(seed)
    for _ in range(25):
        fake = FakeStore("register", ["k"], rng)
        fake.run(rng.randint(4, 22), concurrency=3, p_fail=0.1, p_info=0.4)
        ops = linearizable.relevant(fake.history.ops())
        if rng.random() < 0.6:
            ops = _corrupt(ops, rng)
        plain = linearizable.check_partition(ops, linearizable.Register())
        pruned = linearizable.check_partition(linearizable.bound_indeterminate(ops),
                                              linearizable.Register())
        assert plain.verdict == pruned.verdict, ops


def test_blind_failed_cas_may_be_explained_by_an_unobserved_indeterminate_write() -> None:
    ops = h(("i", 0, "write", "x", "9", 0), ("ok", 0, "write", "x", None, 1),
            ("i", 1, "write", "x", "11", 2), ("info", 1, "write", "x", None, 3),
            ("i", 2, "cas", "x", ["9", "12"], 4), ("ok", 2, "cas", "x", False, 5))
    assert verdict(ops) == VALID
    seen_9 = h(("i", 0, "write", "x", "9", 0), ("ok", 0, "write", "x", None, 1),
               ("i", 1, "write", "x", "11", 2), ("info", 1, "write", "x", None, 3),
               ("i", 2, "cas", "x", ["9", "12"], 4),
               ("ok", 2, "cas", "x", {"current": "9"}, 5))
    assert verdict(seen_9) == INVALID  # the compare failed although the value matched
    seen_11 = h(("i", 0, "write", "x", "9", 0), ("ok", 0, "write", "x", None, 1),
                ("i", 1, "write", "x", "11", 2), ("info", 1, "write", "x", None, 3),
                ("i", 2, "cas", "x", ["9", "12"], 4),
                ("ok", 2, "cas", "x", {"current": "11"}, 5))
    assert verdict(seen_11) == VALID
