"""`LocalCluster` on ports another process takes between picking and binding them.

Ports picked by `free_ports` are free when picked; the brokers bind them a second later, and another process
(the other pytest worker starting its own cluster) may bind one first: CI once lost a test to a broker that
exited with "address already in use".  A first start on picked ports then starts over on new ones; a cluster
given its ports, or one restarted on its data, still fails and names the broker.
"""

from __future__ import annotations

import socket

import pytest

from raftka.client.devcluster import BrokerExitedError, LocalCluster, free_ports


def occupy(port: int) -> socket.socket:
    s = socket.socket()
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def test_a_first_start_that_loses_a_picked_port_starts_over_on_new_ones(tmp_path):
    cluster = LocalCluster(3, tmp_path / "c", election_timeout_ms=300)
    taken = cluster.kafka_ports[2]
    with occupy(taken):
        try:
            cluster.start()
            assert cluster.kafka_ports[2] != taken
            assert b"address already in use" in (tmp_path / "c" / "broker-2.log").read_bytes()  # the first try
            assert cluster.create_topic("t", 1, 3)["name"] == "t"
        finally:
            cluster.close()


def test_given_ports_are_not_replaced(tmp_path):
    ports = free_ports(9)
    cluster = LocalCluster(3, tmp_path / "c", http_ports=ports[:3], raft_ports=ports[3:6], kafka_ports=ports[6:])
    with occupy(ports[7]):
        try:
            with pytest.raises(BrokerExitedError) as failed:
                cluster.start()
            assert failed.value.broker == 2
            assert cluster.kafka_ports[2] == ports[7]
        finally:
            cluster.close()
