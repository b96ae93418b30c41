"""Anomalies about which value sits where: inconsistent offsets, duplicates,
lost writes, aborted reads (G1a) and values nobody sent."""

from __future__ import annotations

from .anomaly import Anomaly
from .history import Send
from .observations import Observations


def inconsistent_offsets(obs: Observations) -> list[Anomaly]:
    """One offset of a partition observed with two or more values."""
    return [
        Anomaly("inconsistent-offsets",
                {"partition": tp, "offset": offset, "values": list(by_value)},
                tuple(by_value.values()))
        for (tp, offset), by_value in obs.conflicts.items()
    ]


def duplicates(obs: Observations) -> list[Anomaly]:
    """One value of a topic observed at two or more (partition, offset) positions."""
    return [
        Anomaly("duplicate",
                {"topic": topic, "value": value,
                 "positions": [[tp, offset] for tp, offset in by_position]},
                tuple(by_position.values()))
        for (topic, value), by_position in obs.duplicates.items()
    ]


def lost_writes(obs: Observations, has_final_polls: bool) -> list[Anomaly]:
    """Acknowledged sends that no poll ever read.

    ``below-max-read``: the ack's offset is at or below the highest offset some
    poll read in that partition (evidence: the send and that poll).
    ``never-read``: the final polls ran and still nobody read it (evidence: the
    send and the final poll that got furthest in the partition, if any).
    """
    found = []
    for topic, writers in obs.writer.items():
        readers = obs.first_read.get(topic, {})
        for value, op in writers.items():
            if op.type != "ok" or value in readers:
                continue
            send = op.body
            assert isinstance(send, Send)
            tp = send.tp
            best = obs.max_read.get(tp)
            details = {"partition": tp, "offset": send.offset, "value": value,
                       "max_read_offset": -1 if best is None else best[0]}
            if best is not None and send.offset <= best[0]:
                found.append(Anomaly("lost-write", {**details, "reason": "below-max-read"},
                                     (op, best[1])))
            elif has_final_polls:
                final = obs.max_final_read.get(tp)
                found.append(Anomaly("lost-write", {**details, "reason": "never-read"},
                                     (op,) if final is None else (op, final[1])))
    return found


def aborted_and_unexpected_reads(obs: Observations) -> list[Anomaly]:
    """G1a: a poll read a value whose send failed. unexpected-value: nobody sent it."""
    found = []
    for topic, readers in obs.first_read.items():
        writers = obs.writer.get(topic, {})
        for value, (reader, tp, offset) in readers.items():
            writer = writers.get(value)
            details = {"partition": tp, "offset": offset, "value": value}
            if writer is None:
                found.append(Anomaly("unexpected-value", details, (reader,)))
            elif writer.type == "fail":
                found.append(Anomaly("G1a", details, (writer, reader)))
    return found
