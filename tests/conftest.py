"""Shared fixtures: real broker clusters on loopback (see tests/cluster.py); the Raft
simulation statistics at the end of the run, gathered from every pytest-xdist worker
(see tests/simreport.py)."""

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


@pytest.fixture
def cluster_factory(tmp_path):
    started = []

    def make(brokers: int = 3, **kwargs) -> LocalCluster:
        kwargs.setdefault("election_timeout_ms", 300)
        cluster = LocalCluster(brokers, tmp_path / f"cluster{len(started)}", **kwargs)
        started.append(cluster)
        return cluster.start()

    yield make
    for cluster in started:
        cluster.close()
