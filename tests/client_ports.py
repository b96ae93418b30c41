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


def free_port_pair(gap: int = 100) -> int:
    """A port P with P and P+gap free (`raftka dev`'s HTTP and Raft ports for one broker)."""
    while True:
        port = random.randrange(PORT_RANGE[0], PORT_RANGE[1] - gap)
        if _bindable(port) and _bindable(port + gap):
            return port
