"""bench.common: the statistics and tables every benchmark publishes."""

from __future__ import annotations

import statistics

import pytest

from bench.common import machine_facts, md_table, median, percentile, quick


def test_median_matches_statistics_and_rejects_empty() -> None:
    xs = [5.0, 1.0, 4.0, 2.0]
    assert median(xs) == statistics.median(xs) == 3.0
    assert median(iter([7])) == 7.0
    with pytest.raises(ValueError, match="empty"):
        median([])


@pytest.mark.parametrize(
    ("p", "want"), [(0, 1.0), (50, 50.5), (99, 99.01), (100, 100.0), (25, 25.75)]
)
def test_percentile_interpolates_between_ranks(p: float, want: float) -> None:
    assert percentile(range(100, 0, -1), p) == pytest.approx(want)


def test_percentile_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        percentile([], 50)
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        percentile([1.0], -1)


def test_md_table_aligns_and_escapes() -> None:
    got = md_table(["name", "n"], [("a|b", 1), ("c\nd", 2.5)])
    assert got.splitlines() == ["| name | n |", "|---|---:|", "| a\\|b | 1 |", "| c d | 2.5 |"]
    assert md_table(["x", "y"], [], align="ll").splitlines()[1] == "|---|---|"


def test_md_table_rejects_ragged_rows_and_bad_alignment() -> None:
    with pytest.raises(ValueError, match="cells"):
        md_table(["a", "b"], [(1,)])
    with pytest.raises(ValueError, match="align"):
        md_table(["a", "b"], [], align="lx")


def test_machine_facts_name_what_matters() -> None:
    f = machine_facts()
    assert {"nproc", "python", "kernel", "loadavg (1/5/15 min)"} <= set(f)
    assert f["python"].count(".") == 2


def test_quick_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BENCH_QUICK", "1")
    assert quick()
    monkeypatch.setenv("BENCH_QUICK", "0")
    assert not quick()
    monkeypatch.delenv("BENCH_QUICK")
    assert not quick()
