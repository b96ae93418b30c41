"""Test support: real local clusters of broker processes, a tiny HTTP helper, and reading /metrics.

`cluster_factory` (a fixture in conftest.py) starts `LocalCluster`s under the
test's tmp dir with fast elections and always stops them.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request


class Response:
    def __init__(self, status: int, body: bytes, headers):
        self.status = status
        self.body = body
        self.headers = headers

    def json(self):
        return json.loads(self.body) if self.body else None


def request(url: str, method: str = "GET", body=None, *, content_type: str = "application/json",
            accept: str | None = None, raw: bytes | None = None, timeout: float = 30.0) -> Response:
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    headers = {}
    if data is not None:
        headers["Content-Type"] = content_type
    if accept:
        headers["Accept"] = accept
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return Response(resp.status, resp.read(), resp.headers)
    except urllib.error.HTTPError as exc:
        return Response(exc.code, exc.read(), exc.headers)


def retry(fn, *, timeout: float = 20.0, retry_on=(503,)):
    """Call fn() until it returns a Response whose status is not retriable."""
    deadline = time.monotonic() + timeout
    while True:
        resp = fn()
        if resp.status not in retry_on or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


def wait_until(predicate, timeout: float, what):
    """predicate()'s first truthy value, polling every 50 ms; fails the test after `timeout` seconds, saying what
    it waited for (`what`: a text, or a function giving one then, e.g. with the state last seen)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what() if callable(what) else what}"
        time.sleep(0.05)


def metric_total(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of metric `name` with the given labels in a Prometheus text scrape."""
    from prometheus_client.parser import text_string_to_metric_families

    return sum(s.value for family in text_string_to_metric_families(text) for s in family.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))
