"""Failpoint and metrics hooks, so the node can steer the WAL without wal importing it.

The node sets ``HOOKS.failpoint`` to a callable taking the failpoint name
(``walBeforeFsync``, ``walAfterFsync``, ``walWrite``); it may sleep, or raise OSError to
inject EIO/ENOSPC (which the WAL then treats exactly as a real failure: fatal). The
``on_fsync``/``on_write`` observers receive durations in seconds (and bytes written) and
are what ``etcd_disk_wal_fsync_duration_seconds`` and friends are fed from. A WAL uses the
module-wide ``HOOKS`` unless given its own ``Hooks`` (``w.hooks = Hooks(...)``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

WAL_BEFORE_FSYNC = "walBeforeFsync"
WAL_AFTER_FSYNC = "walAfterFsync"
WAL_WRITE = "walWrite"

#: etcd's ExponentialBuckets(0.001, 2, 14): 1 ms .. 8.192 s.
FSYNC_DURATION_BUCKETS: tuple[float, ...] = tuple(0.001 * 2**k for k in range(14))
WRITE_DURATION_BUCKETS = FSYNC_DURATION_BUCKETS


@dataclass(slots=True)
class Hooks:
    failpoint: Callable[[str], None] | None = None
    on_fsync: Callable[[float], None] | None = None  # seconds per fsync (file or directory)
    on_write: Callable[[float, int], None] | None = None  # seconds, bytes per save/flush


HOOKS = Hooks()
