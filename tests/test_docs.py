"""The documentation a newcomer reads (issue 12, items 11-13): everything it points at is in the repository,
the README's example reads what it writes, and it says where things are after `make run`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
