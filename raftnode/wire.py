"""Bytes on the peer wire: raft messages and forwarded proposals, as msgpack.

A payload is ``[kind, ...]``; kind 0 is a raft message, kind 1 a batch of proposals a
follower forwards to the leader (etcd's MsgProp, done at the node layer because the core
refuses proposals without being leader). Snapshot data never travels inside a message: the
transport streams it separately and :func:`decode_message` re-attaches it.
"""

from __future__ import annotations

from typing import Any

import msgpack

from raftnode.raft.types import (
    ConfState,
    Entry,
    EntryType,
    Message,
    MessageType,
    Snapshot,
    SnapshotMeta,
)

KIND_MESSAGE = 0
KIND_PROPOSALS = 1

_ENTRY_TYPES = {int(t): t for t in EntryType}
_MSG_TYPES = {int(t): t for t in MessageType}


class WireError(ValueError):
    """A peer payload that does not decode: the sender is broken or not one of ours."""


def encode_message(m: Message) -> bytes:
    snap = None
    if m.snapshot is not None:
        meta = m.snapshot.meta
        snap = [meta.index, meta.term, list(meta.conf_state.voters),
                list(meta.conf_state.learners)]
    return msgpack.packb([KIND_MESSAGE, int(m.type), m.to, m.frm, m.term, m.log_term, m.index,
                          [(e.index, e.term, int(e.type), e.data) for e in m.entries],
                          m.commit, m.reject, m.reject_hint, snap, m.context])


def encode_proposals(datas: list[bytes]) -> bytes:
    return msgpack.packb([KIND_PROPOSALS, datas])


def decode(payload: bytes, snapshot_data: bytes | None = None) -> Message | list[bytes]:
    """A raft Message or a list of forwarded proposals; WireError on anything malformed."""
    try:
        obj: Any = msgpack.unpackb(payload, use_list=True)
        kind = obj[0]
        if kind == KIND_PROPOSALS:
            datas = obj[1]
            if not all(isinstance(d, bytes) for d in datas):
                raise WireError("proposal batch holds a non-bytes item")
            return list(datas)
        if kind != KIND_MESSAGE:
            raise WireError(f"unknown payload kind {kind!r}")
        (_, mtype, to, frm, term, log_term, index, ents, commit, reject, hint, snap,
         ctx) = obj
        entries = [Entry(i, t, _ENTRY_TYPES[ty], d) for i, t, ty, d in ents]
        snapshot = None
        if snap is not None:
            meta = SnapshotMeta(snap[0], snap[1], ConfState(tuple(snap[2]), tuple(snap[3])))
            snapshot = Snapshot(meta, snapshot_data or b"")
        return Message(_MSG_TYPES[mtype], to, frm, term, log_term, index, entries, commit,
                       bool(reject), hint, snapshot, ctx)
    except WireError:
        raise
    except (ValueError, TypeError, IndexError, KeyError, msgpack.UnpackException) as e:
        raise WireError(f"malformed peer payload ({len(payload)} bytes): {e}") from e
