"""Shared helpers of the harness tests: stand-in host processes, mode skipping, waiting."""

import sys
import time
from pathlib import Path

import pytest

from jepsen_raftka import netns
from jepsen_raftka.topology import CLIENT

HERE = Path(__file__).resolve().parent
HEALTH_SERVER = HERE / "jepsen_harness_health.py"
WRITER = HERE / "jepsen_harness_writer.py"
MODES = ["netns", "loopback"]


def skip_unless_mode_available(mode: str) -> None:
    if mode == "netns":
        usable, reason = netns.availability()
        if not usable:
            pytest.skip(f"netns mode unavailable: {reason}")


def wait_for(predicate, timeout_s=15.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def segment_bytes(brokers, node) -> int:
    """Bytes in a stand-in writer's log segments (jepsen_harness_writer.py)."""
    return sum(p.stat().st_size for p in brokers.data_dir(node).glob("*.log"))


def health_server_command(brokers, node: int) -> list[str]:
    host, port = brokers.cluster.bind_address(node, "http")
    return [sys.executable, str(HEALTH_SERVER), host, str(port), str(node)]


def writer_command(mode: str):
    def command(brokers, node: int) -> list[str]:
        return [sys.executable, str(WRITER), str(brokers.data_dir(node)), mode]
    return command


def grudge_from_json(value: dict) -> dict:
    """Inverse of topology.to_json."""
    def endpoint(x):
        return x if x == CLIENT else int(x)
    return {endpoint(dst): frozenset(endpoint(s) for s in srcs) for dst, srcs in value.items()}
