"""Typed errors raised by the Raft core.

Proposal errors are expected in normal operation (the node layer retries or forwards);
``InvariantViolation`` means the core (or its driver) is broken and must crash loudly.
"""

from __future__ import annotations


class RaftError(Exception):
    """Base of every error the core raises."""


class ProposalDroppedError(RaftError):
    """The proposal was not appended; nothing was lost, the caller may retry."""


class NoLeaderError(ProposalDroppedError):
    """No leader is known: the caller should retry after an election."""


class NotLeaderError(ProposalDroppedError):
    """This member is a follower; ``leader_hint`` is the leader it knows of."""

    def __init__(self, leader_hint: int) -> None:
        super().__init__(f"not the leader (leader is {leader_hint})")
        self.leader_hint = leader_hint


class TransferInProgressError(ProposalDroppedError):
    """Proposals are refused while leadership is being transferred."""


class UncommittedSizeExceededError(ProposalDroppedError):
    """The leader's uncommitted log tail is over ``max_uncommitted_entries_size``."""


class ConfChangePendingError(ProposalDroppedError):
    """A membership change is still pending, or the leader has not committed in its term."""


class InvalidConfChangeError(RaftError):
    """The membership change does not apply to the current configuration."""


class ReadIndexNotReadyError(RaftError):
    """The leader has not committed an entry of its term yet, so it cannot answer reads."""


class InvalidArgumentError(RaftError):
    """A caller passed state that cannot be valid (bad restart state, bad compaction index)."""


class InvariantViolation(RaftError):
    """A Raft safety invariant broke (log matching, monotonic term/commit, one vote per term)."""
