"""check.py end to end (reports, plots, exit codes) and the PNG plots."""

import subprocess
import sys
from pathlib import Path

import orjson
from jepsen_histories import Builder, clean_run

from jepsen_raftka.cli import main
from jepsen_raftka.history import write_history
from jepsen_raftka.plots import write_plots

CHECK_PY = Path(__file__).resolve().parent.parent / "check.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run_check(*args):
    return subprocess.run([sys.executable, str(CHECK_PY), *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_plots_are_pngs(tmp_path):
    b = clean_run(20)
    b.nemesis("kill", {"node": 2})
    b.nemesis("start-pause")
    b.send(0, 1, type_="fail")
    b.send(0, 2, type_="info")
    paths = write_plots(b.history(), tmp_path)
    assert [p.name for p in paths] == ["latency.png", "throughput.png"]
    for p in paths:
        assert p.read_bytes().startswith(PNG_MAGIC) and p.stat().st_size > 5_000


def test_cli_writes_reports_and_plots_and_exits_by_verdict(tmp_path):
    history = tmp_path / "history.jsonl"
    write_history(history, clean_run(5).events)
    replicas = tmp_path / "replicas.json"
    log = [[i, 100 + i] for i in range(6)]
    replicas.write_bytes(orjson.dumps({"1": {"t/0": log}, "2": {"t/0": log[:-1] + [[5, 7]]}}))
    leaders = tmp_path / "leaders.jsonl"
    leaders.write_bytes(orjson.dumps({"group": "t/0", "term": 1, "leader": 1}) + b"\n")
    out = tmp_path / "out"

    result = run_check(history, "--out", out, "--min-ok-sends", 0, "--min-polled-records", 0,
                       "--leaders", leaders)
    assert result.returncode == 0, result.stderr
    assert "verdict: VALID" in result.stdout
    report = orjson.loads((out / "report.json").read_bytes())
    assert report["verdict"] == "valid" and report["checks"]["election-safety"].startswith(
        "checked")
    assert {p.name for p in out.iterdir()} == {"report.json", "report.txt", "latency.png",
                                              "throughput.png"}

    assert main([str(history), "--out", str(out), "--replicas", str(replicas),
                 "--no-plots"]) == 1
    report = orjson.loads((out / "report.json").read_bytes())
    assert report["counts"] == {"replica-divergence": 2, "vacuous": 1}
    assert "== replica-divergence (2; showing 2) ==" in (out / "report.txt").read_text()


def test_cli_unknown_and_bad_input(tmp_path, capsys):
    b = Builder()
    b.send(0, 1, offset=0)
    b.poll(1, {"t/0": [[0, 1]]})
    history = tmp_path / "history.jsonl"
    write_history(history, b.events)
    out = str(tmp_path / "out")
    code = main([str(history), "--out", out, "--min-ok-sends", "0",
                 "--min-polled-records", "0", "--no-plots"])
    assert code == 3 and "undecided:" in capsys.readouterr().out

    history.write_text('{"type": "ok", "process": 1, "f": "send", "time": 1}\n')
    assert main([str(history), "--out", out]) == 4
    assert "without a pending invoke" in capsys.readouterr().err
    assert main([str(tmp_path / "missing.jsonl"), "--out", out]) == 4
    replicas = tmp_path / "replicas.json"
    replicas.write_text("{not json")
    write_history(history, b.events)
    assert main([str(history), "--out", out, "--replicas", str(replicas)]) == 4
