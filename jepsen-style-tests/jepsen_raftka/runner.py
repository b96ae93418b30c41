"""One jepsen-style run end to end: cluster, brokers, topic, workload under a nemesis
schedule, heal, final polls, the brokers' evidence, the checker; files in one run directory.

Phases of ``run(spec, out_root)``:

1. hosts (netns, else loopback: cluster.py) and brokers (``--bug`` sets the
   canary); the topic (``spec.partitions`` partitions, replication factor
   min(3, nodes)) and a leader for each of its partitions;
2. the workload (workload.py) for ``time_limit_s`` while the schedule
   alternates quiet and fault windows, then heals everything (``heal``);
3. the workload goes on until a send invoked after the heal is acknowledged
   (at most ``recovery_timeout_s``) and ``settle_s`` more, then stops;
4. final polls read every partition from offset 0 to its end;
5. wait until every partition group's members are the replicas that run (a broker
   back from a disk loss has replaced its old replica), each applied all its leader
   holds, and nothing changes any more (a produce that timed out may still commit
   late: raft_state.py), freeze the brokers (SIGSTOP
   all, then kill -9: a graceful stop hands leadership over, which can commit
   such a late entry on some replicas only) and read their partition logs (the
   storage writes straight into the page cache: a killed broker's log holds all
   it applied) and leader announcements (collect.py);
6. merge the histories, check, write the report and plots.

Run directory ``<out_root>/<stamp>-<label>/``: history.jsonl, report.json,
report.txt, latency.png, throughput.png, replicas.json, leaders.jsonl,
run.json (spec, cluster mode, timings, phase results), nodes/n<i>/broker.log
(and data/, only with keep_data), workload/ (config, worker logs).
"""

from __future__ import annotations

import contextlib
import random
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from raftka.client.partitioner import partition_for_key

from . import raft_state, scenarios
from .api import BrokerApi, NoAnswer, NotDelivered
from .check_cluster import ReplicaLogs
from .checker import check
from .client import ClientSettings
from .cluster import detect_mode, open_cluster
from .collect import leader_observations, read_replicas, topic_names, wait_replicas_converged
from .diskspace import SmallDisks
from .final_poll import final_polls
from .history import HistoryRecorder, load_history
from .loopback import UnsupportedFault
from .nemesis import NemesisContext
from .plots import write_plots
from .processes import Brokers
from .report import INVALID, VALID, Report
from .schedule import Schedule
from .security import RunTls, hosts_of
from .topology import CLIENT
from .workload import Workload, WorkloadConfig, merge_histories

TOPIC = "jepsen"
GROUP = "jepsen-group"  # assign-mode consumers commit here (no members)
SUBSCRIBE_GROUP = "jepsen-subscribers"
ROUTE_NOT_FOUND = 40400


class HarnessError(RuntimeError):
    """The run could not be carried out (setup failed); says nothing about the system under test."""


@dataclass(frozen=True)
class RunSpec:
    nodes: int = 3
    nemeses: tuple[str, ...] = ("partition",)
    time_limit_s: float = 60.0
    rate: float = 200.0
    concurrency: int = 32
    processes: int = 4
    partitions: int = 4
    bug: str | None = None
    seed: int = 0
    fault_s: float = 10.0
    heal_s: float = 10.0
    producer: str = "plain"
    resend_probability: float = 0.0
    random_broker_fraction: float = 0.25
    protocol: str = "http"  # how the workload's clients talk to the brokers: "http", or "kafka" (confluent-kafka)
    mode: str = "auto"
    keep_data: bool = False
    recovery_timeout_s: float = 30.0
    settle_s: float = 2.0
    final_poll_timeout_s: float = 45.0
    convergence_timeout_s: float = 60.0
    windows: int | None = None  # fault windows at most (None: as many as the time limit holds)
    bootstrap_nodes: int | None = None  # nodes 1..N bootstrap the cluster, the others join later (None: all)
    tls: bool = False  # brokers with TLS and authentication; clients over https as the run's admin

    def __post_init__(self) -> None:
        scenarios.check_names(self.nemeses)
        if self.nodes < 1 or self.partitions < 1 or self.time_limit_s <= 0:
            raise ValueError("a run needs nodes >= 1, partitions >= 1 and a positive time limit")
        if self.bootstrap_nodes is not None and not 1 <= self.bootstrap_nodes <= self.nodes:
            raise ValueError(f"bootstrap_nodes must be from 1 to nodes ({self.nodes}), got {self.bootstrap_nodes}")
        if self.bug is not None and self.bug not in scenarios.CANARIES:
            raise ValueError(f"unknown canary {self.bug!r}; known: {', '.join(scenarios.CANARIES)}")

    @property
    def label(self) -> str:
        bug = f"-bug-{self.bug}" if self.bug else ""
        kafka = "-kafka" if self.protocol == "kafka" else ""
        grown = f"{self.bootstrap_nodes}to" if self.bootstrap_nodes not in (None, self.nodes) else ""
        return f"{grown}{self.nodes}n-{'+'.join(self.nemeses)}{kafka}{bug}{'-tls' if self.tls else ''}-s{self.seed}"

    @classmethod
    def for_canary(cls, bug: str, **overrides: Any) -> RunSpec:
        """The scenario that exposes canary ``bug`` (scenarios.CANARIES), with overrides."""
        c = scenarios.CANARIES[bug]
        base = cls(nemeses=c.nemeses, time_limit_s=c.time_limit_s, fault_s=c.fault_s, heal_s=c.heal_s,
                   producer=c.producer, resend_probability=c.resend_probability,
                   random_broker_fraction=c.random_broker_fraction, windows=c.windows, bug=bug,
                   **({"nodes": c.nodes} if c.nodes is not None else {}))
        return replace(base, **overrides)


@dataclass
class RunResult:
    spec: RunSpec
    run_dir: Path
    report: Report | None
    info: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # a harness failure: no verdict
    skipped: str | None = None  # the cluster mode or host cannot inject the scenario's faults: why

    @property
    def verdict(self) -> str:
        if self.skipped is not None:
            return "skipped"
        return "error" if self.report is None else self.report.verdict

    @property
    def expected(self) -> str:
        return INVALID if self.spec.bug else VALID

    @property
    def as_expected(self) -> bool:
        """Valid for a correct system; for a canary, invalid with an anomaly that proves it; or skipped."""
        if self.skipped is not None:
            return True
        if self.report is None or self.error is not None:
            return False
        if self.spec.bug:
            return (self.report.verdict == INVALID
                    and scenarios.detected(self.report.counts, scenarios.CANARIES[self.spec.bug]))
        return self.report.verdict == VALID

    def row(self) -> dict[str, Any]:
        stats = self.report.stats if self.report else {}
        ops = stats.get("ops", {})
        return {"scenario": self.spec.label, "nodes": self.spec.nodes, "mode": self.info.get("mode"),
                "sends": "/".join(str(ops.get(f"send:{t}", 0)) for t in ("ok", "fail", "info")),
                "polls_ok": ops.get("poll:ok", 0), "polled": stats.get("polled_records", 0),
                "anomalies": dict(self.report.counts) if self.report else {}, "verdict": self.verdict,
                "expected": self.expected, "as_expected": self.as_expected,
                "seconds": self.info.get("timings", {}).get("total_s"), "run_dir": str(self.run_dir),
                "error": self.error, "skipped": self.skipped}


# ----------------------------------------------------------------------- helpers


def keys_for(partitions: int) -> tuple[str, ...]:
    """One key per partition that the broker's partitioner (murmur2 of the key as stored: its
    JSON encoding) maps to that partition."""
    found: dict[int, str] = {}
    i = 0
    while len(found) < partitions:
        key = f"k{i}"
        found.setdefault(partition_for_key(orjson.dumps(key), partitions), key)
        i += 1
    return tuple(found[p] for p in range(partitions))


def _retry(what: str, timeout_s: float, attempt) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        result = attempt()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise HarnessError(f"{what}: no success within {timeout_s:g} s")
        time.sleep(0.2)


def create_topic(api: BrokerApi, spec: RunSpec, timeout_s: float = 30.0, nodes: tuple[int, ...] | None = None) -> None:
    """The workload's topic, answered once every partition has a leader as each of `nodes` (default: all) sees
    it."""
    body = {"name": TOPIC, "partitions": spec.partitions, "replication_factor": min(3, spec.nodes)}
    _retry("create the topic", timeout_s,
           lambda: api.first_answer("POST", "/topics", body, timeout_s=5.0, accept_status=(201, 409)))

    def all_led() -> bool | None:
        for node in api.nodes if nodes is None else nodes:
            try:
                reply = api.request(node, "GET", f"/topics/{TOPIC}/partitions", timeout_s=2.0)
            except (NotDelivered, NoAnswer):
                return None
            if (reply.status != 200 or not isinstance(reply.doc, list) or not reply.doc
                    or not all(isinstance(p, dict) and p.get("leader") for p in reply.doc)):
                return None
        return True

    _retry("elect a leader for every partition", timeout_s, all_led)


def groups_available(api: BrokerApi) -> bool:
    """Whether the brokers serve the consumer-group offset routes (``/groups/{g}/offsets``)."""
    reply = _retry("ask for group offsets", 10.0,
                   lambda: api.first_answer("GET", f"/groups/{GROUP}/offsets", timeout_s=5.0,
                                            accept_status=(200, 404, 503)))
    return not (reply.status == 404 and reply.error_code == ROUTE_NOT_FOUND)


def metadata_lookups(api: BrokerApi, partitions: int, rng: random.Random):
    """Callbacks naming the leader of a random partition and the metadata leader."""

    def metadata() -> dict:
        reply = api.first_answer("GET", "/metadata", timeout_s=1.0)
        if reply is None:
            raise HarnessError("no broker answered GET /metadata")
        return reply.doc

    def partition_leader() -> int | None:
        return metadata()["topics"][TOPIC]["partitions"][rng.randrange(partitions)]["leader"]

    def metadata_leader() -> int | None:
        return metadata()["metadata_leader"]

    return partition_leader, metadata_leader


def _faults_and_heal(spec: RunSpec, ctx: NemesisContext, chosen: list, info: dict[str, Any]) -> None:
    """The schedule of the chosen nemesis entries for the time limit, ending with the heal."""
    if chosen:
        schedule = Schedule(ctx, chosen, fault_s=spec.fault_s, heal_s=spec.heal_s, max_windows=spec.windows)
        info["heal"] = schedule.run(spec.time_limit_s)
        info["fault_windows"] = schedule.windows
        info["nemesis_errors"] = schedule.errors
    else:  # nothing to inject: the heal marker still starts the liveness clock
        time.sleep(spec.time_limit_s)
        ctx.brokers.wait_healthy(timeout_s=30.0)
        info["heal"] = {"healthy": True, "wait_s": 0.0}
        ctx.recorder.nemesis("heal", info["heal"])


def _write_json(path: Path, doc: Any) -> None:
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS))


# ----------------------------------------------------------------------- the run


def _new_run_dir(out_root: Path, spec: RunSpec) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out_root.mkdir(parents=True, exist_ok=True)
    for attempt in range(100):
        run_dir = out_root.resolve() / (f"{stamp}-{spec.label}" + (f"-{attempt}" if attempt else ""))
        try:
            run_dir.mkdir()
            return run_dir
        except FileExistsError:
            continue
    raise HarnessError(f"no free run directory name under {out_root}")


def run(spec: RunSpec, out_root: str | Path, log=print) -> RunResult:
    """Carry out one run; never raises for a harness failure (RunResult.error says it)."""
    run_dir = _new_run_dir(Path(out_root), spec)
    info: dict[str, Any] = {"spec": asdict(spec), "started": datetime.now(UTC).isoformat(timespec="seconds"),
                            "mode_detected": detect_mode()}
    result = RunResult(spec, run_dir, None, info)
    timings: dict[str, float] = {}
    info["timings"] = timings
    started = time.monotonic()
    try:
        replicas, leaders = _drive(spec, run_dir, info, timings, log)
        phase = time.monotonic()
        history = load_history(run_dir / "history.jsonl")
        _write_json(run_dir / "replicas.json", replicas)
        (run_dir / "leaders.jsonl").write_bytes(b"".join(orjson.dumps(o.to_json()) + b"\n" for o in leaders))
        result.report = check(history, replicas=replicas, leaders=leaders)
        result.report.write(run_dir)
        write_plots(history, run_dir)
        timings["check_s"] = round(time.monotonic() - phase, 3)
        if info["dead_workers"]:  # the report stands, but the workload was not what it should have been
            result.error = f"workload workers died: {'; '.join(info['dead_workers'])} (see workload/*.log)"
    except UnsupportedFault as exc:  # not a failure of the system under test, nor of the harness
        result.skipped = str(exc)
        log(f"run {spec.label}: skipped: {exc}")
    except Exception as exc:  # a harness failure: recorded, never mistaken for a verdict
        result.error = f"{type(exc).__name__}: {exc}"
        log(f"run {spec.label}: harness error: {result.error}")
    finally:
        timings["total_s"] = round(time.monotonic() - started, 3)
        info["verdict"], info["as_expected"], info["error"] = result.verdict, result.as_expected, result.error
        info["skipped"] = result.skipped
        _write_json(run_dir / "run.json", info)
    return result


def _drive(spec: RunSpec, run_dir: Path, info: dict[str, Any], timings: dict[str, float],
           log) -> tuple[ReplicaLogs, list]:
    """Phases 1-5; writes history.jsonl; returns (replica logs, leader observations)."""
    canary = scenarios.CANARIES.get(spec.bug) if spec.bug else None
    if canary is not None and canary.http_only and spec.protocol == "kafka":
        raise UnsupportedFault(f"canary {spec.bug} needs HTTP clients: {canary.http_only}")
    if not any(name in scenarios.SMALL_DISKS for name in spec.nemeses):
        return _drive_cluster(spec, run_dir, info, timings, log, None)
    # Small data-dir filesystems (disk-full): mounted before the brokers start, unmounted after the
    # evidence was read from them.
    with SmallDisks({n: Brokers.data_dir_in(run_dir, n) for n in range(1, spec.nodes + 1)}) as disks:
        return _drive_cluster(spec, run_dir, info, timings, log, disks)


def _drive_cluster(spec: RunSpec, run_dir: Path, info: dict[str, Any], timings: dict[str, float],
                   log, disks: SmallDisks | None) -> tuple[ReplicaLogs, list]:
    phase = time.monotonic()
    runner_history = run_dir / "history-runner.jsonl"
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(open_cluster(spec.nodes, mode=spec.mode))
        tls = RunTls(run_dir / "tls", hosts_of(cluster)) if spec.tls else None
        brokers = stack.enter_context(Brokers(cluster, run_dir, canary=spec.bug, clock_faults="clock" in spec.nemeses,
                                              bootstrap=range(1, (spec.bootstrap_nodes or spec.nodes) + 1),
                                              **(tls.broker_options() if tls else {})))
        recorder = stack.enter_context(HistoryRecorder(runner_history))
        info["mode"] = cluster.mode
        log(f"run {spec.label}: {cluster.mode} mode, run dir {run_dir}")
        brokers.start(brokers.bootstrap)  # the others join during the run (elastic.py), or at the heal
        brokers.wait_healthy(brokers.bootstrap, timeout_s=60.0)
        security = tls.api if tls else None
        api = BrokerApi({n: cluster.address(CLIENT, n, "http") for n in cluster.nodes}, random.Random(spec.seed + 1),
                        security)
        create_topic(api, spec, nodes=brokers.bootstrap)
        group = GROUP if groups_available(api) else None
        info["groups"] = group is not None
        if group is None and spec.bug and scenarios.CANARIES[spec.bug].needs_groups:
            raise HarnessError(f"canary {spec.bug} needs the consumer-group offset routes, which the brokers "
                               "do not serve")
        settings = ClientSettings(TOPIC, keys_for(spec.partitions), producer=spec.producer,
                                  resend_probability=spec.resend_probability, group=group,
                                  subscribe_group=SUBSCRIBE_GROUP if group and spec.protocol == "http" else None,
                                  random_broker_fraction=spec.random_broker_fraction, protocol=spec.protocol)
        kafka = {n: cluster.address(CLIENT, n, "kafka") for n in cluster.nodes} if spec.protocol == "kafka" else {}
        workload = Workload(WorkloadConfig(settings, api.addresses, spec.rate, spec.concurrency, spec.processes,
                                           seed=spec.seed, kafka_brokers=kafka, security=security),
                            run_dir, cluster.run_token)
        ctx = NemesisContext(cluster, brokers, recorder, random.Random(spec.seed), disks, security)
        partition_leader, metadata_leader = metadata_lookups(api, spec.partitions, random.Random(spec.seed + 2))
        chosen = scenarios.entries(spec.nemeses, ctx, partition_leader=partition_leader,
                                   metadata_leader=metadata_leader,
                                   view=lambda nodes: raft_state.group_states(api, nodes=nodes, every_broker=False),
                                   ready=lambda: raft_state.membership_settled(api), topic=TOPIC)
        timings["setup_s"] = round(time.monotonic() - phase, 3)
        phase = time.monotonic()
        workload.start()
        try:
            _faults_and_heal(spec, ctx, chosen, info)
            healed_at = time.monotonic_ns()
            info["recovered"] = workload.wait_for_ok_send(healed_at, spec.recovery_timeout_s)
            time.sleep(spec.settle_s)
        finally:
            workload.stop()
        info["dead_workers"] = workload.dead_workers()
        timings["workload_s"] = round(time.monotonic() - phase, 3)
        phase = time.monotonic()
        info["final_polls"] = final_polls(api, recorder, TOPIC, range(spec.partitions),
                                          deadline=time.monotonic() + spec.final_poll_timeout_s)
        info["convergence"] = wait_replicas_converged(api, spec.convergence_timeout_s)
        brokers.pause()  # freeze every broker at once, then kill -9: no replica moves on while others stop
        brokers.kill()
        timings["final_s"] = round(time.monotonic() - phase, 3)
    merge_histories([runner_history, *workload.history_paths], run_dir / "history.jsonl")
    data_dirs = {n: brokers.data_dir(n) for n in cluster.nodes}
    replicas = read_replicas(data_dirs, TOPIC)
    leaders = leader_observations({n: brokers.log_path(n) for n in cluster.nodes}, topic_names(data_dirs))
    runner_history.unlink()
    for path in workload.history_paths:
        path.unlink(missing_ok=True)
    if spec.keep_data and disks is not None:  # the small filesystems go away with their mounts
        for node in cluster.nodes:
            shutil.copytree(brokers.data_dir(node), brokers.node_dir(node) / "data-kept")
    if not spec.keep_data:
        for node in cluster.nodes:
            shutil.rmtree(brokers.data_dir(node), ignore_errors=True)
            brokers.ledger_path(node).unlink(missing_ok=True)
    return replicas, leaders
