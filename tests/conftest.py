"""Shared fixtures: real broker clusters on loopback (see tests/cluster.py)."""

import pytest

from raftka.client.devcluster import LocalCluster


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
