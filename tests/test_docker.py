"""The docker image and compose files, tested for real by docker/test.sh (`make docker-test`).

Runs only with RAFTKA_DOCKER_TESTS=1 (it takes minutes: image build, a 3- and a 5-broker cluster
with brokers killed and restarted) and when a docker engine is usable: one answers `docker info`,
or this is root with dockerd installed or apt-get to install it (test.sh then starts dockerd).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TEST_SCRIPT = REPO / "docker" / "test.sh"


def _engine_problem() -> str | None:
    """Why no docker engine can be used here, or None if one can."""
    if shutil.which("docker"):
        try:
            if subprocess.run(["docker", "info"], check=False, capture_output=True, timeout=30).returncode == 0:
                return None
        except subprocess.TimeoutExpired:
            return "`docker info` did not answer within 30s"
    if os.geteuid() != 0:
        return "no running docker engine, and only root can start one (dockerd)"
    if not (shutil.which("dockerd") or shutil.which("apt-get")):
        return "no running docker engine, no dockerd and no apt-get to install docker.io"
    return None


def _skip_reason() -> str | None:
    if os.environ.get("RAFTKA_DOCKER_TESTS") != "1":
        return "docker test: set RAFTKA_DOCKER_TESTS=1 or run `make docker-test` (takes minutes)"
    problem = _engine_problem()
    return f"docker test: {problem}" if problem else None


@pytest.mark.docker
@pytest.mark.timeout(1800)
def test_compose_clusters_survive_killed_brokers():
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    # Output goes to pytest's file-descriptor capture: shown on failure, live with `pytest -s`.
    result = subprocess.run(["bash", str(TEST_SCRIPT)], check=False, cwd=REPO, timeout=1700)
    assert result.returncode == 0, f"docker/test.sh exited {result.returncode} (its output is above)"
