"""History recording, pairing and its file format; malformed input gets a typed error."""

from __future__ import annotations

from pathlib import Path

import pytest

from chaos.history import INFO, NEVER, OK, History, HistoryError


def test_pairs_invocations_with_completions_in_invocation_order() -> None:
    h = History()
    h.invoke(0, "write", "x", "1", 10)
    h.invoke(1, "read", "x", None, 11)
    h.complete(1, OK, "read", "x", "1", 12)
    h.complete(0, OK, "write", "x", None, 13)
    a, b = h.ops()
    assert (a.f, a.value, a.call, a.ret, a.outcome) == ("write", "1", 10, 13, OK)
    assert (b.f, b.result, b.call, b.ret) == ("read", "1", 11, 12)


def test_info_and_unfinished_ops_return_at_never() -> None:
    h = History()
    h.invoke(0, "write", "x", "1", 1)
    h.complete(0, INFO, "write", "x", None, 2, "IndeterminateError: timed out")
    h.invoke(1, "write", "x", "2", 3)  # the run ended before it completed
    a, b = h.ops()
    assert a.outcome == b.outcome == INFO
    assert a.ret == b.ret == NEVER
    assert a.error.startswith("IndeterminateError")
    assert b.error == "no completion recorded"


@pytest.mark.parametrize("events, message", [
    ([("c", 0, "ok", "read", "x", 1)], "without invoke"),
    ([("i", 0, "read", "x", 1), ("i", 0, "read", "x", 2)], "still pending"),
    ([("i", 0, "read", "x", 5), ("c", 0, "ok", "read", "x", 1)], "before it was invoked"),
    ([("i", 0, "read", "x", 1), ("c", 0, "ok", "read", "y", 2)], "does not match"),
])
def test_malformed_histories_are_rejected(events: list[tuple], message: str) -> None:
    h = History()
    for e in events:
        if e[0] == "i":
            h.invoke(e[1], e[2], e[3], None, e[4])
        else:
            h.complete(e[1], e[2], e[3], e[4], None, e[5])
    with pytest.raises(HistoryError, match=message):
        h.ops()


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    h = History()
    h.invoke(0, "cas", "x", ["1", "2"], 1)
    h.complete(0, OK, "cas", "x", True, 2)
    h.invoke(1, "append", "y", 7, 3)
    h.complete(1, INFO, "append", "y", None, 4, "lost")
    path = tmp_path / "history.jsonl"
    h.save(path)
    back = History.load(path)
    assert back.events == h.events
    assert back.ops() == h.ops()


@pytest.mark.parametrize("content, message", [
    ('{"type": "invoke"', "not JSON"),
    ('{"type": "invoke", "process": 0}', "KeyError"),
    ('{"type": "done", "process": 0, "f": "read", "key": "x", "time": 1}', "unknown event"),
    ('[1, 2]', "not an object"),
    ('{"type": "ok", "process": 0, "f": "read", "key": "x", "time": 1}', "without invoke"),
])
def test_bad_history_files_raise_history_error(tmp_path: Path, content: str,
                                               message: str) -> None:
    path = tmp_path / "h.jsonl"
    path.write_text(content + "\n")
    with pytest.raises(HistoryError, match=message):
        History.load(path)


def test_missing_history_file(tmp_path: Path) -> None:
    with pytest.raises(HistoryError, match="No such file"):
        History.load(tmp_path / "absent.jsonl")
