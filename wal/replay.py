"""Folding a record stream into WAL state: the one place etcd's ReadAll rules live.

``read_all``, ``verify`` and ``valid_snapshot_entries`` all replay through here, so a
reader and a verifier can never disagree about what a log means.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from wal.decoder import Decoder
from wal.errors import (
    MetadataConflictError,
    SliceOutOfRangeError,
    SnapshotMismatchError,
    UnexpectedEOFError,
    WALError,
)
from wal.framing import ENTRY, METADATA, SNAPSHOT, STATE, unpack_snapshot, unpack_state
from wal.records import Entry, HardState, SnapshotRecord


@dataclass(slots=True)
class Replay:
    metadata: bytes | None = None
    state: HardState = field(default_factory=HardState)
    entries: list[Entry] = field(default_factory=list)
    snapshots: list[SnapshotRecord] = field(default_factory=list)
    matched: bool = False  # the snapshot the replay started at was found
    last_index: int = 0  # enti: the last entry index seen, raised by snapshot records
    torn: UnexpectedEOFError | None = None  # the torn tail that ended the read, if any


def replay(
    dec: Decoder,
    start: SnapshotRecord,
    *,
    entries: bool = True,
    snapshots: bool = False,
    tolerate_torn: bool = False,
) -> Replay:
    """Decode every record of ``dec`` and apply etcd's ReadAll semantics.

    Entries at or below ``start.index`` are skipped; an entry at an existing index
    replaces it and everything after it (raft's log overwrite).
    """
    r = Replay()
    ents = r.entries
    base = start.index
    base_term = -1  # term of the latest entry at exactly ``base`` (-1: none seen)
    unpackb = msgpack.unpackb
    off = 0
    try:
        for rtype, data, off in dec.records():
            if rtype == ENTRY:
                if not entries:
                    continue
                index, term, etype, payload = unpackb(data, use_list=False)
                if type(payload) is not bytes:
                    raise TypeError("entry data is not bytes")
                if index > base:
                    pos = index - base - 1
                    if pos > len(ents):
                        raise SliceOutOfRangeError(
                            f"wal: slice bounds out of range: entry {index} (term {term}) after "
                            f"{len(ents)} entries past snapshot {base}, in file {dec.path!r} "
                            f"at offset {off}"
                        )
                    if pos < len(ents):
                        del ents[pos:]
                    ents.append(Entry(index, term, payload, etype))
                else:
                    # An entry at or below the snapshot still supersedes everything after
                    # it: without this, a stale tail written before a leader overwrote the
                    # log comes back (etcd ReadAll skips it; etcd-io/etcd#22442).
                    ents.clear()
                    base_term = term if index == base else -1
                r.last_index = index
            elif rtype == STATE:
                r.state = unpack_state(data)
            elif rtype == METADATA:
                if r.metadata is not None and r.metadata != data:
                    raise MetadataConflictError(
                        f"wal: conflicting metadata found in file {dec.path!r} at offset {off}"
                    )
                r.metadata = data
            elif rtype == SNAPSHOT:
                snap = unpack_snapshot(data)
                if snap.index == base:
                    if snap.term != start.term:
                        raise SnapshotMismatchError(
                            f"wal: snapshot mismatch at index {base}: opened at term "
                            f"{start.term}, log has term {snap.term} in file {dec.path!r} "
                            f"at offset {off}"
                        )
                    r.matched = True
                if snap.index >= base:
                    # raft's restore: a snapshot whose index holds an entry of another term
                    # replaces the whole log (a matching one is a local compaction and
                    # keeps it). When the entry is unknown (purged), keep: losing entries
                    # is worse than keeping ones raft would overwrite anyway.
                    if snap.index == base:
                        known = base_term
                    elif snap.index - base <= len(ents):
                        known = ents[snap.index - base - 1].term
                    else:
                        known = -1
                    if known >= 0 and known != snap.term:
                        ents.clear()
                        base_term = -1
                if snapshots:
                    r.snapshots.append(snap)
                r.last_index = max(r.last_index, snap.index)
    except UnexpectedEOFError as err:
        if not tolerate_torn:
            raise
        r.torn = err
    except WALError:
        raise
    except (ValueError, TypeError, msgpack.UnpackException) as err:
        raise WALError(
            f"wal: malformed record payload in file {dec.path!r} at offset {off}: {err}"
        ) from None
    r.last_index = max(r.last_index, base)
    return r
