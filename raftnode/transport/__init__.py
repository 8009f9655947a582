"""Peer transport: streams of opaque raft message batches and chunked snapshots."""

from raftnode.transport.frames import FrameError
from raftnode.transport.transport import (
    OnMessages,
    OnSnapshot,
    PeerRejected,
    PeerStatus,
    SnapshotResult,
    Transport,
    TransportOptions,
)

__all__ = ["FrameError", "OnMessages", "OnSnapshot", "PeerRejected", "PeerStatus",
           "SnapshotResult", "Transport", "TransportOptions"]
