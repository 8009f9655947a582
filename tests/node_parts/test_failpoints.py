"""gofail grammar and semantics: terms, counts, percentages, chains, sleeps, HTTP routes."""

from __future__ import annotations

import asyncio
import errno
import random
import threading
import time

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from raftnode.failpoints import (
    FailpointError,
    FailpointPanic,
    Failpoints,
    UnknownFailpoint,
    add_routes,
    errno_error,
    parse_duration,
    parse_env,
    parse_terms,
)


def fp() -> Failpoints:
    return Failpoints(rng=random.Random(7))


@pytest.mark.parametrize(("terms", "expect"), [
    ("off", [None, None]),
    ("return", [True, True]),
    ('return("abc")', ["abc", "abc"]),
    ("return(42)", [42, 42]),
    ("return(-3)", [-3, -3]),
    ("return(true)", [True, True]),
    ("return(false)", [False, False]),
    ('return("a\\"b")', ['a"b', 'a"b']),
    ("print", [None, None]),
    ("sleep(0)", [None, None]),
    ('2*return("abc")->1*return("def")', ["abc", "abc", "def", None]),
    ('1*return("x")->return("y")', ["x", "y", "y"]),
    ('1*off->return(1)', [None, 1, 1]),
    ("0*return(1)", [None, None]),
    ("100%return(1)", [1, 1, 1]),
    ("0%return(1)", [None, None]),
])
def test_term_table(terms: str, expect: list[object]) -> None:
    f = fp()
    f.set("walWrite", terms)
    assert [f.eval("walWrite") for _ in expect] == expect


@pytest.mark.parametrize("bad", [
    "", "   ", "foo", "return(", 'return("x)', "sleep", "sleep(true)", 'sleep("1 parsec")',
    "2*", "%return", "150%return", "return(1)->", "->off", "return(1.5)", "1*2*off",
    "return(abc)",
])
def test_bad_terms_are_rejected(bad: str) -> None:
    with pytest.raises(FailpointError):
        parse_terms(bad)
    f = fp()
    with pytest.raises(FailpointError):
        f.set("walWrite", bad)
    assert f.get("walWrite") is None


def test_percentage_uses_the_seeded_rng() -> None:
    f = Failpoints(rng=random.Random(1))
    f.set("walWrite", "25.0%return(1)")
    fired = sum(f.eval("walWrite") == 1 for _ in range(4000))
    ref = random.Random(1)
    assert fired == sum(ref.random() * 100.0 < 25.0 for _ in range(4000))
    assert 800 < fired < 1200
    assert f.hits["walWrite"] == fired


def test_unknown_names_are_refused_unless_registered() -> None:
    f = fp()
    with pytest.raises(UnknownFailpoint):
        f.set("walBeforeFsnyc", "off")
    with pytest.raises(UnknownFailpoint):
        f.get("nope")
    assert f.eval("nope") is None  # an unset hook site costs nothing and does nothing
    f.register("myPoint")
    f.set("myPoint", "return(1)")
    assert f.eval("myPoint") == 1


def test_get_clear_and_hits() -> None:
    f = fp()
    f.set("raftBeforeSave", " 2*return(1) ")
    assert f.get("raftBeforeSave") == "2*return(1)" and f.active("raftBeforeSave")
    assert [f.eval("raftBeforeSave") for _ in range(3)] == [1, 1, None]
    assert f.hits["raftBeforeSave"] == 2
    f.clear("raftBeforeSave")
    assert f.get("raftBeforeSave") is None and f.eval("raftBeforeSave") is None
    f.set("walWrite", "off")
    f.clear()
    assert not f.active("walWrite")


def test_trigger_discards_the_value() -> None:
    f = fp()
    f.set("raftBeforeSave", "return(7)")
    assert f.trigger("raftBeforeSave") is None  # type: ignore[func-returns-value]
    assert f.hits["raftBeforeSave"] == 1


def test_panic_calls_the_hook() -> None:
    f = fp()
    f.set("raftAfterSave", "panic")
    with pytest.raises(FailpointPanic, match="failpoint panic: raftAfterSave"):
        f.eval("raftAfterSave")
    f.set("raftAfterSave", 'panic("disk on fire")')
    with pytest.raises(FailpointPanic, match="disk on fire"):
        f.eval("raftAfterSave")


def test_errno_values_become_oserrors() -> None:
    f = fp()
    f.check_io("walWrite")  # unset: nothing happens
    f.set("walWrite", 'return("EIO")')
    with pytest.raises(OSError) as info:
        f.check_io("walWrite")
    assert info.value.errno == errno.EIO and "walWrite" in str(info.value)
    assert errno_error("x", "ENOSPC").errno == errno.ENOSPC
    assert errno_error("x", "not-an-errno").errno == errno.EIO
    f.set("walWrite", "return(false)")
    f.check_io("walWrite")


def test_durations() -> None:
    assert parse_duration("1s") == 1.0
    assert parse_duration("1.5s") == 1.5
    assert parse_duration("250ms") == 0.25
    assert parse_duration("2m3s") == 123.0
    assert parse_duration("0") == 0.0
    for bad in ("", "1", "s", "1x", "-1s", "1s ", "ms1"):
        with pytest.raises(FailpointError):
            parse_duration(bad)


def test_env_syntax() -> None:
    assert parse_env('a=sleep(100);b=return("E;IO");;') == {"a": "sleep(100)",
                                                             "b": 'return("E;IO")'}
    with pytest.raises(FailpointError):
        parse_env("a")
    with pytest.raises(FailpointError):
        parse_env("a=bogus")
    f = fp()
    with pytest.raises(FailpointError, match="unknown failpoint 'typo'"):
        f.load_env("walWrite=off;typo=off")
    assert f.get("walWrite") is None  # all or nothing
    f.load_env('walWrite=return("EIO");walBeforeFsync=sleep("1ms")')
    assert f.get("walBeforeFsync") == 'sleep("1ms")'


def test_sync_sleep_blocks_its_thread_only() -> None:
    f = fp()
    f.set("walBeforeFsync", "sleep(300)")
    took: list[float] = []

    def worker() -> None:
        start = time.monotonic()
        f.eval("walBeforeFsync")
        took.append(time.monotonic() - start)

    t = threading.Thread(target=worker)
    t.start()
    t.join(timeout=10)
    # a lower bound only (sleep never returns early): the calling thread was stalled
    assert took and took[0] >= 0.29 and f.hits["walBeforeFsync"] == 1


async def test_async_sleep_does_not_block_the_loop() -> None:
    f = fp()
    f.set("raftBeforeSave", 'sleep("200ms")')
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    started = time.monotonic()
    assert await f.async_eval("raftBeforeSave") is None
    task.cancel()
    assert time.monotonic() - started >= 0.19  # it did sleep (a lower bound only) ...
    assert ticks > 3  # ... while other tasks ran


async def test_http_routes() -> None:
    f = fp()
    app = web.Application()
    add_routes(app, f)
    async with TestClient(TestServer(app)) as client:
        r = await client.put("/debug/failpoints/walWrite", data='1*return("EIO")')
        assert r.status == 204
        r = await client.get("/debug/failpoints/walWrite")
        assert (r.status, await r.text()) == (200, '1*return("EIO")')
        r = await client.get("/debug/failpoints")
        listing = (await r.text()).splitlines()
        assert 'walWrite=1*return("EIO")' in listing and "peerDelay=" in listing
        assert f.eval("walWrite") == "EIO"
        r = await client.get("/debug/failpoints/walWrite/count")
        assert await r.text() == "1"
        r = await client.put("/debug/failpoints/walWrite", data="return(")
        assert r.status == 400 and "invalid failpoint term" in await r.text()
        assert f.get("walWrite") == '1*return("EIO")'  # a bad PUT changes nothing
        r = await client.put("/debug/failpoints/noSuchPoint", data="off")
        assert r.status == 404
        r = await client.delete("/debug/failpoints/walWrite")
        assert r.status == 204 and f.get("walWrite") is None
        r = await client.get("/debug/failpoints/walWrite")
        assert r.status == 404
        r = await client.put("/debug/failpoints", data="walWrite=off;peerDelay=return(5)")
        assert r.status == 204 and f.get("peerDelay") == "return(5)"
        r = await client.put("/debug/failpoints", data="walWrite=sleep(")
        assert r.status == 400
        r = await client.put("/debug/failpoints", data="walWrite=off;typo=off")
        assert r.status == 404 and "typo" in await r.text()


def test_exit_on_panic_kills_the_process() -> None:
    import subprocess
    import sys

    code = ("from raftnode.failpoints import Failpoints, exit_on_panic\n"
            "f = Failpoints(panic_hook=exit_on_panic)\n"
            "f.set('raftAfterSave', 'panic')\n"
            "try:\n    f.eval('raftAfterSave')\nfinally:\n    print('cleanup ran')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 2
    assert proc.stderr.strip() == "panic: failpoint panic: raftAfterSave"
    assert "cleanup ran" not in proc.stdout


_term = st.builds(
    lambda mode, act, val: mode + act + val,
    st.sampled_from(["", "1*", "3*", "0*", "50%", "12.5%", "100%"]),
    st.sampled_from(["off", "return", "print"]),
    st.sampled_from(["", "(1)", "(-7)", '("EIO")', "(true)", "(false)", '("a->b;c")']),
)


@given(st.lists(_term, min_size=1, max_size=4), st.integers(0, 2**32))
def test_chains_follow_the_first_allowing_term(chain: list[str], seed: int) -> None:
    """Property: each evaluation equals a hand-rolled model of gofail's chain rule."""
    text = "->".join(chain)
    f = Failpoints(rng=random.Random(seed))
    f.set("walWrite", text)
    model_rng = random.Random(seed)
    terms = parse_terms(text)
    remaining: list[int | None] = [t.count for t in terms]
    for _ in range(6):
        expect: object = None
        for i, t in enumerate(terms):
            left = remaining[i]
            if left is not None:
                if left == 0:
                    continue
                remaining[i] = left - 1
            elif t.percent is not None and model_rng.random() * 100.0 >= t.percent:
                continue
            expect = (t.value if t.value is not None else True) if t.action == "return" else None
            break
        assert f.eval("walWrite") == expect
    for t in terms:
        (back,) = parse_terms(t.text())
        assert (back.action, back.value, back.count, back.percent) == \
            (t.action, t.value, t.count, t.percent)
