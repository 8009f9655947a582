"""The nemesis schedule: seeded, always heals, records failures, honours its limit."""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from typing import Any

from chaos.faults import Fault, FaultContext, FaultError, Nemesis
from cluster.client import Client


@dataclass(slots=True)
class Recording(Fault):
    """A fault that only records what the nemesis asked of it."""

    name: str = "recording"
    calls: list[str] = field(default_factory=list)
    fail_inject: bool = False

    async def inject(self, ctx: FaultContext) -> dict[str, Any]:
        self.calls.append("inject")
        if self.fail_inject:
            raise FaultError("cannot")
        return {"n": len(self.calls)}

    async def heal(self, ctx: FaultContext) -> dict[str, Any]:
        self.calls.append("heal")
        return {}


async def _run(faults: list[Fault], seed: int, seconds: float, **kw: Any) -> Nemesis:
    async with Client(["http://127.0.0.1:9"]) as c:  # never used by these faults
        ctx = FaultContext(control=None, client=c, rng=random.Random(seed))  # type: ignore[arg-type]
        nem = Nemesis(ctx, faults, **kw)
        stop = asyncio.Event()
        task = asyncio.create_task(nem.run(stop))
        await asyncio.sleep(seconds)
        stop.set()
        await task
        return nem


async def test_every_injection_is_healed_even_when_stopped_mid_fault() -> None:
    f = Recording()
    nem = await _run([f], 1, 0.35, quiet=(0.01, 0.02), hold=(10.0, 10.0))
    assert f.calls == ["inject", "heal"]
    assert [e.phase for e in nem.log] == ["inject", "heal"]


async def test_failed_injection_is_recorded_and_undone() -> None:
    bad = Recording(name="bad", fail_inject=True)
    nem = await _run([bad], 2, 0.1, quiet=(0.01, 0.02), hold=(0.01, 0.02), limit=1)
    assert bad.calls == ["inject", "heal"]
    assert [(e.fault, e.phase) for e in nem.log] == [("bad", "error"), ("bad", "heal")]
    assert "FaultError: cannot" in nem.log[0].detail["error"]


async def test_limit_caps_the_number_of_faults() -> None:
    f = Recording()
    await _run([f], 3, 0.3, quiet=(0.01, 0.01), hold=(0.01, 0.01), limit=2)
    assert f.calls == ["inject", "heal"] * 2


async def test_same_seed_same_choice_of_faults() -> None:
    def choices(seed: int) -> list[str]:
        a, b = Recording(name="a"), Recording(name="b")
        nem = asyncio.run(_run([a, b], seed, 0.3, quiet=(0.0, 0.005), hold=(0.0, 0.005),
                               limit=12))
        return [e.fault for e in nem.log if e.phase == "inject"]

    assert await asyncio.to_thread(choices, 7) == await asyncio.to_thread(choices, 7)
    assert await asyncio.to_thread(choices, 7) != await asyncio.to_thread(choices, 8)
