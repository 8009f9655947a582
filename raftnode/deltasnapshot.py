"""An incremental snapshot packed by the member itself, in slices between the loop's other
work: no fork.

Forking a member with a big store costs 10-80 ms of page-table copying and then, while the
child lives, a copy-on-write fault on every page the loop writes: loop lags of 50-190 ms at
85 MB snapshots (docs/bench.md). An incremental snapshot needs no frozen image: the MVCC
history only grows between compactions, so the versions written since the last snapshot,
up to the snapshot's revision, can still be read after more writes land
(:meth:`raftnode.mvcc.store.MVCCStore.plan_delta`). The full snapshot (the first one, and
after a compaction or a restore) still forks (``raftnode/cowsnapshot.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from raftnode.mvcc.store import DeltaPlan, MVCCStore
from raftnode.snapparts import SnapParts

#: Keys collected per slice: ~0.1 ms of the loop each at 10 versions per key.
KEYS_PER_SLICE = 256


@dataclass(slots=True)
class DeltaSerialization:
    """The same face as :class:`raftnode.cowsnapshot.ForkedSerialization` to the driver."""

    plan: DeltaPlan
    store: MVCCStore
    wrap: Callable[[SnapParts], SnapParts]  # the layers above the store's parts

    async def result(self) -> SnapParts:
        """Collect in slices, yielding to the loop between them; the parts are never joined.
        Raises StaleSnapshotError if a compaction or restore got in between."""
        while not self.store.pack_delta(self.plan, KEYS_PER_SLICE):
            await asyncio.sleep(0)
        return self.wrap(self.store.finish_delta(self.plan))

    def cancel(self) -> None:
        """Nothing runs outside the loop."""
