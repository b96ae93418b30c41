"""The Anomaly record every check returns: a kind, the ops that prove it, and facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .history import Op

# Every kind a check can report, in report order.
KINDS = (
    "inconsistent-offsets",
    "duplicate",
    "lost-write",
    "G1a",
    "unexpected-value",
    "int-poll-skip",
    "int-nonmonotonic-poll",
    "poll-skip",
    "nonmonotonic-poll",
    "nonmonotonic-send",
    "realtime-send-order",
    "committed-offset-regression",
    "replica-divergence",
    "election-safety",
    "disk-full-unavailable",
    "liveness",
    "vacuous",
)


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str
    details: dict[str, Any]
    ops: tuple[Op, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown anomaly kind {self.kind!r}")

    def to_json(self) -> dict[str, Any]:
        return {"type": self.kind, **self.details, "ops": [op.ref() for op in self.ops]}

    def describe(self) -> str:
        facts = ", ".join(f"{k}={v!r}" for k, v in self.details.items())
        ops = "; ".join(op.label() for op in self.ops)
        return f"{self.kind}: {facts}" + (f"\n    ops: {ops}" if ops else "")
