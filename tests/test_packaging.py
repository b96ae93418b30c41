"""Packaging and the make targets (issue 12, item 16): the license in the current pyproject form (an SPDX
expression; the old table form is deprecated by setuptools) and `make test` ending with the slowest tests."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_license_is_an_spdx_expression():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    setuptools = next(r for r in project["build-system"]["requires"] if r.startswith("setuptools"))
    assert int(re.search(r">=(\d+)", setuptools).group(1)) >= 77  # the first setuptools that reads it


def test_make_test_reports_the_slowest_tests():
    recipe = subprocess.run(["make", "-n", "-B", "test"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    pytest_line = next(line for line in recipe.splitlines() if " -m pytest" in line)
    assert "--durations=15" in pytest_line.split()


def test_the_package_metadata_builds_without_deprecation_warnings(tmp_path):
    result = subprocess.run([sys.executable, "-c", "import setuptools; setuptools.setup()", "egg_info",
                             "--egg-base", str(tmp_path)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "DeprecationWarning" not in result.stderr, result.stderr[-3000:]
    assert "License-Expression: Apache-2.0" in next(tmp_path.glob("*.egg-info/PKG-INFO")).read_text()
