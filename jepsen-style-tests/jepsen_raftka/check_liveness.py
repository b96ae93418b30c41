"""Liveness after heals, availability while a disk is full, and non-vacuity of a run.

Liveness. For every ``heal`` nemesis marker H: some send invoked at or after H
must be acknowledged by H + ``send_recovery_s`` (a heal whose recovery window
is cut short by the next ``start-*`` fault is skipped). After the last heal,
the final polls must, for every partition, read up to the highest offset known
anywhere in the history by H + ``final_poll_convergence_s``. What cannot be
decided (no heal marker, no sends attempted after a heal, no final polls) is
returned as a reason for an ``unknown`` verdict, never as a pass.

Availability under a full disk. A broker whose disk is full must hand its
leaderships to replicas that can write, so during a ``disk-full`` fault window
(a minority of brokers) every partition keeps taking writes: once
``storage_fault_grace_s`` have passed since the window opened, each send key
(one key per partition) attempted at least ``MIN_ATTEMPTS`` times in the rest
of the window must have an acknowledged send there (``disk-full-unavailable``).
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from .anomaly import Anomaly
from .history import History, Op
from .observations import Observations

NS = 1_000_000_000
EVIDENCE_OPS = 5  # how many failed attempts a liveness anomaly lists
MIN_ATTEMPTS = 5  # sends of one key in a disk-full window before its unavailability counts
DISK_FULL = "disk-full"


@dataclass(frozen=True, slots=True)
class LivenessLimits:
    send_recovery_s: float = 30.0
    final_poll_convergence_s: float = 60.0
    storage_fault_grace_s: float = 6.0  # hand-over of leaderships off a full disk, with room for a slow host


def _seconds(history: History, t: int) -> float:
    return round((t - history.start_time) / NS, 3)


def _send_recovery(history: History, sends: list[Op], invokes: list[int], heal: int,
                   limit_s: float, unknown: list[str]) -> list[Anomaly]:
    """``sends`` are all send ops sorted by invoke time, ``invokes`` their invoke times."""
    deadline = heal + int(limit_s * NS)
    if any(heal < e.time < deadline and e.f.startswith("start-") for e in history.nemesis):
        return []
    attempts = sends[bisect.bisect_left(invokes, heal):bisect.bisect_right(invokes, deadline)]
    if any(op.type == "ok" and op.complete_time <= deadline for op in attempts):
        return []
    at = _seconds(history, heal)
    if not attempts:
        unknown.append(f"no send was attempted within {limit_s:g} s after the heal at {at} s")
        return []
    return [Anomaly("liveness",
                    {"kind": "sends-not-recovered", "heal_at_s": at, "limit_s": limit_s,
                     "attempts": len(attempts)},
                    tuple(attempts[:EVIDENCE_OPS]))]


def _final_poll_convergence(history: History, obs: Observations, heal: int, limit_s: float,
                            unknown: list[str]) -> list[Anomaly]:
    final_polls = sorted((op for op in history.ops if op.f == "final_poll" and op.type == "ok"),
                         key=lambda op: op.complete_time)
    if not final_polls:
        unknown.append("no ok final_poll: convergence after the heal not checked")
        return []
    targets = {tp: obs.max_known_offset(tp) for tp in obs.log}
    reached: dict[str, tuple[int, Op]] = {}
    converged_at: dict[str, Op] = {}
    for op in final_polls:
        for tp, pairs in op.body.records.items():
            if pairs and tp not in converged_at:
                top = max(o for o, _ in pairs)
                if top > reached.get(tp, (-1, op))[0]:
                    reached[tp] = (top, op)
                if top >= targets.get(tp, -1):
                    converged_at[tp] = op
    deadline = heal + int(limit_s * NS)
    found = []
    for tp, target in sorted(targets.items()):
        op = converged_at.get(tp)
        if op is None:
            best = reached.get(tp)
            found.append(Anomaly("liveness",
                                 {"kind": "final-polls-not-converged", "partition": tp,
                                  "target_offset": target,
                                  "reached_offset": -1 if best is None else best[0]},
                                 () if best is None else (best[1],)))
        elif op.complete_time > deadline:
            found.append(Anomaly("liveness",
                                 {"kind": "final-polls-slow", "partition": tp,
                                  "seconds_after_heal": round((op.complete_time - heal) / NS, 3),
                                  "limit_s": limit_s},
                                 (op,)))
    return found


def liveness(history: History, obs: Observations, limits: LivenessLimits,
             unknown: list[str]) -> list[Anomaly]:
    heals = sorted(history.heal_times)
    if not heals:
        unknown.append("no heal marker in the history: liveness not checked")
        return []
    sends = sorted((op for op in history.ops if op.f == "send"), key=lambda op: op.invoke_time)
    invokes = [op.invoke_time for op in sends]
    found = []
    for heal in heals:
        found.extend(_send_recovery(history, sends, invokes, heal, limits.send_recovery_s,
                                    unknown))
    found.extend(_final_poll_convergence(history, obs, heals[-1],
                                         limits.final_poll_convergence_s, unknown))
    return found


def disk_full_availability(history: History, limits: LivenessLimits) -> list[Anomaly]:
    """Keys whose sends all failed or timed out during a disk-full window, after the grace period."""
    found = []
    sends = [op for op in history.ops if op.f == "send"]
    for window in history.fault_windows():
        if window.name != DISK_FULL or window.end is None:
            continue
        begin = window.start + int(limits.storage_fault_grace_s * NS)
        attempts: dict[object, list[Op]] = {}
        for op in sends:
            if begin <= op.invoke_time and op.end_time <= window.end:
                attempts.setdefault((op.body.topic, op.body.key), []).append(op)
        for (topic, key), ops in sorted(attempts.items(), key=lambda item: str(item[0])):
            if len(ops) >= MIN_ATTEMPTS and not any(op.type == "ok" for op in ops):
                found.append(Anomaly("disk-full-unavailable",
                                     {"topic": topic, "key": key, "attempts": len(ops),
                                      "window_s": [_seconds(history, window.start), _seconds(history, window.end)],
                                      "grace_s": limits.storage_fault_grace_s, "fault": window.value},
                                     tuple(ops[:EVIDENCE_OPS])))
    return found


def vacuity(obs: Observations, min_ok_sends: int, min_polled_records: int) -> list[Anomaly]:
    """A run that did too little proves nothing: it is invalid, not green."""
    if obs.ok_sends >= min_ok_sends and obs.polled_records >= min_polled_records:
        return []
    return [Anomaly("vacuous", {"ok_sends": obs.ok_sends, "min_ok_sends": min_ok_sends,
                                "polled_records": obs.polled_records,
                                "min_polled_records": min_polled_records})]
