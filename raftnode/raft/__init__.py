"""The Raft protocol as a pure, deterministic state machine (no I/O, no clock, no threads).

Drivers use ``RawNode`` (see docs/raft-core.md for the Ready/persistence contract).
"""

from raftnode.raft.config import Config
from raftnode.raft.core import Rng
from raftnode.raft.errors import (
    ConfChangePendingError,
    InvalidArgumentError,
    InvalidConfChangeError,
    InvariantViolation,
    NoLeaderError,
    NotLeaderError,
    ProposalDroppedError,
    RaftError,
    ReadIndexNotReadyError,
    TransferInProgressError,
    UncommittedSizeExceededError,
)
from raftnode.raft.progress import ProgressState
from raftnode.raft.rawnode import ProgressStatus, RawNode, Status
from raftnode.raft.types import (
    NONE,
    ConfChange,
    ConfChangeType,
    ConfState,
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    ReadState,
    Ready,
    Role,
    Snapshot,
    SnapshotMeta,
    SoftState,
)

__all__ = [
    "NONE", "ConfChange", "ConfChangePendingError", "ConfChangeType", "ConfState", "Config",
    "Entry", "EntryType", "HardState", "InvalidArgumentError", "InvalidConfChangeError",
    "InvariantViolation", "Message", "MessageType", "NoLeaderError", "NotLeaderError",
    "ProgressState", "ProgressStatus", "ProposalDroppedError", "RaftError", "RawNode",
    "ReadIndexNotReadyError", "ReadState", "Ready", "Rng", "Role", "Snapshot", "SnapshotMeta",
    "SoftState", "Status", "TransferInProgressError", "UncommittedSizeExceededError",
]
