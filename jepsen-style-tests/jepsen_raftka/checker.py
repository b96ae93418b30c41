"""The history checker: a history (plus optional replica logs and leader
observations) in, a Report with a verdict and the anomalies out.

Verdict: ``invalid`` if any anomaly was found (a vacuous run is an anomaly too),
else ``unknown`` if some check could not decide (e.g. no heal marker, no final
polls), else ``valid``. Checks whose input was not given (replicas, leaders)
are listed as skipped and do not affect the verdict.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from . import check_cluster, check_commits, check_liveness, check_order, check_values
from .anomaly import Anomaly
from .check_cluster import LeaderObservation, ReplicaLogs
from .check_liveness import LivenessLimits
from .history import History
from .observations import Observations, observe
from .report import INVALID, UNKNOWN, VALID, Report


@dataclass(frozen=True, slots=True)
class CheckOptions:
    min_ok_sends: int = 100
    min_polled_records: int = 100
    liveness: LivenessLimits = field(default_factory=LivenessLimits)


def _stats(history: History, obs: Observations) -> dict[str, object]:
    ops = Counter(f"{op.f}:{op.type}" for op in history.ops)
    times = [e.time for e in history.events]
    return {
        "events": len(history.events),
        "ops": dict(sorted(ops.items())),
        "ok_sends": obs.ok_sends,
        "polled_records": obs.polled_records,
        "partitions": len(obs.log),
        "processes": len({op.process for op in history.ops}),
        "duration_s": round((max(times) - min(times)) / 1e9, 3) if times else 0.0,
        "fault_windows": len(history.fault_windows()),
        "heals": len(history.heal_times),
    }


def check(history: History, *, replicas: ReplicaLogs | None = None,
          leaders: Iterable[LeaderObservation] | None = None,
          options: CheckOptions | None = None) -> Report:
    options = options or CheckOptions()
    obs = observe(history)
    has_final_polls = any(op.f == "final_poll" and op.type == "ok" for op in history.ops)
    unknown: list[str] = []
    checks: dict[str, list[Anomaly]] = {
        "values": (check_values.inconsistent_offsets(obs) + check_values.duplicates(obs)
                   + check_values.lost_writes(obs, has_final_polls)
                   + check_values.aborted_and_unexpected_reads(obs)),
        "poll-order": (check_order.internal_poll_order(history, obs)
                       + check_order.poll_order(history, obs)),
        "send-order": (check_order.nonmonotonic_sends(history)
                       + check_order.realtime_send_order(history)),
        "committed-offsets": check_commits.committed_offset_regressions(history),
        "liveness": (check_liveness.liveness(history, obs, options.liveness, unknown)
                     + check_liveness.disk_full_availability(history, options.liveness)),
        "non-vacuity": check_liveness.vacuity(obs, options.min_ok_sends,
                                              options.min_polled_records),
    }
    states = {name: "checked" for name in checks}
    if replicas is None:
        states["replica-divergence"] = "skipped: no replica logs given"
    else:
        checks["replica-divergence"] = check_cluster.replica_divergence(replicas, obs)
        states["replica-divergence"] = f"checked ({len(replicas)} replicas)"
    if leaders is None:
        states["election-safety"] = "skipped: no leader observations given"
    else:
        leaders = list(leaders)
        checks["election-safety"] = check_cluster.election_safety(leaders)
        states["election-safety"] = f"checked ({len(leaders)} observations)"
    anomalies = [a for found in checks.values() for a in found]
    verdict = INVALID if anomalies else UNKNOWN if unknown else VALID
    return Report(verdict, anomalies, unknown, states, _stats(history, obs))
