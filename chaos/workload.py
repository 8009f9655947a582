"""Concurrent client workloads that record a history (Jepsen's register and list-append).

- ``register``: read / write / cas on a few keys; write values are unique, a cas compares
  the value (txn ``value(k) == old`` then put, else get: a failed cas also reports the
  value it saw, which makes it as informative as a read). Checked for linearizability.
- ``append``: each op appends a unique integer to a key's list (stored as ``"1,5,9"``) with
  a txn that compares the key's mod_revision, or reads a list. Checked by `appendcheck`.

Every request outcome is classified honestly: ``ok`` (answered), ``fail`` (certainly not
applied: refused before sending, or an error that says so), ``info`` (a write whose fate is
unknown: it may still apply later). A process whose op ended in ``info`` is replaced by a new
process id, because its op is still, as far as anyone knows, in flight.
"""

from __future__ import annotations

import asyncio
import ipaddress
import random
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from chaos.history import FAIL, INFO, OK, History
from cluster.client import Client
from cluster.errors import (
    ClusterError,
    EtcdError,
    IndeterminateError,
    NoLeader,
    NotLeader,
    Timeout,
    Unavailable,
)
from cluster.txn import Txn, get, mod_revision, put, value

KINDS = ("register", "append")


class WorkloadError(ValueError):
    """A workload cannot run as configured (bad option, non-loopback endpoint)."""


@dataclass(slots=True, frozen=True)
class WorkloadConfig:
    kind: str = "register"
    keys: int = 4
    concurrency: int = 6
    max_ops: int = 5000
    duration: float = 10.0
    timeout: float = 2.0  # per request; a write that times out is info
    rate: float = 0.0  # total ops/s cap (0 = as fast as the cluster answers)
    read_ratio: float = 0.4
    cas_ratio: float = 0.3  # register only: of the non-reads, this share are cas
    prefix: str = ""  # key prefix; default a fresh random one, so runs never collide
    # etcd's --consistency=s: reads served from the member's local state, without a quorum
    # round. Not linearizable by design; used to show the checkers catch stale reads.
    serializable_reads: bool = False

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise WorkloadError(f"unknown workload {self.kind!r} (one of {', '.join(KINDS)})")
        if self.keys < 1 or self.concurrency < 1 or self.max_ops < 1:
            raise WorkloadError("keys, concurrency and max_ops must be >= 1")
        if self.duration <= 0 or self.timeout <= 0 or self.rate < 0:
            raise WorkloadError("duration and timeout must be > 0, rate >= 0")
        if not (0 <= self.read_ratio <= 1 and 0 <= self.cas_ratio <= 1):
            raise WorkloadError("read_ratio and cas_ratio must be within [0, 1]")

    def key_names(self, prefix: str) -> list[str]:
        return [f"{prefix}{i}" for i in range(self.keys)]


def require_loopback(endpoints: Sequence[str]) -> list[str]:
    """Chaos traffic goes only to local members: refuse anything that is not loopback."""
    if not endpoints:
        raise WorkloadError("no endpoints")
    out = []
    for ep in endpoints:
        url = ep if "://" in ep else f"http://{ep}"
        host = urlsplit(url).hostname or ""
        try:
            ok = host == "localhost" or ipaddress.ip_address(host).is_loopback
        except ValueError:
            ok = False
        if not ok:
            raise WorkloadError(f"{ep}: not a loopback endpoint; chaos only targets local "
                                "clusters")
        out.append(url)
    return out


def encode_list(xs: Sequence[int]) -> str:
    return ",".join(str(x) for x in xs)


def decode_list(raw: bytes) -> list[int] | str:
    """The list stored at a key; a value that does not parse is returned raw (a corruption
    the append checker reports, rather than an exception that would hide it)."""
    text = raw.decode("utf-8", "replace")
    if not text:
        return []
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        return text


def classify(err: BaseException, *, write: bool) -> str:
    """fail (surely not applied) or info (unknown) for a request that raised ``err``."""
    if not write:
        return FAIL  # a read changes nothing: if it did not answer, it constrains nothing
    if isinstance(err, IndeterminateError):
        return INFO
    if isinstance(err, Unavailable | NoLeader | NotLeader):
        return FAIL  # never reached a member, or refused before proposing
    if isinstance(err, Timeout):
        return FAIL  # the transport raises it for writes only before sending
    if isinstance(err, EtcdError) and 400 <= err.http_status < 500:
        return FAIL  # a request the member rejected as invalid
    return INFO  # anything else: be conservative, the write may have applied


@dataclass(slots=True)
class _Shared:
    cfg: WorkloadConfig
    rng: random.Random
    keys: list[str]
    history: History
    deadline: float
    started: int = 0
    next_value: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    next_slot: float = 0.0

    def take(self) -> bool:
        """Claim the right to start one more op (bounded by count, time, stop)."""
        if self.stop.is_set() or self.started >= self.cfg.max_ops \
                or time.monotonic() >= self.deadline:
            return False
        self.started += 1
        return True

    def fresh_value(self) -> int:
        self.next_value += 1
        return self.next_value


class Workload:
    """Run with `await w.run(endpoints)`; then `await w.final_reads(endpoints)` after healing."""

    def __init__(self, cfg: WorkloadConfig, *, seed: int = 0,
                 history: History | None = None) -> None:
        self.cfg = cfg
        self.seed = seed
        self.prefix = cfg.prefix or f"chaos/{secrets.token_hex(3)}/"
        self.keys = cfg.key_names(self.prefix)
        self.history = history if history is not None else History()
        self._shared: _Shared | None = None

    def stop(self) -> None:
        if self._shared is not None:
            self._shared.stop.set()

    async def run(self, endpoints: Sequence[str]) -> int:
        """Run until duration, max_ops or stop(); returns the number of ops started."""
        eps = require_loopback(endpoints)
        sh = _Shared(self.cfg, random.Random(self.seed), self.keys, self.history,
                     time.monotonic() + self.cfg.duration)
        self._shared = sh
        n = self.cfg.concurrency
        clients = [Client(eps[i % len(eps):] + eps[:i % len(eps)], timeout=self.cfg.timeout,
                          connect_timeout=min(0.5, self.cfg.timeout)) for i in range(n)]
        try:
            await asyncio.gather(*(self._worker(sh, i, clients[i]) for i in range(n)))
        finally:
            for c in clients:
                await c.close()
        return sh.started

    async def _pace(self, sh: _Shared) -> None:
        if self.cfg.rate <= 0:
            return
        now = time.monotonic()
        slot = max(sh.next_slot, now)
        sh.next_slot = slot + 1.0 / self.cfg.rate
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _worker(self, sh: _Shared, worker: int, client: Client) -> None:
        process = worker
        rng = random.Random(sh.rng.random())  # per worker, derived from the seed
        while True:
            await self._pace(sh)
            if not sh.take():
                return
            f, key, val = self._generate(rng, sh)
            sh.history.invoke(process, f, key, val, time.monotonic_ns())
            outcome, result, error = await self._execute(client, f, key, val)
            sh.history.complete(process, outcome, f, key, result, time.monotonic_ns(), error)
            if outcome == INFO:
                process += self.cfg.concurrency  # the old op may still be in flight
            elif outcome == FAIL and f != "read":
                await asyncio.sleep(0.02)  # don't spin while the cluster has no leader

    def _generate(self, rng: random.Random, sh: _Shared) -> tuple[str, str, Any]:
        key = rng.choice(sh.keys)
        if rng.random() < self.cfg.read_ratio:
            return "read", key, None
        if self.cfg.kind == "append":
            return "append", key, sh.fresh_value()
        if rng.random() < self.cfg.cas_ratio:
            old = str(rng.randint(max(1, sh.next_value - 4), max(1, sh.next_value)))
            return "cas", key, [old, str(sh.fresh_value())]
        return "write", key, str(sh.fresh_value())

    async def _execute(self, c: Client, f: str, key: str, val: Any, *,
                       linearizable: bool = False) -> tuple[str, Any, str]:
        write = f != "read"
        try:
            if f == "read":
                serializable = self.cfg.serializable_reads and not linearizable
                kv = await c.get_one(key, serializable=serializable)
                if self.cfg.kind == "append":
                    return OK, (decode_list(kv.value) if kv else []), ""
                return OK, (kv.value.decode("utf-8", "replace") if kv else None), ""
            if f == "write":
                await c.put(key, val)
                return OK, None, ""
            if f == "cas":
                r = await c.commit(Txn().when(value(key) == val[0]).then(put(key, val[1]))
                                   .otherwise(get(key)))
                if r.succeeded:
                    return OK, True, ""
                kvs = r.responses[0].kvs if r.responses else ()  # type: ignore[union-attr]
                return OK, {"current": kvs[0].value.decode("utf-8", "replace") if kvs
                            else None}, ""
            if f == "append":
                return await self._append(c, key, val)
        except ClusterError as e:
            return classify(e, write=write), None, f"{type(e).__name__}: {e}"
        except (TimeoutError, OSError) as e:  # should not escape cluster/, be safe
            return classify(e, write=write), None, f"{type(e).__name__}: {e}"
        raise WorkloadError(f"unknown op {f!r}")

    async def _append(self, c: Client, key: str, element: int) -> tuple[str, Any, str]:
        """Read-modify-write in one txn per attempt; a lost compare is retried (it applied
        nothing), up to a few times, then the op fails."""
        kv = await c.get_one(key)
        cur, rev = (decode_list(kv.value), kv.mod_revision) if kv else ([], 0)
        for _ in range(8):
            if isinstance(cur, str):
                return FAIL, None, f"stored list is not decodable: {cur[:80]!r}"
            t = Txn().when(mod_revision(key) == rev) \
                .then(put(key, encode_list([*cur, element]))).otherwise(get(key))
            r = await c.commit(t)
            if r.succeeded:
                return OK, None, ""
            now = r.responses[0].kvs if r.responses else ()  # type: ignore[union-attr]
            cur, rev = (decode_list(now[0].value), now[0].mod_revision) if now else ([], 0)
        return FAIL, None, "lost the compare 8 times"

    async def final_reads(self, endpoints: Sequence[str], *, attempts: int = 20) -> \
            dict[str, Any]:
        """Linearizable read of every key after healing, recorded as process -1's ops."""
        eps = require_loopback(endpoints)
        out: dict[str, Any] = {}
        async with Client(eps, timeout=max(self.cfg.timeout, 3.0)) as c:
            for key in self.keys:
                for i in range(attempts):
                    self.history.invoke(-1, "read", key, None, time.monotonic_ns())
                    outcome, result, err = await self._execute(c, "read", key, None,
                                                               linearizable=True)
                    self.history.complete(-1, outcome, "read", key, result,
                                          time.monotonic_ns(), err)
                    if outcome == OK:
                        out[key] = result
                        break
                    await asyncio.sleep(min(0.1 * (i + 1), 1.0))
        return out
