"""Configuration of one Raft member (etcd-io/raft's Config, trimmed to what we implement)."""

from __future__ import annotations

from dataclasses import dataclass

from raftnode.raft.errors import InvalidArgumentError


@dataclass(slots=True, frozen=True)
class Config:
    id: int
    election_tick: int = 10
    heartbeat_tick: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_size_per_msg: int = 1024 * 1024
    """Payload bytes per append message; at least one entry is always sent."""
    max_inflight_msgs: int = 256
    max_uncommitted_entries_size: int = 0
    """Payload bytes of the leader's uncommitted tail past which proposals are dropped; 0 = off."""
    async_storage_writes: bool = False
    """False: ``advance(ready)`` means the Ready is durable. True: only ``on_persisted`` says so."""

    def validate(self) -> None:
        if self.id <= 0:
            raise InvalidArgumentError("id must be >= 1 (0 means 'none')")
        if self.heartbeat_tick <= 0:
            raise InvalidArgumentError("heartbeat_tick must be > 0")
        if self.election_tick <= self.heartbeat_tick:
            raise InvalidArgumentError("election_tick must be greater than heartbeat_tick")
        if self.max_inflight_msgs <= 0:
            raise InvalidArgumentError("max_inflight_msgs must be > 0")
        if self.max_size_per_msg < 0 or self.max_uncommitted_entries_size < 0:
            raise InvalidArgumentError("size limits must be >= 0")
