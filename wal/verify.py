"""Read-only checks of a WAL directory: no locks, safe beside a running writer."""

from __future__ import annotations

import os

from wal.decoder import Decoder
from wal.errors import SnapshotNotFoundError, WALNotFoundError
from wal.records import HardState, SnapshotRecord
from wal.replay import replay
from wal.segment import check_sequence, read_wal_names, select_wal_files

_MAX_READ_ATTEMPTS = 3


def verify(
    dirpath: str | os.PathLike[str],
    snapshot: SnapshotRecord = SnapshotRecord(),  # noqa: B008 (immutable)
) -> HardState:
    """Check framing, the CRC chain, metadata and the snapshot record; return the hard state.

    A torn tail is tolerated (a live writer may be mid-write); corruption, conflicting
    metadata, a sequence gap, or a missing/mismatched snapshot raise their WALError.
    """
    d = os.fspath(dirpath)
    paths = [os.path.join(d, n) for n in select_wal_files(d, snapshot.index)]
    r = replay(Decoder(paths), snapshot, entries=False, tolerate_torn=True)
    if not r.matched:
        raise SnapshotNotFoundError(
            f"wal: snapshot not found in {d!r}: no snapshot record at index {snapshot.index}"
        )
    return r.state


def valid_snapshot_entries(dirpath: str | os.PathLike[str]) -> list[SnapshotRecord]:
    """Snapshot records of the whole log at or below the last committed index.

    A snapshot newer than the durable commit index may be orphaned by a crash and must not
    be loaded. Retries if a concurrent purge removes a file mid-scan.
    """
    d = os.fspath(dirpath)
    for attempt in range(_MAX_READ_ATTEMPTS):
        names = read_wal_names(d)
        if not names:
            raise WALNotFoundError(f"wal: no segment files in {d!r}")
        check_sequence(d, names)
        try:
            r = replay(
                Decoder([os.path.join(d, n) for n in names]),
                SnapshotRecord(),
                entries=False,
                snapshots=True,
                tolerate_torn=True,
            )
        except FileNotFoundError:
            if attempt + 1 == _MAX_READ_ATTEMPTS:
                raise
            continue
        return [s for s in r.snapshots if s.index <= r.state.commit]
    raise AssertionError("unreachable")
