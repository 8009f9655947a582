"""The verdict every checker returns, so reports can treat them alike."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VALID, INVALID, UNKNOWN = "valid", "invalid", "unknown"


@dataclass(slots=True, frozen=True)
class CheckResult:
    """``verdict`` is valid, invalid or unknown (the checker ran out of budget or data).

    ``anomalies`` holds a few concrete, JSON-able witnesses of an invalid verdict (the ops
    involved), enough for a human to start from; never the whole history.
    """

    checker: str
    verdict: str
    summary: str
    anomalies: tuple[dict[str, Any], ...] = ()
    stats: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        assert self.verdict in (VALID, INVALID, UNKNOWN), self.verdict
        assert self.verdict != INVALID or self.anomalies, "an invalid verdict needs a witness"

    @property
    def valid(self) -> bool:
        return self.verdict == VALID

    def to_json(self) -> dict[str, Any]:
        return {"checker": self.checker, "verdict": self.verdict, "summary": self.summary,
                "anomalies": list(self.anomalies), "stats": self.stats}


def combine(results: list[CheckResult]) -> str:
    """Overall verdict: invalid if any is, else unknown if any is, else valid."""
    verdicts = {r.verdict for r in results}
    if INVALID in verdicts:
        return INVALID
    if UNKNOWN in verdicts or not results:
        return UNKNOWN
    return VALID
