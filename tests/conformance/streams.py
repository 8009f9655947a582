"""Recording watch streams over member failures, and the truth to check them against.

:class:`RawWatcher` is a raw `/v3/watch` client that records every response it gets: when
its stream breaks it reopens on the next member from its last seen revision + 1, with no
filtering of its own, so a server that repeats or skips an event is caught here rather than
papered over by a client library.

The truth is read from the MVCC history, not from any watch: the range at every revision
(``range`` with ``revision=r``) gives the events of each revision. It is fed into
`tests.watch.checker.Recorder.expected`, the same model the in-process watch tests use.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from raftnode.mvcc.messages import Event, EventType, KeyValue
from raftnode.mvcc.store import MVCCStore
from tests.conformance.targets import Target, b64, post
from tests.watch.checker import Recorder, Seen, seen_from_results


def prefix_end(p: bytes) -> bytes:
    return p[:-1] + bytes([p[-1] + 1])


@dataclass
class Segment:
    """The responses of one stream, on one member."""

    endpoint: str
    start: int
    watch_id: str = "0"
    ended: str = ""  # why the stream ended, for failure messages
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RawWatcher:
    endpoints: list[str]
    create: dict[str, Any]
    next_revision: int
    segments: list[Segment] = field(default_factory=list)
    task: asyncio.Task[None] | None = None

    def start(self) -> RawWatcher:
        self.task = asyncio.create_task(self._run())
        return self

    async def stop(self) -> None:
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task

    @property
    def reconnects(self) -> int:
        return len(self.segments) - 1

    def seen(self) -> list[Seen]:
        """Every event received, all streams in order (per-response invariants checked)."""
        out: list[Seen] = []
        for seg in self.segments:
            out += seen_from_results(seg.results, seg.watch_id)
        return out

    async def wait_for(self, revision: int, timeout: float = 30.0) -> None:
        """Until an event at ``revision`` or later arrived."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self.next_revision <= revision:
            assert self.task is not None and not self.task.done(), self.task
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"watch stuck at {self.next_revision}, wanted {revision}; "
                                     f"{[(s.endpoint, s.start) for s in self.segments]}")
            await asyncio.sleep(0.05)

    async def wait_count(self, n: int, timeout: float = 30.0) -> None:
        """Until at least ``n`` events arrived."""
        deadline = asyncio.get_running_loop().time() + timeout
        while len(self.seen()) < n:
            assert self.task is not None and not self.task.done(), self.task
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{len(self.seen())} events, wanted {n}: {self.seen()}")
            await asyncio.sleep(0.05)

    async def _run(self) -> None:
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=1.0)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            i = 0
            while True:
                ep = self.endpoints[i % len(self.endpoints)]
                i += 1
                req = {"create_request": {**self.create, "start_revision": self.next_revision}}
                try:
                    async with session.post(ep + "/v3/watch", json=req) as resp:
                        if resp.status != 200:
                            await asyncio.sleep(0.1)
                            continue
                        seg = Segment(ep, self.next_revision)
                        self.segments.append(seg)
                        await self._read(resp, seg)
                        seg.ended = "stream ended"
                except (aiohttp.ClientError, ConnectionError, TimeoutError) as e:
                    if self.segments and self.segments[-1].endpoint == ep:
                        self.segments[-1].ended = repr(e)
                await asyncio.sleep(0.05)

    async def _read(self, resp: aiohttp.ClientResponse, seg: Segment) -> None:
        buf = b""
        async for chunk in resp.content.iter_any():
            buf += chunk
            while (j := buf.find(b"\n")) >= 0:
                line, buf = buf[:j], buf[j + 1:]
                if not line.strip():
                    continue
                msg = orjson.loads(line)
                assert "result" in msg, msg
                res = msg["result"]
                seg.results.append(res)
                if res.get("created"):
                    seg.watch_id = str(res.get("watch_id", "0"))
                for e in res.get("events", ()):
                    self.next_revision = int(e["kv"]["mod_revision"]) + 1
                if res.get("canceled"):
                    return


def truth(target: Target, name: str, prefix: bytes, start: int, final: int) -> Recorder:
    """A Recorder holding the events of revisions [start, final] under ``prefix``, rebuilt
    from ranges of the MVCC history at each revision (read from member ``name``), preceded
    by the state at ``start - 1`` so prev values are known from the first event on."""
    url = target.endpoint(name)

    def state(rev: int) -> dict[bytes, tuple[bytes, int, int, int]]:
        body = post(url, "/v3/kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix)),
                                          "revision": rev}, timeout=5.0)
        out = {}
        for kv in body.get("kvs", ()):
            out[base64.b64decode(kv["key"])] = (
                base64.b64decode(kv.get("value", "")), int(kv.get("create_revision", 0)),
                int(kv["mod_revision"]), int(kv.get("version", 0)))
        return out

    rec = Recorder(MVCCStore())
    before = state(start - 1)
    rec.log.append((start - 1, [Event(EventType.PUT, KeyValue(k, c, m, v, val))
                                for k, (val, c, m, v) in before.items()]))
    for rev in range(start, final + 1):
        now = state(rev)
        events = [Event(EventType.PUT, KeyValue(k, c, m, v, val))
                  for k, (val, c, m, v) in now.items() if m == rev]
        events += [Event(EventType.DELETE, KeyValue(k, 0, rev)) for k in before if k not in now]
        rec.log.append((rev, events))
        before = now
    return rec


def by_revision_then_key(events: list[Seen]) -> list[Seen]:
    """Events of one revision (one txn) in key order: the MVCC history does not keep the
    order of operations inside a txn, so revisions are compared as sets of events while
    the order across revisions stays exact."""
    out: list[Seen] = []
    for _, group in itertools.groupby(events, key=lambda s: s[0]):  # consecutive runs only
        out += sorted(group, key=lambda s: s[2])
    return out
