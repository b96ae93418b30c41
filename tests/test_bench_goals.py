"""bench.goals' view across runs (`python -m bench.goals --runs`): each figure's value in every run, the
range of its ratio, and in how many runs it met its goal — a run that lacks a figure did not meet it."""

from __future__ import annotations

from dataclasses import asdict

import orjson

from bench.goals import Outcome, read_run, across_runs, across_runs_markdown


def outcome(figure: str, value: str, ratio: float | None, met: bool | None, load: str = "1.0",
            goal: str = "< 5 s") -> Outcome:
    return Outcome(figure, value, goal, ratio, met, load)


def test_three_runs_side_by_side(tmp_path):
    runs = [
        [outcome("failover", "4.2 s", 0.84, True, "6.5"), outcome("idle", "0.7 %", None, True, goal="reported")],
        [outcome("failover", "5.7 s", 1.14, False, "8.4"), outcome("idle", "0.5 %", None, True, goal="reported")],
        [outcome("failover", "3.3 s", 0.66, True, "8.7")],  # this run did not report "idle"
    ]
    for number, outcomes in enumerate(runs):
        (tmp_path / str(number)).mkdir()
        (tmp_path / str(number) / "goals.json").write_bytes(orjson.dumps([asdict(o) for o in outcomes]))
    rows = across_runs([read_run(tmp_path / str(number)) for number in range(3)])
    assert [r.figure for r in rows] == ["failover", "idle"]
    failover, idle = rows
    assert failover.values == ["4.2 s", "5.7 s", "3.3 s"] and failover.loads == ["6.5", "8.4", "8.7"]
    assert failover.verdict == "**missed** (met 2 of 3)"
    assert idle.values == ["0.7 %", "0.5 %", "-"] and idle.verdict == "reported"
    table = across_runs_markdown(rows).splitlines()
    assert table[0] == "| figure | runs 1 / 2 / 3 | goal | ratio range | met | load |"
    assert table[2] == "| failover | 4.2 s / 5.7 s / 3.3 s | < 5 s | 0.66-1.14 | **missed** (met 2 of 3) | 6.5 / 8.4 / 8.7 |"
    assert table[3] == "| idle | 0.7 % / 0.5 % / - | reported | - | reported | 1.0 / 1.0 / - |"


def test_a_goal_met_in_every_run_and_one_no_run_measured():
    rows = across_runs([[outcome("p50", "1 ms", 0.5, True), outcome("p99", "not measured", None, None)]] * 3)
    assert rows[0].verdict == "**met** 3 of 3"
    assert rows[1].verdict == "not measured"
