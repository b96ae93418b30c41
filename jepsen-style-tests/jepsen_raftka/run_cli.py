"""Command line of the runner: ``python jepsen-style-tests/run.py [options]``.

One run::

    run.py --nodes 3 --nemesis partition,kill --time-limit 60 --rate 200 --seed 1 --out results/
    run.py --bug no-dedup            # a canary with the scenario that exposes it (scenarios.py)
    run.py --bug follower-reads --nemesis partition --time-limit 30
    run.py --nodes 5 --bootstrap-nodes 3 --nemesis membership --time-limit 120   # 3 -> 5 brokers, moves

Matrices (each run in its own directory under ``<out>/<stamp>-full|quick/``,
then a results table, also saved as results.md and summary.json there)::

    run.py --full     # every P0 nemesis x 3 and 5 nodes (>= 60 s each), membership 3 -> 5, every canary
    run.py --quick    # every P0 nemesis on 3 nodes for 20 s, then the fast canaries

Exit status: 0 when every run came out as expected (valid; for a canary run,
invalid with an anomaly that proves the canary), 1 otherwise (an invalid or
undecided run, an undetected canary, or a harness error), 2 usage errors.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import orjson

from . import scenarios
from .runner import RunResult, RunSpec, run

FULL_MIN_TIME_S = 60.0
QUICK_TIME_S = 20.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="run.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=f"nemeses: {', '.join(scenarios.NEMESES)}\n"
                                       f"canaries: {', '.join(scenarios.CANARIES)}")
    p.add_argument("--nodes", type=int, help="brokers (default 3; a canary's scenario may need more)")
    p.add_argument("--bootstrap-nodes", type=int,
                   help="brokers 1..N bootstrap the cluster, the others join during the run (default: all)")
    p.add_argument("--nemesis", help="comma-separated nemesis names (default: partition; "
                                     "with --bug: the canary's scenario)")
    p.add_argument("--time-limit", type=float, help="seconds of workload under faults (default 60)")
    p.add_argument("--rate", type=float, default=200.0, help="ops per second, all clients together")
    p.add_argument("--concurrency", type=int, default=32, help="client threads, all workers together")
    p.add_argument("--processes", type=int, default=4, help="worker processes the clients run in")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--fault-s", type=float, help="length of a fault window (default 10)")
    p.add_argument("--heal-s", type=float, help="quiet time between fault windows (default 10)")
    p.add_argument("--bug", choices=sorted(scenarios.CANARIES), help="switch on a canary (expects invalid)")
    p.add_argument("--idempotent", action="store_true", help="idempotent producer (POST .../partitions/p)")
    p.add_argument("--resend-probability", type=float,
                   help="idempotent producer: chance that an acked send is sent again (a client retry)")
    p.add_argument("--random-broker-fraction", type=float,
                   help="share of requests sent to a random broker instead of the known leader (default 0.25)")
    p.add_argument("--protocol", choices=("http", "kafka"), default="http",
                   help="how the workload's clients talk to the brokers: raftka's HTTP API, or the Kafka protocol "
                        "(confluent-kafka producers and assign-mode consumers)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mode", choices=("auto", "netns", "loopback"), default="auto")
    p.add_argument("--keep-data", action="store_true", help="keep the brokers' data directories")
    p.add_argument("--tls", action="store_true", help="brokers with TLS and authentication (a throwaway CA and "
                   "admin per run); clients over https as the admin")
    p.add_argument("--out", type=Path, default=Path("results"))
    matrix = p.add_mutually_exclusive_group()
    matrix.add_argument("--full", action="store_true", help="every P0 nemesis x 3 and 5 nodes, and every canary")
    matrix.add_argument("--quick", action="store_true", help="every P0 nemesis on 3 nodes briefly, fast canaries")
    return p


def _common(args: argparse.Namespace) -> dict:
    """Settings every run of one invocation shares."""
    return {"rate": args.rate, "concurrency": args.concurrency, "processes": args.processes,
            "partitions": args.partitions, "seed": args.seed, "mode": args.mode, "keep_data": args.keep_data,
            "protocol": args.protocol, "tls": args.tls}


def single_spec(args: argparse.Namespace) -> RunSpec:
    overrides = _common(args)
    for name, value in (("nodes", args.nodes if args.nodes is not None or args.bug else 3),
                        ("bootstrap_nodes", args.bootstrap_nodes),
                        ("nemeses", tuple(args.nemesis.split(",")) if args.nemesis else None),
                        ("time_limit_s", args.time_limit), ("fault_s", args.fault_s), ("heal_s", args.heal_s),
                        ("resend_probability", args.resend_probability),
                        ("random_broker_fraction", args.random_broker_fraction)):
        if value is not None:
            overrides[name] = value
    if args.idempotent or args.resend_probability:
        overrides["producer"] = "idempotent"
    if args.bug:
        return RunSpec.for_canary(args.bug, **overrides)
    return RunSpec(**overrides)


def matrix_specs(args: argparse.Namespace) -> list[RunSpec]:
    base = RunSpec(**_common(args))
    if args.full:
        limit = max(FULL_MIN_TIME_S, args.time_limit or FULL_MIN_TIME_S)
        specs = [replace(base, nodes=n, nemeses=(name,), time_limit_s=limit)
                 for n in (3, 5) for name in scenarios.P0]
        specs.append(replace(base, nodes=5, bootstrap_nodes=3, nemeses=("membership",), time_limit_s=2 * limit))
        bugs = list(scenarios.CANARIES)
    else:
        limit = args.time_limit or QUICK_TIME_S
        specs = [replace(base, nodes=3, nemeses=(name,), time_limit_s=limit, fault_s=5.0, heal_s=4.0)
                 for name in scenarios.P0]
        bugs = [bug for bug, c in scenarios.CANARIES.items() if c.fast]
    return specs + [RunSpec.for_canary(bug, **_common(args)) for bug in bugs]


def results_table(results: list[RunResult]) -> str:
    header = ("scenario", "mode", "sends ok/fail/info", "polls ok", "records read", "anomalies", "verdict",
              "expected", "as expected", "s")
    rows = []
    for r in results:
        row = r.row()
        anomalies = ", ".join(f"{k} {v}" for k, v in row["anomalies"].items()) or "-"
        rows.append((row["scenario"], str(row["mode"]), row["sends"], str(row["polls_ok"]), str(row["polled"]),
                     f"harness error: {r.error}"[:80] if r.error else f"skipped: {r.skipped}"[:80] if r.skipped
                     else anomalies, row["verdict"],
                     row["expected"], "yes" if row["as_expected"] else "NO", f"{row['seconds'] or 0:.0f}"))
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        specs = matrix_specs(args) if args.full or args.quick else [single_spec(args)]
    except ValueError as exc:
        print(f"run.py: {exc}", file=sys.stderr)
        return 2
    out = args.out
    if args.full or args.quick:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        out = args.out / f"{stamp}-{'full' if args.full else 'quick'}"
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for i, spec in enumerate(specs, 1):
        print(f"[{i}/{len(specs)}] {spec.label}: {spec.time_limit_s:g} s", flush=True)
        result = run(spec, out, log=lambda line: print(f"  {line}", flush=True))
        results.append(result)
        outcome = "as expected" if result.as_expected else "NOT as expected"
        print(f"  -> {result.verdict} ({outcome}) {result.row()['anomalies'] or ''} in {result.run_dir}",
              flush=True)
    table = results_table(results)
    if len(results) == 1 and results[0].report is not None:
        print(results[0].report.to_text(examples_per_kind=3))
    print(table)
    if len(results) > 1:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        (out / "results.md").write_text(f"# raftka jepsen-style results ({stamp})\n\n{table}\n")
        (out / "summary.json").write_bytes(orjson.dumps([r.row() for r in results], option=orjson.OPT_INDENT_2))
    return 0 if all(r.as_expected for r in results) else 1
