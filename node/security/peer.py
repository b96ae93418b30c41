"""Requests between brokers over the HTTP API: signed with the cluster secret, so no client can forge a principal.

A broker forwards a client's request to the broker that can serve it, and makes requests of its own (asking
peers which groups they lead, REST consumer instances fetching through the API). Such a request says on whose
behalf it is made in ``X-Raftka-Principal`` (the client's principal, or ``Broker:<id>`` for the broker itself:
allowed everything) and ``X-Raftka-Client-Host`` (the client's address, for ACLs naming a host), and
carries ``X-Raftka-Peer-Signature: v1 <broker> <unix ms> <hmac>``, an HMAC-SHA256 under a key derived
from the cluster secret over the principal, client host, method, path and query and the time. The receiving
broker accepts it within `MAX_SKEW_S` of its own clock; a wrong or stale signature is an authentication
failure. A client cannot produce the signature without the cluster secret, and a principal header without one
is refused, never trusted. (Without TLS a captured request could be replayed within the window; with TLS it
cannot be captured.) A single broker without a cluster secret signs with a random per-process key: only its
requests to itself exist. `blob_signature`/`verify_blob` sign anything else a broker relays for a client the
same way (a Kafka request frame relayed to the metadata leader).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from urllib.parse import quote, unquote

from aiohttp import ClientHandlerType, ClientRequest, ClientResponse
from multidict import CIMultiDictProxy

__all__ = ["CLIENT_HOST_HEADER", "MAX_SKEW_S", "PRINCIPAL_HEADER", "SIGNATURE_HEADER", "PeerSignatureError",
           "PeerSigner", "broker_principal"]

PRINCIPAL_HEADER = "X-Raftka-Principal"
CLIENT_HOST_HEADER = "X-Raftka-Client-Host"
SIGNATURE_HEADER = "X-Raftka-Peer-Signature"
MAX_SKEW_S = 60.0
_KEY_LABEL = b"raftka http peer requests v1"


class PeerSignatureError(Exception):
    """A peer request whose signature is missing, malformed, wrong or too old."""


def broker_principal(broker_id: int) -> str:
    return f"Broker:{broker_id}"


class PeerSigner:
    def __init__(self, broker_id: int, cluster_secret: bytes | None, clock=time.time):
        self.broker_id = broker_id
        self.principal = broker_principal(broker_id)
        self._key = hmac.new(cluster_secret, _KEY_LABEL, hashlib.sha256).digest() if cluster_secret \
            else os.urandom(32)
        self._clock = clock

    def _mac(self, sender: str, millis: str, principal: str, host: str, method: str, path_qs: str) -> str:
        message = "\n".join(("v1", sender, millis, principal, host, method.upper(), path_qs)).encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()

    def headers(self, principal: str, host: str, method: str, path_qs: str) -> dict[str, str]:
        millis = str(int(self._clock() * 1000))
        quoted = quote(principal, safe=":*@+")
        return {PRINCIPAL_HEADER: quoted, CLIENT_HOST_HEADER: host,
                SIGNATURE_HEADER: f"v1 {self.broker_id} {millis} "
                                  f"{self._mac(str(self.broker_id), millis, quoted, host, method, path_qs)}"}

    def verify(self, headers: CIMultiDictProxy[str], method: str, path_qs: str) -> tuple[str, str] | None:
        """(principal, client host) a signed peer request acts for; None when the request is not from a peer
        (none of the headers); PeerSignatureError when it claims to be and is not."""
        signature, quoted = headers.get(SIGNATURE_HEADER), headers.get(PRINCIPAL_HEADER)
        host = headers.get(CLIENT_HOST_HEADER)
        if signature is None and quoted is None and host is None:
            return None
        if signature is None or quoted is None or host is None:
            raise PeerSignatureError("a principal or client host header needs a peer signature")
        parts = signature.split(" ")
        if len(parts) != 4 or parts[0] != "v1" or not parts[1].isdigit() or not parts[2].isdigit():
            raise PeerSignatureError("malformed peer signature")
        expected = self._mac(parts[1], parts[2], quoted, host, method, path_qs)
        if not hmac.compare_digest(expected, parts[3]):
            raise PeerSignatureError("wrong peer signature")
        if abs(self._clock() - int(parts[2]) / 1000) > MAX_SKEW_S:
            raise PeerSignatureError("stale peer signature (are the brokers' clocks more than a minute apart?)")
        return unquote(quoted), host

    def blob_signature(self, principal: str, host: str, blob: bytes) -> str:
        """``<broker>.<unix ms>.<hmac>`` over the principal, client host and the bytes (for `verify_blob`)."""
        millis = str(int(self._clock() * 1000))
        digest = hashlib.sha256(blob).hexdigest()
        return f"{self.broker_id}.{millis}.{self._mac(str(self.broker_id), millis, principal, host, 'BLOB', digest)}"

    def verify_blob(self, signature: str, principal: str, host: str, blob: bytes) -> None:
        """PeerSignatureError unless `signature` is this cluster's over these, and recent."""
        parts = signature.split(".")
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1].isdigit():
            raise PeerSignatureError("malformed peer signature")
        expected = self._mac(parts[0], parts[1], principal, host, "BLOB", hashlib.sha256(blob).hexdigest())
        if not hmac.compare_digest(expected, parts[2]):
            raise PeerSignatureError("wrong peer signature")
        if abs(self._clock() - int(parts[1]) / 1000) > MAX_SKEW_S:
            raise PeerSignatureError("stale peer signature (are the brokers' clocks more than a minute apart?)")

    async def sign_request(self, request: ClientRequest, handler: ClientHandlerType) -> ClientResponse:
        """aiohttp client middleware for the broker's session to its peers: signs every request, for the
        principal and client host already in its headers (a forwarded client request) or else for this
        broker."""
        principal = unquote(request.headers.get(PRINCIPAL_HEADER, "")) or self.principal
        host = request.headers.get(CLIENT_HOST_HEADER) or "*"
        request.headers.update(self.headers(principal, host, request.method, request.url.raw_path_qs))
        return await handler(request)
