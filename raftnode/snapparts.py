"""A snapshot's bytes as a list of buffers: each layer frames the layer inside, never joins.

A member's snapshot is four msgpack layers deep (the ``.snap`` file, the conf state, the
state machine, the MVCC store) and tens of MB big once the store keeps a long history.
Packing each layer with ``msgpack.packb`` copied the whole thing once per layer, and in the
forked child every copy is fresh memory, i.e. page faults. Here a layer adds its head and
tail around the inner parts (what ``packb`` would write: the msgpack of a list is its
header, then its items back to back) and the file is written with ``writev``.

``region`` marks the parts that hold the store's packed versions: the next snapshot reuses
those bytes, and :meth:`SnapParts.region_offsets` says where they end up in the result.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgpack

from wal.pagewriter import Chunk
from wal.snap import bin_header

_packer = msgpack.Packer()


def array_header(n: int) -> bytes:
    """The msgpack header of an ``n``-item array, as ``msgpack.packb`` writes it."""
    return _packer.pack_array_header(n)


@dataclass(slots=True)
class SnapParts:
    """Buffers that concatenate to a snapshot; ``parts[region[0]:region[1]]`` are the
    store's packed versions (``chunks`` chunks of them, see ``raftnode/mvcc/store.py``)."""

    parts: list[Chunk]
    region: tuple[int, int] = (0, 0)
    chunks: int = 0

    def size(self) -> int:
        return sum(map(len, self.parts))

    def join(self) -> bytes:
        return b"".join(self.parts)

    def as_bin(self, head: bytes, tail: Sequence[bytes] = ()) -> SnapParts:
        """These parts as one msgpack bin item: ``head``, the bin header, the parts, ``tail``."""
        i, j = self.region
        return SnapParts([head + bin_header(self.size()), *self.parts, *tail],
                         (i + 1, j + 1), self.chunks)

    def region_offsets(self) -> tuple[int, int]:
        """Byte offsets of the region in the joined bytes."""
        i, j = self.region
        a = sum(map(len, self.parts[:i]))
        return a, a + sum(map(len, self.parts[i:j]))
