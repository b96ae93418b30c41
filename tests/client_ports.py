"""Loopback ports for client tests, taken below Linux's ephemeral range (32768+): an outgoing connection
never uses them as its source port, so a "closed" port stays closed and a free one stays free."""

from __future__ import annotations

import random
import socket

PORT_RANGE = (20_000, 32_000)


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def closed_port() -> int:
    """A port nothing listens on."""
    while True:
        port = random.randrange(*PORT_RANGE)
        if _bindable(port):
            return port


def free_dev_base_port(brokers: int) -> int:
    """A base port P for `raftka dev --base-port P --brokers N`: its HTTP ports P+i, Raft ports P+100+i and
    Kafka ports P+10000+i are all free and all below the ephemeral range."""
    kafka_offset = 10_000
    while True:
        port = random.randrange(PORT_RANGE[0] - kafka_offset, PORT_RANGE[1] - kafka_offset - brokers)
        if all(_bindable(port + offset + i) for offset in (0, 100, kafka_offset) for i in range(brokers)):
            return port
