"""HTTP requests of the workload and the runner to the brokers, and what their outcomes mean.

One request per fresh TCP connection (``http.client``), never through a proxy,
only to the addresses the cluster hands to CLIENT. A fresh connection makes
the outcome of a failure decidable: when the connection cannot be made, the
request was certainly not sent (``NotDelivered``); once it was made, a missing
or cut answer means the request may or may not have taken effect
(``NoAnswer``). Keep-alive would blur that line (a stale pooled connection
fails after the request bytes were written).

Broker answers (notes/http_api.md): a 4xx, 503 50301 NotLeader (a broker
answers it only before proposing, or when Raft dropped the entry) and 507
50701 storage unavailable (refused before anything was appended) are
definite failures; any other 5xx (50003 request timed out, 50302 forwarding
failed, 50002 internal error) leaves the outcome unknown.
"""

from __future__ import annotations

import http.client
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from .security import ApiSecurity

JSON = "application/json"
KAFKA_JSON = "application/vnd.kafka.json.v2+json"
NOT_LEADER = 50301
STORAGE_UNAVAILABLE = 50701
CONNECT_TIMEOUT_S = 1.0
ERROR_TEXT_LIMIT = 200


class NotDelivered(Exception):
    """The connection could not be made: the broker certainly never saw the request."""


class NoAnswer(Exception):
    """The request may have reached the broker, but no complete answer came back."""


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    doc: Any  # the JSON body, None when the body is not JSON
    served_by: int | None  # X-Raftka-Broker: the broker that served it (after forwarding)
    headers: Mapping[str, str]  # names in lower case

    @property
    def error_code(self) -> int | None:
        """The REST Proxy error code of an error answer (None for a success)."""
        if 200 <= self.status < 300:
            return None
        code = self.doc.get("error_code") if isinstance(self.doc, dict) else None
        return code if isinstance(code, int) else self.status * 100

    @property
    def definite_failure(self) -> bool:
        """An error answer that guarantees the request had no effect."""
        return definite_failure(self.status, self.error_code)

    def describe(self) -> str:
        message = self.doc.get("message") if isinstance(self.doc, dict) else None
        return f"{self.status} {self.error_code}: {message}"[:ERROR_TEXT_LIMIT]


def definite_failure(status: int, error_code: int | None) -> bool:
    """Whether an error answer (HTTP status, REST Proxy code) guarantees that nothing happened."""
    if error_code is None:
        return 400 <= status < 500
    return 40000 <= error_code < 50000 or error_code in (NOT_LEADER, STORAGE_UNAVAILABLE)


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT]


class BrokerApi:
    """Requests to the brokers by node id; ``addresses`` maps node -> (host, port) as CLIENT
    reaches it; with ``security`` (a ``--tls`` run) over TLS and as the run's admin."""

    def __init__(self, addresses: Mapping[int, tuple[str, int]], rng: random.Random | None = None,
                 security: ApiSecurity | None = None) -> None:
        if not addresses:
            raise ValueError("BrokerApi needs at least one broker address")
        self.security = security
        self.addresses = dict(addresses)
        self.nodes = sorted(self.addresses)
        self.rng = rng or random.Random()

    def random_node(self) -> int:
        return self.rng.choice(self.nodes)

    def request(self, node: int, method: str, path: str, body: Any = None, *, timeout_s: float,
                content_type: str = JSON, accept: str = JSON) -> Reply:
        """One request; ``body`` is JSON-encoded unless it is bytes. Raises NotDelivered or NoAnswer."""
        host, port = self.addresses[node]
        if self.security is None:
            conn = http.client.HTTPConnection(host, port, timeout=min(CONNECT_TIMEOUT_S, timeout_s))
        else:  # connect() includes the TLS handshake: a failed one is still "not delivered"
            conn = http.client.HTTPSConnection(host, port, timeout=min(CONNECT_TIMEOUT_S, timeout_s),
                                               context=self.security.context)
        try:
            try:
                conn.connect()
            except OSError as exc:
                raise NotDelivered(describe(exc)) from None
            conn.sock.settimeout(timeout_s)
            headers = {"Accept": accept}
            if self.security is not None:
                headers["Authorization"] = self.security.authorization
            data = None
            if body is not None:
                data = body if isinstance(body, bytes) else orjson.dumps(body)
                headers["Content-Type"] = content_type
            try:
                conn.request(method, path, body=data, headers=headers)
                response = conn.getresponse()
                payload = response.read()
            except (OSError, http.client.HTTPException) as exc:
                raise NoAnswer(describe(exc)) from None
        finally:
            conn.close()
        try:
            doc = orjson.loads(payload) if payload else None
        except orjson.JSONDecodeError:
            doc = None
        served = response.getheader("X-Raftka-Broker")
        return Reply(response.status, doc, int(served) if served and served.isdigit() else None,
                     {k.lower(): v for k, v in response.getheaders()})

    def first_answer(self, method: str, path: str, body: Any = None, *, timeout_s: float,
                     accept_status: tuple[int, ...] = (200,)) -> Reply | None:
        """Ask the brokers in random order until one answers with an accepted status (for the
        runner's own bookkeeping, never for workload operations)."""
        for node in self.rng.sample(self.nodes, len(self.nodes)):
            try:
                reply = self.request(node, method, path, body, timeout_s=timeout_s)
            except (NotDelivered, NoAnswer):
                continue
            if reply.status in accept_status:
                return reply
        return None
