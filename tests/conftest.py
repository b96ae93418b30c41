"""Shared fixtures: real broker clusters on loopback (see tests/cluster.py), whose brokers' last log
lines join the report of a test that fails (CI keeps nothing else of a run); the Raft simulation
statistics at the end of the run, gathered from every pytest-xdist worker (see tests/simreport.py)."""

from pathlib import Path

import pytest

import simreport
from raftka.client.devcluster import LocalCluster


def pytest_sessionfinish(session):
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:  # a pytest-xdist worker: its lines go to the controller (pytest_testnodedown)
        workeroutput["simreport"] = simreport.rendered_items()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    simreport.merge(getattr(node, "workeroutput", {}).get("simreport", {}))


def pytest_terminal_summary(terminalreporter):
    lines = simreport.rendered()
    if lines:
        terminalreporter.write_sep("-", "raft simulation statistics")
        for line in lines:
            terminalreporter.write_line(line)


LOG_LINES_ON_FAILURE = 40
CLUSTERS = pytest.StashKey[list]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        for cluster in item.stash.get(CLUSTERS, []):
            for log in sorted(Path(cluster.root).glob("broker-*.log")):
                lines = log.read_text(errors="replace").splitlines()[-LOG_LINES_ON_FAILURE:]
                report.sections.append((f"last lines of {log.name} ({cluster.root.name})",
                                        "\n".join(line[:300] for line in lines)))


@pytest.fixture
def cluster_factory(tmp_path, request):
    started = request.node.stash.setdefault(CLUSTERS, [])

    def make(brokers: int = 3, **kwargs) -> LocalCluster:
        kwargs.setdefault("election_timeout_ms", 300)
        cluster = LocalCluster(brokers, tmp_path / f"cluster{len(started)}", **kwargs)
        started.append(cluster)
        return cluster.start()

    yield make
    for cluster in started:
        cluster.close()
