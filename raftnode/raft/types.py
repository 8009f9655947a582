"""Value types that flow in and out of the Raft core.

Entries and messages are on the hot path, so they are plain slotted dataclasses (not frozen:
frozen dataclasses pay an ``object.__setattr__`` per field). Treat them as immutable once built;
the core shares ``Entry`` objects between its log, messages and Readys without copying.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import IntEnum

from raftnode.raft.errors import InvalidConfChangeError

NONE = 0
"""Node id meaning "nobody" (no vote, no leader). Real node ids are >= 1."""


class EntryType(IntEnum):
    NORMAL = 0
    CONF_CHANGE = 1


class Role(IntEnum):
    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class MessageType(IntEnum):
    APP = 0
    APP_RESP = 1
    VOTE = 2
    VOTE_RESP = 3
    PRE_VOTE = 4
    PRE_VOTE_RESP = 5
    HEARTBEAT = 6
    HEARTBEAT_RESP = 7
    SNAP = 8
    TIMEOUT_NOW = 9
    READ_INDEX = 10
    READ_INDEX_RESP = 11
    PROP = 12
    TRANSFER_LEADER = 13


class ConfChangeType(IntEnum):
    ADD_NODE = 0
    ADD_LEARNER = 1
    REMOVE_NODE = 2
    PROMOTE_LEARNER = 3


@dataclass(slots=True)
class Entry:
    index: int
    term: int
    type: EntryType = EntryType.NORMAL
    data: bytes = b""


@dataclass(slots=True, frozen=True)
class HardState:
    """What must be durable before votes or acks leave the node (Figure 2's persistent state)."""

    term: int = 0
    vote: int = NONE
    commit: int = 0


@dataclass(slots=True, frozen=True)
class ConfState:
    voters: tuple[int, ...] = ()
    learners: tuple[int, ...] = ()


@dataclass(slots=True, frozen=True)
class SnapshotMeta:
    index: int = 0
    term: int = 0
    conf_state: ConfState = field(default_factory=ConfState)


#: A snapshot's data, opaque to the core. A member's own snapshots keep it as the buffers it
#: was packed in (tens of MB, never joined into one: the next snapshot reuses most of them);
#: a snapshot received from the leader is one bytes object.
SnapshotData = bytes | tuple[bytes | bytearray | memoryview, ...]


def snapshot_bytes(data: SnapshotData) -> bytes:
    """The data as one bytes object: no copy when it already is one."""
    return data if isinstance(data, bytes) else b"".join(data)


@dataclass(slots=True, frozen=True)
class Snapshot:
    meta: SnapshotMeta
    data: SnapshotData = b""


_CC_HEADER = struct.Struct("<BQ")


@dataclass(slots=True, frozen=True)
class ConfChange:
    """A single-server membership change; travels in the log as a CONF_CHANGE entry."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""

    def encode(self) -> bytes:
        return _CC_HEADER.pack(int(self.type), self.node_id) + self.context

    @staticmethod
    def decode(data: bytes) -> ConfChange:
        if len(data) < _CC_HEADER.size:
            raise InvalidConfChangeError(f"conf change entry too short ({len(data)} bytes)")
        kind, node_id = _CC_HEADER.unpack_from(data)
        try:
            cc_type = ConfChangeType(kind)
        except ValueError:
            raise InvalidConfChangeError(f"unknown conf change type {kind}") from None
        return ConfChange(cc_type, node_id, bytes(data[_CC_HEADER.size :]))


@dataclass(slots=True)
class Message:
    type: MessageType
    to: int
    frm: int
    term: int
    log_term: int = 0
    index: int = 0
    entries: tuple[Entry, ...] | list[Entry] = ()
    commit: int = 0
    reject: bool = False
    reject_hint: int = 0
    snapshot: Snapshot | None = None
    context: bytes = b""


@dataclass(slots=True, frozen=True)
class ReadState:
    """A linearizable read may be served once the local applied index reaches ``index``."""

    index: int
    request_ctx: bytes


@dataclass(slots=True, frozen=True)
class SoftState:
    leader: int
    role: Role


@dataclass(slots=True)
class Ready:
    """One batch of work for the driver; see docs/raft-core.md for the processing contract.

    ``messages`` may be sent at once; ``persist_messages`` only after this Ready's
    ``hard_state``/``entries``/``snapshot`` are durable. ``committed_entries`` never exceed the
    locally persisted index.
    """

    soft_state: SoftState | None
    hard_state: HardState | None
    entries: list[Entry]
    snapshot: Snapshot | None
    messages: list[Message]
    persist_messages: list[Message]
    committed_entries: list[Entry]
    read_states: list[ReadState]
    # bookkeeping for on_persisted(): the last log position this Ready covers
    persist_index: int = 0
    persist_term: int = 0

    @property
    def must_persist(self) -> bool:
        """True if the driver has something to make durable (and, in async mode, to report)."""
        return bool(self.entries) or self.hard_state is not None or self.snapshot is not None
