"""gofail-compatible failpoints: the same term grammar, env syntax and HTTP semantics.

Grammar (etcd-io/gofail doc/design.md)::

    Terms = Term {"->" Term}        Term = [Mode] Action [Value]
    Mode  = float "%" | int "*"     Action = off | return | sleep | panic | break | print
    Value = "(" int | "string" | bool ")"

The first term of a chain whose mode allows it fires; ``N*`` allows N firings,
``P%`` fires with probability P/100, no mode always fires. ``sleep(ms)`` or
``sleep("1.5s")`` delays the caller (`eval` blocks the thread, `async_eval` only the
task); ``return(v)`` hands ``v`` to the hook site; ``panic`` calls the panic hook
(the driver installs one that kills the process, like Go's panic). A name must be
known (registered) to be set, so a typo in a chaos script fails loudly instead of
silently injecting nothing.
"""

from __future__ import annotations

import asyncio
import errno
import os
import random
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NoReturn

from aiohttp import web

Value = int | str | bool | None

KNOWN_FAILPOINTS = (
    "walBeforeFsync", "walAfterFsync", "walWrite",
    "raftBeforeSave", "raftAfterSave", "raftBeforeLeaderSend", "raftBeforeFollowerSend",
    "raftBeforeApplySnap", "raftAfterApplySnap", "raftBeforeSaveSnap", "raftAfterSaveSnap",
    "applyBeforeOpenSnapshot", "peerBlackhole", "peerDelay",
)


class FailpointError(ValueError):
    """A term string does not follow gofail's grammar."""


class UnknownFailpoint(FailpointError, KeyError):
    """The failpoint name is not registered (a FailpointError too, so one except catches both)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown failpoint {self.name!r}"


class FailpointPanic(RuntimeError):
    """Raised by the default panic hook: ``panic`` fired at a failpoint."""


@dataclass(slots=True)
class Term:
    """One link of a chain; `remaining` is the live count for ``N*`` terms."""

    action: str
    value: Value = None
    count: int | None = None
    percent: float | None = None
    remaining: int | None = None

    def text(self) -> str:
        """The canonical gofail spelling of this term (parse_terms(t.text()) gives t back)."""
        mode = (f"{self.count}*" if self.count is not None
                else f"{_fmt_float(self.percent)}%" if self.percent is not None else "")
        val = "" if self.value is None else f"({_fmt_value(self.value)})"
        return f"{mode}{self.action}{val}"


def _fmt_float(p: float | None) -> str:
    assert p is not None
    return repr(p) if not p.is_integer() else f"{p:.1f}"


def _fmt_value(v: Value) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if v is None:
        return ""
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


_TERM_RE = re.compile(
    r"""\s*(?:(?P<pct>\d+(?:\.\d*)?|\.\d+)%|(?P<cnt>\d+)\*)?
        (?P<act>off|return|sleep|panic|break|print)
        (?:\((?P<val>"(?:[^"\\]|\\.)*"|-?\d+|true|false)?\))?\s*$""",
    re.VERBOSE,
)
_DUR_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration (unsigned) -> seconds, e.g. "1s", "1.5s", "2m3s", "250ms"."""
    if text == "0":
        return 0.0
    pos, total = 0, 0.0
    for m in _DUR_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _DUR_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise FailpointError(f"invalid duration {text!r}")
    return total


def _parse_value(raw: str | None) -> Value:
    if raw is None:
        return None
    if raw == "true":
        return True
    if raw == "false":
        return False
    if raw.startswith('"'):
        return re.sub(r"\\(.)", r"\1", raw[1:-1])
    return int(raw)


def parse_terms(text: str) -> list[Term]:
    """Parse a gofail term chain; raises FailpointError with the offending piece."""
    if not text.strip():
        raise FailpointError("empty failpoint term")
    out: list[Term] = []
    for piece in _split_outside_quotes(text, "->"):
        m = _TERM_RE.match(piece)
        if m is None:
            raise FailpointError(f"invalid failpoint term {piece.strip()!r} in {text!r}")
        value = _parse_value(m.group("val"))
        act = m.group("act")
        if act == "sleep":
            if isinstance(value, bool) or value is None:
                raise FailpointError(f"sleep needs milliseconds or a duration: {piece.strip()!r}")
            if isinstance(value, str):
                parse_duration(value)  # validate now, not at the hook site
            elif value < 0:
                raise FailpointError(f"negative sleep in {piece.strip()!r}")
        pct = m.group("pct")
        percent = float(pct) if pct is not None else None
        if percent is not None and percent > 100.0:
            raise FailpointError(f"percentage above 100 in {piece.strip()!r}")
        count = int(m.group("cnt")) if m.group("cnt") is not None else None
        out.append(Term(act, value, count, percent, count))
    return out


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    start, i, quoted = 0, 0, False
    while i < len(text):
        ch = text[i]
        if quoted and ch == "\\":
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        elif not quoted and text.startswith(sep, i):
            parts.append(text[start:i])
            i += len(sep)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


def parse_env(text: str) -> dict[str, str]:
    """GOFAIL_FAILPOINTS syntax: ``name=terms;name=terms`` -> {name: terms} (terms validated)."""
    out: dict[str, str] = {}
    for item in _split_outside_quotes(text, ";"):
        if not item.strip():
            continue
        name, eq, terms = item.partition("=")
        if not eq or not name.strip():
            raise FailpointError(f"invalid failpoint setting {item.strip()!r} (want name=terms)")
        parse_terms(terms)
        out[name.strip()] = terms.strip()
    return out


def errno_error(name: str, value: Value) -> OSError:
    """The OSError a WAL hook raises for ``return("EIO")`` (any errno name; EIO otherwise)."""
    code = getattr(errno, value, None) if isinstance(value, str) else None
    if not isinstance(code, int):
        code = errno.EIO
    return OSError(code, f"{os.strerror(code)} (failpoint {name}={_fmt_value(value)})")


@dataclass(slots=True)
class _Active:
    text: str
    terms: list[Term]


def _raise_panic(name: str, value: Value) -> NoReturn:
    raise FailpointPanic(f"failpoint panic: {value if value is not None else name}")


@dataclass
class Failpoints:
    """The registry. Cheap when nothing is set: one dict lookup per hook site."""

    rng: random.Random = field(default_factory=random.Random)
    panic_hook: Callable[[str, Value], NoReturn] = _raise_panic
    known: set[str] = field(default_factory=lambda: set(KNOWN_FAILPOINTS))
    hits: dict[str, int] = field(default_factory=dict)
    _active: dict[str, _Active] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, *names: str) -> None:
        self.known.update(names)

    def set(self, name: str, terms: str) -> None:
        """Activate `name` with a term chain (replacing any previous one)."""
        if name not in self.known:
            raise UnknownFailpoint(name)
        parsed = parse_terms(terms)
        with self._lock:
            self._active[name] = _Active(terms.strip(), parsed)

    def set_many(self, settings: Mapping[str, str]) -> None:
        """Validate every setting first, then apply them all (all or nothing)."""
        for name, terms in settings.items():
            if name not in self.known:
                raise UnknownFailpoint(name)
            parse_terms(terms)
        for name, terms in settings.items():
            self.set(name, terms)

    def load_env(self, text: str) -> None:
        """Apply a RAFTNODE_FAILPOINTS / GOFAIL_FAILPOINTS value."""
        self.set_many(parse_env(text))

    def get(self, name: str) -> str | None:
        """The active term text, or None when the failpoint is off."""
        if name not in self.known:
            raise UnknownFailpoint(name)
        act = self._active.get(name)
        return act.text if act else None

    def clear(self, name: str | None = None) -> None:
        """Deactivate one failpoint, or all of them."""
        with self._lock:
            if name is None:
                self._active.clear()
                return
            if name not in self.known:
                raise UnknownFailpoint(name)
            self._active.pop(name, None)

    def listing(self) -> dict[str, str]:
        return {n: (a.text if (a := self._active.get(n)) else "") for n in sorted(self.known)}

    def active(self, name: str) -> bool:
        return name in self._active

    def _fire(self, name: str) -> Term | None:
        act = self._active.get(name)
        if act is None:
            return None
        with self._lock:
            for term in act.terms:
                if term.remaining is not None:
                    if term.remaining <= 0:
                        continue
                    term.remaining -= 1
                elif term.percent is not None and self.rng.random() * 100.0 >= term.percent:
                    continue
                self.hits[name] = self.hits.get(name, 0) + 1
                return term
        return None

    def _act(self, name: str, term: Term) -> Value:
        if term.action == "return":
            return term.value if term.value is not None else True
        if term.action == "panic":
            self.panic_hook(name, term.value)
        if term.action == "print":
            print(f"failpoint print: {name}", file=sys.stderr, flush=True)
        return None  # off, break (no debugger here), print, and sleep after sleeping

    def eval(self, name: str) -> Value:
        """Evaluate at a hook site on a thread; sleep blocks this thread."""
        term = self._fire(name)
        if term is None:
            return None
        if term.action == "sleep":
            time.sleep(_sleep_seconds(term.value))
            return None
        return self._act(name, term)

    async def async_eval(self, name: str) -> Value:
        """Evaluate at a hook site on the event loop; sleep suspends only this task."""
        term = self._fire(name)
        if term is None:
            return None
        if term.action == "sleep":
            await asyncio.sleep(_sleep_seconds(term.value))
            return None
        return self._act(name, term)

    def trigger(self, name: str) -> None:
        """A hook site that only wants the side effects (sleep, panic, print); thread-side."""
        self.eval(name)

    def check_io(self, name: str) -> None:
        """WAL hook: raise OSError(errno) when the failpoint returns a value (e.g. "EIO")."""
        value = self.eval(name)
        if value is not None and value is not False:
            raise errno_error(name, value)

    def names(self) -> Iterable[str]:
        return sorted(self.known)


def _sleep_seconds(value: Value) -> float:
    if isinstance(value, str):
        return parse_duration(value)
    assert isinstance(value, int) and not isinstance(value, bool)
    return value / 1000.0


FAILPOINTS = Failpoints()
"""The process-wide registry the hook sites use."""


def add_routes(app: web.Application, registry: Failpoints = FAILPOINTS,
               prefix: str = "/debug/failpoints") -> None:
    """gofail's HTTP endpoint under `prefix`: GET lists ``name=terms`` lines; GET/PUT/DELETE
    ``/<name>`` reads, sets (body = terms, 204) and clears (204); ``GET /<name>/count`` gives
    the hit count; ``PUT`` on the prefix itself takes ``a=..;b=..``. Bad terms are a 400,
    unknown names a 404."""

    async def list_all(_: web.Request) -> web.Response:
        body = "".join(f"{n}={t}\n" for n, t in registry.listing().items())
        return web.Response(text=body)

    async def put_many(req: web.Request) -> web.Response:
        try:
            registry.set_many(parse_env(await req.text()))
        except UnknownFailpoint as exc:
            return web.Response(status=404, text=f"failpoint {exc.name} does not exist\n")
        except FailpointError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        return web.Response(status=204)

    async def one(req: web.Request) -> web.Response:
        name = req.match_info["name"]
        if name not in registry.known:
            return web.Response(status=404, text=f"failpoint {name} does not exist\n")
        if req.method == "GET":
            text = registry.get(name)
            if text is None:
                return web.Response(status=404, text=f"failpoint {name} is not set\n")
            return web.Response(text=text)
        if req.method == "DELETE":
            registry.clear(name)
            return web.Response(status=204)
        try:
            registry.set(name, await req.text())
        except FailpointError as exc:
            return web.Response(status=400, text=f"{exc}\n")
        return web.Response(status=204)

    async def count(req: web.Request) -> web.Response:
        name = req.match_info["name"]
        if name not in registry.known:
            return web.Response(status=404, text=f"failpoint {name} does not exist\n")
        return web.Response(text=str(registry.hits.get(name, 0)))

    app.router.add_get(prefix, list_all)
    app.router.add_get(prefix + "/", list_all)
    app.router.add_put(prefix, put_many)
    app.router.add_get(prefix + "/{name}/count", count)
    for method in ("GET", "PUT", "DELETE"):
        app.router.add_route(method, prefix + "/{name}", one)


def exit_on_panic(name: str, value: Value) -> NoReturn:
    """The member's panic hook: like a Go panic, the process dies at once with status 2.

    ``os._exit`` skips cleanup on purpose: a panic failpoint models a crash, and the
    member must recover from whatever is on disk at that instant."""
    print(f"panic: failpoint panic: {value if value is not None else name}", file=sys.stderr,
          flush=True)
    os._exit(2)
