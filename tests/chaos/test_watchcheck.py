"""The watch checker: a complete ordered stream passes; gaps, duplicates, reordering, wrong
events, lagging watchers and a reference that contradicts the store are each caught."""

from __future__ import annotations

from chaos.result import INVALID, VALID
from chaos.watchcheck import check

REF = [(10, "PUT", "k/a", "1"), (11, "PUT", "k/b", "2"), (12, "PUT", "k/a", "3"),
       (13, "PUT", "k/b", "4")]
NOW = {"k/a": "3", "k/b": "4"}


def kinds(*streams: list, error: str = "", current: dict | None = NOW) -> set[str]:
    res = check(REF, 13, [(f"w{i}", s, error) for i, s in enumerate(streams)], current=current)
    if res.verdict == VALID:
        return set()
    assert res.verdict == INVALID
    return {a["type"] for a in res.anomalies}


def test_complete_streams_pass() -> None:
    res = check(REF, 13, [("w0", REF, ""), ("w1", [*REF, (14, "PUT", "k/a", "5")], "")],
                current=NOW)
    assert res.verdict == VALID
    assert res.stats["events"] == 4


def test_gap() -> None:
    assert kinds([REF[0], REF[2], REF[3]]) == {"watch-gap"}


def test_duplicate() -> None:
    assert kinds([REF[0], REF[1], REF[1], REF[2], REF[3]]) == {"watch-duplicate"}


def test_out_of_order() -> None:
    assert kinds([REF[0], REF[2], REF[1], REF[3]]) == {"watch-out-of-order"}


def test_wrong_event() -> None:
    assert kinds([REF[0], (11, "PUT", "k/b", "999"), REF[2], REF[3]]) == {"watch-wrong-event"}


def test_event_that_never_happened() -> None:
    assert kinds([(9, "PUT", "k/z", "0"), *REF]) == {"watch-unknown-event"}


def test_lagging_watcher() -> None:
    assert kinds(REF[:2]) == {"watch-incomplete"}


def test_watch_error_is_reported() -> None:
    assert kinds(REF[:2], error="Unavailable: no member served it") == {"watch-error"}


def test_reference_must_match_the_store() -> None:
    assert kinds(REF, current={"k/a": "3", "k/b": "2"}) == {"reference-disagrees-with-range"}
    assert check(REF, 13, [], current=NOW).verdict == VALID


def test_reference_out_of_order() -> None:
    res = check([REF[1], REF[0]], 11, [], current=None)
    assert {a["type"] for a in res.anomalies} == {"reference-out-of-order"}
