"""Shared fixtures: real broker clusters on loopback (see tests/cluster.py); the Raft
simulation statistics at the end of the run (see tests/simreport.py)."""

import pytest

import simreport
from raftka.client.devcluster import LocalCluster


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
