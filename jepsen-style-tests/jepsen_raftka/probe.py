"""Who can reach whom, measured: an HTTP exchange from every host to every node.

``reachability(cluster, service)`` runs ``python -m jepsen_raftka.probe`` on
every node's host (inside its namespace) and probes from the harness itself
for CLIENT, all in parallel, and returns {(src, dst): bool}. A probe counts
as reachable only when ``GET /health`` gets any HTTP answer within the
timeout: a connect alone proves nothing behind the loopback fault proxy.
Runners use it to check that a fault really is in force; the harness tests
use it to check every nemesis against topology.can_talk.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson

from .topology import CLIENT, Endpoint

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent
_REQUEST = b"GET /health HTTP/1.0\r\nHost: probe\r\n\r\n"


def http_exchange_ok(host: str, port: int, timeout_s: float) -> bool:
    """Whether (host, port) answers an HTTP request with an HTTP status line in time."""
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(_REQUEST)
            answer = b""
            while len(answer) < 5:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                sock.settimeout(remaining)
                chunk = sock.recv(5 - len(answer))
                if not chunk:
                    return False
                answer += chunk
            return answer == b"HTTP/"
    except OSError:
        return False


def probe_all(addresses: Sequence[tuple[str, int]], timeout_s: float) -> list[bool]:
    if not addresses:
        return []
    with ThreadPoolExecutor(max_workers=len(addresses)) as pool:
        return list(pool.map(lambda a: http_exchange_ok(a[0], a[1], timeout_s), addresses))


def reachability(cluster, service: str = "http", timeout_s: float = 0.5) -> dict[tuple[Endpoint, int], bool]:
    """{(src, dst): reachable} for every node and CLIENT as src and every other node as dst."""
    targets = {src: [dst for dst in cluster.nodes if dst != src] for src in (*cluster.nodes, CLIENT)}
    running = {}
    for src in cluster.nodes:
        addresses = [f"{h}:{p}" for h, p in (cluster.address(src, dst, service) for dst in targets[src])]
        argv = cluster.command(src, [sys.executable, "-m", "jepsen_raftka.probe", f"{timeout_s}", *addresses])
        running[src] = subprocess.Popen(argv, cwd=_PACKAGE_PARENT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    results = dict(zip([(CLIENT, d) for d in targets[CLIENT]],
                       probe_all([cluster.address(CLIENT, d, service) for d in targets[CLIENT]], timeout_s),
                       strict=True))
    for src, process in running.items():
        out, err = process.communicate(timeout=30)
        if process.returncode != 0:
            raise RuntimeError(f"probe on node {src} failed ({process.returncode}): {err.decode(errors='replace')}")
        results.update(zip([(src, d) for d in targets[src]], orjson.loads(out), strict=True))
    return results


def main(argv: Sequence[str]) -> int:
    """``python -m jepsen_raftka.probe TIMEOUT_S HOST:PORT...`` prints a JSON list of booleans."""
    timeout_s, addresses = float(argv[0]), [a.rsplit(":", 1) for a in argv[1:]]
    sys.stdout.buffer.write(orjson.dumps(probe_all([(h, int(p)) for h, p in addresses], timeout_s)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
