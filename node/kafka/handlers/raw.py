"""An answer that is already a framed Kafka response (relayed from the metadata leader)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RawResponse:
    framed: bytes


__all__ = ["RawResponse"]
