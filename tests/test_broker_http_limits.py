"""Requests aiohttp cannot parse get the project's JSON errors, and no traceback in the broker log
(issue 12, item 10), against a real broker process."""

from __future__ import annotations

import json
import socket

import pytest
from cluster import request

from raftka.node.http.server import MAX_HEADER_BYTES, MAX_REQUEST_LINE_BYTES

pytestmark = pytest.mark.timeout(60)


def raw_http(port: int, payload: bytes) -> tuple[int, bytes]:
    """Send `payload` as it is; (status, body) of the answer (the broker closes the connection after it)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(payload)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_request_line_and_header_over_the_limits_get_json_errors(cluster_factory):
    cluster = cluster_factory(1)
    port = cluster.http_ports[1]
    status, body = raw_http(port, b"GET /topics/" + b"x" * MAX_REQUEST_LINE_BYTES + b" HTTP/1.1\r\nHost: a\r\n\r\n")
    assert status == 414 and json.loads(body)["error_code"] == 41400, body
    status, body = raw_http(port, b"GET /topics HTTP/1.1\r\nHost: a\r\nX-Big: " + b"y" * 2 * MAX_HEADER_BYTES
                            + b"\r\n\r\n")
    assert status == 431 and json.loads(body)["error_code"] == 43100, body
    status, body = raw_http(port, b"GET /topics HTTP/1.1\r\nHost a\r\nConnection: close\r\n\r\n")
    assert status == 400 and json.loads(body)["error_code"] == 40000, body
    # A long URL within the limit is an ordinary request (here: a topic name too long to exist).
    resp = request(cluster.url(1) + "/topics/" + "x" * 10_000)
    assert resp.status == 404 and resp.json()["error_code"] == 40401
    assert request(cluster.url(1) + "/health").status == 200
    log = (cluster.root / "broker-1.log").read_text()
    assert "Traceback" not in log and "Error handling request" not in log, log[-2000:]
