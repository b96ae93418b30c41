"""The documentation a newcomer reads (issue 12, items 11-13): everything it points at is in the repository,
the README's example reads what it writes, and it says where things are after `make run`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "jepsen-style-tests"))

from jepsen_raftka.anomaly import KINDS  # noqa: E402

OUTSIDE = ("../" + "shared/", "shared/" + "jepsen.md", "shared/" + "design.md")  # split: this file is searched too


def tracked_text_files() -> list[Path]:
    names = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / n for n in names if n.endswith((".md", ".py", ".txt", ".toml", ".sh", ".yml", ".yaml", ".cfg"))
            or n in ("Makefile",)]


def test_nothing_in_the_repository_points_outside_it():
    pointing = [f"{path.relative_to(ROOT)}: {needle}" for path in tracked_text_files() if path.is_file()
                for needle in OUTSIDE if needle in path.read_text(errors="replace")]
    assert pointing == []


def test_the_jepsen_readme_explains_every_anomaly_the_checker_reports():
    readme = (ROOT / "jepsen-style-tests" / "README.md").read_text()
    assert [kind for kind in KINDS if f"`{kind}`" not in readme] == []


def readme_block(section: str) -> str:
    """The first ```sh block after the README heading `section`."""
    text = (ROOT / "README.md").read_text()
    start = text.index("```sh\n", text.index(f"\n{section}\n")) + len("```sh\n")
    return text[start:text.index("```", start)]


def test_the_readme_example_reads_what_it_writes(cluster_factory):
    if shutil.which("curl") is None:
        pytest.skip("needs curl (`make deb-packages` installs it)")
    cluster = cluster_factory(3)
    script = readme_block("## Using it")
    for broker in cluster.ids:
        script = script.replace(f"localhost:{9090 + broker}", cluster.url(broker))
    if not (ROOT / ".venv" / "bin" / "activate").exists():  # tests run from another environment
        script = script.replace("source .venv/bin/activate", f"export PATH={Path(sys.executable).parent}:$PATH")
    env = {**os.environ, "RAFTKA_BOOTSTRAP": ",".join(cluster.bootstrap), "COLUMNS": "100"}
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    fetched, _ = json.JSONDecoder().raw_decode(result.stdout, result.stdout.index('[{"topic"'))  # curl adds no \n
    assert [(r["key"], r["value"]) for r in fetched] == [("user-1", {"total": 12})]
    assert result.stdout.splitlines()[-1] == '{"total":12}'  # the CLI reads it too


def test_the_readme_says_where_things_are_after_make_run():
    using_it = (ROOT / "README.md").read_text().split("## Using it", 1)[1].split("\n## ", 1)[0]
    for where in (".venv/bin/raftka", "source .venv/bin/activate", ".raftka-data/broker-<N>.log",
                  "rm -rf .raftka-data"):
        assert where in using_it
