"""Command line of the checker: ``python jepsen-style-tests/check.py HISTORY.jsonl
[--replicas replicas.json] [--leaders leaders.json] --out DIR``.

Writes report.json, report.txt, latency.png and throughput.png into DIR and
prints the text report. Exit status: 0 valid, 1 invalid, 3 unknown, 4 bad
input (2 stays argparse's usage error).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .check_cluster import load_leaders, load_replicas
from .check_liveness import LivenessLimits
from .checker import CheckOptions, check
from .history import load_history
from .plots import write_plots
from .report import INVALID, UNKNOWN, VALID

EXIT_CODES = {VALID: 0, INVALID: 1, UNKNOWN: 3}
EXIT_BAD_INPUT = 4


def _parser() -> argparse.ArgumentParser:
    defaults = CheckOptions()
    p = argparse.ArgumentParser(prog="check.py", description=__doc__.split("\n\n")[0])
    p.add_argument("history", type=Path, help="history, JSON lines")
    p.add_argument("--replicas", type=Path, help="replica logs: node -> partition -> records")
    p.add_argument("--leaders", type=Path, help="leader observations: JSON array or lines")
    p.add_argument("--out", type=Path, required=True, help="directory for reports and plots")
    p.add_argument("--min-ok-sends", type=int, default=defaults.min_ok_sends)
    p.add_argument("--min-polled-records", type=int, default=defaults.min_polled_records)
    p.add_argument("--send-recovery-s", type=float, default=defaults.liveness.send_recovery_s)
    p.add_argument("--final-poll-convergence-s", type=float,
                   default=defaults.liveness.final_poll_convergence_s)
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        history = load_history(args.history)
        replicas = load_replicas(args.replicas) if args.replicas else None
        leaders = load_leaders(args.leaders) if args.leaders else None
        options = CheckOptions(args.min_ok_sends, args.min_polled_records,
                               LivenessLimits(args.send_recovery_s, args.final_poll_convergence_s))
        report = check(history, replicas=replicas, leaders=leaders, options=options)
    except (OSError, ValueError) as exc:  # HistoryError and bad JSON are ValueErrors
        print(f"check.py: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    report.write(args.out)
    if not args.no_plots:
        write_plots(history, args.out)
    sys.stdout.write(report.to_text())
    return EXIT_CODES[report.verdict]
