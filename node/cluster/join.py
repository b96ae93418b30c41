"""Joining a running cluster (`--join`): the registration request and its proof of the cluster secret (pure).

A broker that joins sends ``POST /brokers`` to any live broker (forwarded to
the metadata leader) with what the others need to reach it::

    {"id": 4, "incarnation": 2914517002, "http_url": "https://b4:8080",
     "raft_host": "b4", "raft_port": 9090, "rack": "zone-b" | null, "proof": "..."}

The request proves that its sender holds the cluster secret (with
``--auth required`` it is also a signed peer request, see
`raftka.node.security.peer`, so the joining broker needs no user: it is
``Broker:<id>``): ``proof`` is an HMAC-SHA256, under a key
derived from the secret (HKDF), of the cluster id and every field above.  It
is bound to the cluster id (taken from ``GET /cluster`` first), so a proof for
one cluster is worthless for another; replaying a proof can only register the
same broker at the same addresses again, and a broker id whose registered
data directory is alive is refused anyway.  The Raft transport authenticates
every connection with the secret on top of this.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from raftka.raft.replica import MAX_BROKER_ID, MAX_INCARNATION

FIELDS = ("id", "incarnation", "http_url", "raft_host", "raft_port", "rack")


class JoinRequestError(ValueError):
    """A join request that is malformed (the message says which field)."""


def _key(secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"raftka join v1").derive(secret)


def _message(cluster_id: str, request: dict[str, Any]) -> bytes:
    return orjson.dumps({"cluster_id": cluster_id, **{f: request.get(f) for f in FIELDS}},
                        option=orjson.OPT_SORT_KEYS)


def join_request(secret: bytes, cluster_id: str, *, broker: int, incarnation: int, http_url: str, raft_host: str,
                 raft_port: int, rack: str | None) -> dict[str, Any]:
    """The body of ``POST /brokers`` for a broker joining cluster `cluster_id`."""
    request = {"id": broker, "incarnation": incarnation, "http_url": http_url, "raft_host": raft_host,
               "raft_port": raft_port, "rack": rack}
    request["proof"] = hmac.new(_key(secret), _message(cluster_id, request), hashlib.sha256).hexdigest()
    return request


def parse_join_request(doc: object) -> dict[str, Any]:
    """The fields of a join request, checked for shape (JoinRequestError says what is wrong)."""
    if not isinstance(doc, dict):
        raise JoinRequestError("expected a JSON object")
    unknown = set(doc) - {*FIELDS, "proof"}
    if unknown:
        raise JoinRequestError(f"unknown fields {sorted(unknown)}")
    checks = {
        "id": lambda v: type(v) is int and 0 < v <= MAX_BROKER_ID,
        "incarnation": lambda v: type(v) is int and 0 < v <= MAX_INCARNATION,
        "http_url": lambda v: isinstance(v, str) and v.startswith(("http://", "https://")) and 0 < len(v) <= 300,
        "raft_host": lambda v: isinstance(v, str) and 0 < len(v) <= 253,
        "raft_port": lambda v: type(v) is int and 0 < v <= 65535,
        "rack": lambda v: v is None or (isinstance(v, str) and 0 < len(v) <= 64),
        "proof": lambda v: isinstance(v, str) and len(v) == 64,
    }
    for field, ok in checks.items():
        if field not in doc and field != "rack":
            raise JoinRequestError(f"'{field}' is missing")
        if not ok(doc.get(field)):
            raise JoinRequestError(f"'{field}' is invalid: {str(doc.get(field))[:80]!r}")
    return {f: doc.get(f) for f in (*FIELDS, "proof")}


def proof_valid(secret: bytes | None, cluster_id: str, request: dict[str, Any]) -> bool:
    if secret is None:
        return False
    expected = hmac.new(_key(secret), _message(cluster_id, request), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, request["proof"])


__all__ = ["JoinRequestError", "join_request", "parse_join_request", "proof_valid"]
