"""LogConfig: the per-partition storage settings (Kafka topic config names and defaults).

Defaults follow Kafka: 1 GiB segments, an index entry every 4 KiB, batches up to 1 MiB,
7 days of time retention and unlimited size retention (-1 disables a retention limit).
LogConfig.from_topic_config reads the dotted Kafka names (segment.bytes, ...) from a topic's
config mapping and ignores settings that are not storage's business.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields

from .errors import InvalidConfigError

_MAX_SEGMENT_BYTES = (1 << 31) - 1  # positions are stored as uint32 in the index; stay in int32 like Kafka
_TOPIC_CONFIG_NAMES = {
    "segment.bytes": "segment_bytes",
    "index.interval.bytes": "index_interval_bytes",
    "max.message.bytes": "max_message_bytes",
    "retention.ms": "retention_ms",
    "retention.bytes": "retention_bytes",
}


@dataclass(frozen=True)
class LogConfig:
    """Storage settings of one partition log."""

    segment_bytes: int = 1 << 30
    index_interval_bytes: int = 4096
    max_message_bytes: int = 1048588
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = -1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int:
                raise InvalidConfigError(f"{f.name} must be an int, got {value!r}")
        if not 1 <= self.segment_bytes <= _MAX_SEGMENT_BYTES:
            raise InvalidConfigError(f"segment_bytes must be in [1, {_MAX_SEGMENT_BYTES}], got {self.segment_bytes}")
        if not 0 <= self.index_interval_bytes <= _MAX_SEGMENT_BYTES:
            raise InvalidConfigError(f"index_interval_bytes must be >= 0, got {self.index_interval_bytes}")
        if not 1 <= self.max_message_bytes <= _MAX_SEGMENT_BYTES:
            raise InvalidConfigError(f"max_message_bytes must be in [1, {_MAX_SEGMENT_BYTES}], got {self.max_message_bytes}")
        if self.retention_ms < -1:
            raise InvalidConfigError(f"retention_ms must be -1 (unlimited) or >= 0, got {self.retention_ms}")
        if self.retention_bytes < -1:
            raise InvalidConfigError(f"retention_bytes must be -1 (unlimited) or >= 0, got {self.retention_bytes}")

    @classmethod
    def from_topic_config(cls, config: Mapping[str, str | int]) -> LogConfig:
        """Build from Kafka-style topic configs ({"segment.bytes": "1048576", ...}); other keys are ignored."""
        values = {}
        for name, attribute in _TOPIC_CONFIG_NAMES.items():
            if name in config:
                try:
                    values[attribute] = int(config[name])
                except (TypeError, ValueError) as exc:
                    raise InvalidConfigError(f"{name} must be an integer, got {config[name]!r}") from exc
        return cls(**values)
