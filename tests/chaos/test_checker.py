"""The lost-write checker on hand-made register histories, and the workload dispatch."""

from __future__ import annotations

import pytest

from chaos.checker import check_workload, lost_writes
from chaos.history import History, Op
from chaos.result import INVALID, VALID, CheckResult, combine


def h(*rows: tuple) -> list[Op]:
    hist = History()
    for kind, proc, f, key, val, t in rows:
        if kind == "i":
            hist.invoke(proc, f, key, val, t)
        else:
            hist.complete(proc, kind, f, key, val, t)
    return hist.ops()


W1 = [("i", 0, "write", "x", "1", 0), ("ok", 0, "write", "x", None, 1)]
W2 = [("i", 0, "write", "x", "2", 2), ("ok", 0, "write", "x", None, 3)]


def test_final_value_of_the_last_acknowledged_write_is_valid() -> None:
    assert lost_writes(h(*W1, *W2), {"x": "2"}).verdict == VALID


def test_final_value_older_than_the_last_acknowledged_write_is_a_lost_write() -> None:
    res = lost_writes(h(*W1, *W2), {"x": "1"})
    assert res.verdict == INVALID
    assert res.anomalies[0]["type"] == "lost-write"
    assert res.anomalies[0]["last_acknowledged"]["value"] == "2"


def test_final_value_nobody_wrote_is_a_phantom() -> None:
    res = lost_writes(h(*W1), {"x": "zzz"})
    assert res.anomalies[0]["type"] == "phantom-value"


def test_key_absent_despite_acknowledged_write() -> None:
    assert lost_writes(h(*W1), {"x": None}).verdict == INVALID


def test_concurrent_writes_may_either_be_last() -> None:
    ops = h(("i", 0, "write", "x", "1", 0), ("i", 1, "write", "x", "2", 1),
            ("ok", 0, "write", "x", None, 2), ("ok", 1, "write", "x", None, 3))
    assert lost_writes(ops, {"x": "1"}).verdict == VALID
    assert lost_writes(ops, {"x": "2"}).verdict == VALID


def test_indeterminate_write_may_be_last_or_never_apply() -> None:
    ops = h(*W1, ("i", 1, "write", "x", "9", 5), ("info", 1, "write", "x", None, 6))
    assert lost_writes(ops, {"x": "9"}).verdict == VALID
    assert lost_writes(ops, {"x": "1"}).verdict == VALID
    only_info = h(("i", 1, "write", "x", "9", 5), ("info", 1, "write", "x", None, 6))
    assert lost_writes(only_info, {"x": None}).verdict == VALID


def test_failed_write_must_not_be_the_final_value() -> None:
    ops = h(*W1, ("i", 1, "write", "x", "9", 5), ("fail", 1, "write", "x", None, 6))
    assert lost_writes(ops, {"x": "9"}).verdict == INVALID


def test_successful_cas_counts_as_a_write_and_failed_cas_does_not() -> None:
    ok_cas = h(*W1, ("i", 0, "cas", "x", ["1", "3"], 4), ("ok", 0, "cas", "x", True, 5))
    assert lost_writes(ok_cas, {"x": "3"}).verdict == VALID
    assert lost_writes(ok_cas, {"x": "1"}).verdict == INVALID
    lost_cas = h(*W1, ("i", 0, "cas", "x", ["7", "3"], 4), ("ok", 0, "cas", "x", False, 5))
    assert lost_writes(lost_cas, {"x": "1"}).verdict == VALID
    assert lost_writes(lost_cas, {"x": "3"}).verdict == INVALID


def test_dispatch_by_workload_kind() -> None:
    assert [r.checker for r in check_workload("register", h(*W1), {"x": "1"})] == \
        ["linearizable", "lost-writes"]
    assert [r.checker for r in check_workload("append", [], {})] == ["append"]
    with pytest.raises(ValueError, match="unknown workload"):
        check_workload("queue", [], {})


def test_combined_verdict() -> None:
    ok = CheckResult("a", VALID, "")
    bad = CheckResult("b", INVALID, "", ({"type": "x"},))
    assert combine([ok]) == VALID
    assert combine([ok, bad]) == INVALID
    assert combine([]) == "unknown"
    with pytest.raises(AssertionError):
        CheckResult("c", INVALID, "no witness")
