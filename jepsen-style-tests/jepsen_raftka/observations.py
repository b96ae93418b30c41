"""One pass over a history that indexes what was observed at each (partition, offset).

Sources are acknowledged sends (their ack names partition and offset) and the
records of ok polls and final polls. Checks of the value/offset family read
this index instead of walking the history again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .history import POLL_FUNCTIONS, History, HistoryError, Op, PollResult, Send

Position = tuple[str, int]  # (partition key, offset)


@dataclass(slots=True)
class Observations:
    # partition -> offset -> (first value observed there, the op that observed it)
    log: dict[str, dict[int, tuple[Any, Op]]] = field(default_factory=dict)
    # (partition, offset) -> {value: first op observing it}, only where values disagree
    conflicts: dict[Position, dict[Any, Op]] = field(default_factory=dict)
    # topic -> value -> (partition, offset, first op observing it there)
    position: dict[str, dict[Any, tuple[str, int, Op]]] = field(default_factory=dict)
    # (topic, value) -> {(partition, offset): first op}, only for values at 2+ positions
    duplicates: dict[tuple[str, Any], dict[Position, Op]] = field(default_factory=dict)
    # topic -> value -> (first poll reading it, partition, offset)
    first_read: dict[str, dict[Any, tuple[Op, str, int]]] = field(default_factory=dict)
    # partition -> (highest offset any poll read, the poll)
    max_read: dict[str, tuple[int, Op]] = field(default_factory=dict)
    # partition -> highest offset final polls read
    max_final_read: dict[str, tuple[int, Op]] = field(default_factory=dict)
    # topic -> value -> the send op (any completion type)
    writer: dict[str, dict[Any, Op]] = field(default_factory=dict)
    ok_sends: int = 0
    polled_records: int = 0

    def value_at(self, tp: str, offset: int) -> Any:
        entry = self.log.get(tp, {}).get(offset)
        return None if entry is None else entry[0]

    def max_known_offset(self, tp: str) -> int:
        offsets = self.log.get(tp)
        return max(offsets) if offsets else -1


def _observe(obs: Observations, tp: str, topic: str, offset: int, value: Any, op: Op) -> None:
    """Record one (partition, offset, value) observation; used for send acks."""
    at = obs.log.setdefault(tp, {})
    seen = at.get(offset)
    if seen is None:
        at[offset] = (value, op)
    elif seen[0] != value:
        obs.conflicts.setdefault((tp, offset), {seen[0]: seen[1]}).setdefault(value, op)
    positions = obs.position.setdefault(topic, {})
    where = positions.get(value)
    if where is None:
        positions[value] = (tp, offset, op)
    elif where[0] != tp or where[1] != offset:
        obs.duplicates.setdefault((topic, value), {(where[0], where[1]): where[2]}) \
            .setdefault((tp, offset), op)


def _observe_poll(obs: Observations, op: Op, poll: PollResult, final: bool) -> None:
    # The same work as _observe, inlined per record: this loop sees every record.
    for tp, pairs in poll.records.items():
        if not pairs:
            continue
        topic = tp.rpartition("/")[0]
        at = obs.log.setdefault(tp, {})
        positions = obs.position.setdefault(topic, {})
        readers = obs.first_read.setdefault(topic, {})
        top = -1
        for offset, value in pairs:
            if offset > top:
                top = offset
            seen = at.get(offset)
            if seen is None:
                at[offset] = (value, op)
            elif seen[0] != value:
                obs.conflicts.setdefault((tp, offset), {seen[0]: seen[1]}).setdefault(value, op)
            where = positions.get(value)
            if where is None:
                positions[value] = (tp, offset, op)
            elif where[0] != tp or where[1] != offset:
                obs.duplicates.setdefault((topic, value), {(where[0], where[1]): where[2]}) \
                    .setdefault((tp, offset), op)
            if value not in readers:
                readers[value] = (op, tp, offset)
        obs.polled_records += len(pairs)
        best = obs.max_read.get(tp)
        if best is None or top > best[0]:
            obs.max_read[tp] = (top, op)
        if final:
            best = obs.max_final_read.get(tp)
            if best is None or top > best[0]:
                obs.max_final_read[tp] = (top, op)


def observe(history: History) -> Observations:
    obs = Observations()
    for op in history.ops:
        body = op.body
        if op.f == "send":
            assert isinstance(body, Send)
            writers = obs.writer.setdefault(body.topic, {})
            if body.value in writers:
                raise HistoryError(
                    f"event {op.invoke_index}: value {body.value!r} was already sent to "
                    f"topic {body.topic!r} at event {writers[body.value].invoke_index}; "
                    "send values must be unique per topic")
            writers[body.value] = op
            if op.type == "ok":
                obs.ok_sends += 1
                _observe(obs, body.tp, body.topic, body.offset, body.value, op)
        elif op.f in POLL_FUNCTIONS and op.type == "ok":
            _observe_poll(obs, op, body, op.f == "final_poll")
    return obs
