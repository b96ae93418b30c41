"""SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677): stored credentials and the server side of the exchange.

A user's password is never stored: a credential is (salt, iterations, StoredKey, ServerKey) with
SaltedPassword = PBKDF2-HMAC(password, salt, iterations), ClientKey = HMAC(SaltedPassword, "Client Key"),
StoredKey = H(ClientKey), ServerKey = HMAC(SaltedPassword, "Server Key"). That is enough to check a plain
password (HTTP Basic, SASL/PLAIN: recompute StoredKey and compare in constant time) and to run the SCRAM
exchange with a Kafka client (`ScramExchange`), which proves knowledge of the password without sending it.
As in Kafka, passwords are UTF-8 without SASLprep, at least 4096 iterations are required, and the nonce of the
client-final message must end with the combined nonce (librdkafka before 2.1 sends its own nonce twice).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["DEFAULT_ITERATIONS", "MAX_ITERATIONS", "MECHANISMS", "MIN_ITERATIONS", "ScramCredential", "ScramError",
           "ScramExchange", "client_final_message", "client_first_user", "salted_password"]

MECHANISMS = {"SCRAM-SHA-256": "sha256", "SCRAM-SHA-512": "sha512"}
MIN_ITERATIONS = 4096  # Kafka's minimum (and default)
MAX_ITERATIONS = 16384  # Kafka's maximum
DEFAULT_ITERATIONS = 4096
SALT_BYTES = 32
_PRINTABLE_NONCE = re.compile(r"[\x21-\x2b\x2d-\x7e]+")  # printable ASCII except ','


class ScramError(Exception):
    """A malformed or failed SCRAM message; the text is safe to send to the client (it names no secret)."""


def _hash(mechanism: str) -> str:
    try:
        return MECHANISMS[mechanism]
    except KeyError:
        raise ValueError(f"unknown SCRAM mechanism {mechanism!r}; one of {', '.join(MECHANISMS)}") from None


def salted_password(mechanism: str, password: bytes, salt: bytes, iterations: int) -> bytes:
    """Hi(password, salt, i) of RFC 5802: PBKDF2 with HMAC of the mechanism's hash."""
    return hashlib.pbkdf2_hmac(_hash(mechanism), password, salt, iterations)


def _hmac(mechanism: str, key: bytes, message: bytes) -> bytes:
    return hmac.new(key, message, _hash(mechanism)).digest()


@dataclass(frozen=True)
class ScramCredential:
    """What is stored for one user and mechanism (all a broker ever keeps of a password)."""

    mechanism: str
    salt: bytes
    iterations: int
    stored_key: bytes
    server_key: bytes

    @classmethod
    def from_salted_password(cls, mechanism: str, salt: bytes, iterations: int, salted: bytes) -> ScramCredential:
        """The credential for a SaltedPassword (what Kafka's AlterUserScramCredentials sends)."""
        client_key = _hmac(mechanism, salted, b"Client Key")
        return cls(mechanism, salt, iterations, hashlib.new(_hash(mechanism), client_key).digest(),
                   _hmac(mechanism, salted, b"Server Key"))

    @classmethod
    def from_password(cls, mechanism: str, password: str, iterations: int = DEFAULT_ITERATIONS,
                      salt: bytes | None = None) -> ScramCredential:
        salt = os.urandom(SALT_BYTES) if salt is None else salt
        return cls.from_salted_password(mechanism, salt, iterations,
                                        salted_password(mechanism, password.encode(), salt, iterations))

    def verify_password(self, password: bytes) -> bool:
        """Does `password` match? Constant time in the comparison (the key derivation dominates anyway)."""
        client_key = _hmac(self.mechanism, salted_password(self.mechanism, password, self.salt, self.iterations),
                           b"Client Key")
        return hmac.compare_digest(hashlib.new(_hash(self.mechanism), client_key).digest(), self.stored_key)

    def to_json(self) -> dict:
        b64 = base64.b64encode
        return {"salt": b64(self.salt).decode(), "iterations": self.iterations,
                "stored_key": b64(self.stored_key).decode(), "server_key": b64(self.server_key).decode()}

    @classmethod
    def from_json(cls, mechanism: str, doc: dict) -> ScramCredential:
        b64 = base64.b64decode
        return cls(mechanism, b64(doc["salt"]), doc["iterations"], b64(doc["stored_key"]), b64(doc["server_key"]))


def _attributes(message: str, what: str) -> list[tuple[str, str]]:
    out = []
    for part in message.split(","):
        if len(part) < 2 or part[1] != "=" or not part[0].isalpha():
            raise ScramError(f"malformed SCRAM {what} message")
        out.append((part[0], part[2:]))
    return out


def _decode_name(raw: str) -> str:
    """RFC 5802 saslname: ',' and '=' arrive as '=2C' and '=3D'; any other '=' is an error."""
    if re.search(r"=(?!2C|3D)", raw):
        raise ScramError("malformed SCRAM user name")
    return raw.replace("=2C", ",").replace("=3D", "=")


class ScramExchange:
    """The server side of one SCRAM authentication: `first` answers the client's first message, `final` checks its
    proof and returns the user name and the server's final message. `lookup(name)` gives the user's credential for
    this mechanism, or None: an unknown user runs the same exchange with a made-up credential and fails at the
    proof, so the answers do not reveal which users exist."""

    def __init__(self, mechanism: str, lookup: Callable[[str], ScramCredential | None]):
        _hash(mechanism)
        self.mechanism = mechanism
        self._lookup = lookup
        self._user: str | None = None
        self._credential: ScramCredential | None = None
        self._known = False
        self._nonce = ""
        self._first_bare = ""
        self._server_first = ""

    def first(self, client_first: bytes) -> bytes:
        try:
            text = client_first.decode()
        except UnicodeDecodeError:
            raise ScramError("SCRAM message is not UTF-8") from None
        gs2, sep, bare = _split_gs2(text)
        if gs2 not in ("n", "y"):  # 'p' would ask for channel binding, which this server does not offer
            raise ScramError("SCRAM channel binding is not supported")
        attrs = _attributes(bare, "client-first")
        if len(attrs) < 2 or attrs[0][0] != "n" or attrs[1][0] != "r" or not attrs[0][1]:
            raise ScramError("malformed SCRAM client-first message")
        if any(key == "m" for key, _ in attrs):
            raise ScramError("SCRAM mandatory extensions are not supported")
        client_nonce = attrs[1][1]
        if not _PRINTABLE_NONCE.fullmatch(client_nonce):
            raise ScramError("malformed SCRAM nonce")
        self._user = _decode_name(attrs[0][1])
        credential = self._lookup(self._user)
        self._known = credential is not None and credential.mechanism == self.mechanism
        self._credential = credential if self._known else _stand_in(self.mechanism, self._user)
        self._nonce = client_nonce + base64.b64encode(os.urandom(24)).decode().rstrip("=").replace("+", "-")
        self._first_bare = bare
        self._server_first = (f"r={self._nonce},s={base64.b64encode(self._credential.salt).decode()},"
                              f"i={self._credential.iterations}")
        self._gs2 = text[:len(text) - len(bare)]
        return self._server_first.encode()

    def final(self, client_final: bytes) -> tuple[str, bytes]:
        """(user, server-final message) when the proof is right; ScramError otherwise."""
        if self._credential is None:
            raise ScramError("SCRAM client-final message before the client-first message")
        try:
            text = client_final.decode()
        except UnicodeDecodeError:
            raise ScramError("SCRAM message is not UTF-8") from None
        attrs = _attributes(text, "client-final")
        if len(attrs) < 3 or attrs[0][0] != "c" or attrs[1][0] != "r" or attrs[-1][0] != "p":
            raise ScramError("malformed SCRAM client-final message")
        try:
            binding = base64.b64decode(attrs[0][1], validate=True).decode()
            proof = base64.b64decode(attrs[-1][1], validate=True)
        except (ValueError, UnicodeDecodeError):
            raise ScramError("malformed SCRAM client-final message") from None
        if binding != self._gs2:
            raise ScramError("SCRAM channel binding does not match the client-first message")
        nonce = attrs[1][1]  # Kafka accepts a nonce that ends with the combined one: librdkafka < 2.1 puts the
        if len(nonce) < len(self._nonce) or nonce[-len(self._nonce):] != self._nonce:  # client's in front again
            raise ScramError("SCRAM nonce does not match")
        without_proof = text[:text.rindex(",p=")]
        auth_message = f"{self._first_bare},{self._server_first},{without_proof}".encode()
        credential = self._credential
        signature = _hmac(self.mechanism, credential.stored_key, auth_message)
        if len(proof) != len(signature):
            raise ScramError("authentication failed")
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        valid = hmac.compare_digest(hashlib.new(_hash(self.mechanism), client_key).digest(), credential.stored_key)
        if not (valid and self._known):
            raise ScramError("authentication failed")
        server_signature = _hmac(self.mechanism, credential.server_key, auth_message)
        return self._user, b"v=" + base64.b64encode(server_signature)


_STAND_IN_KEY = os.urandom(32)


def _stand_in(mechanism: str, user: str) -> ScramCredential:
    """A made-up credential for an unknown user, the same salt on every attempt (as a real one would be)."""
    salt = hmac.new(_STAND_IN_KEY, f"{mechanism}:{user}".encode(), "sha256").digest()
    return ScramCredential.from_salted_password(mechanism, salt, DEFAULT_ITERATIONS, os.urandom(64))


def client_first_user(client_first: bytes) -> str:
    """The user name a client-first message names (ScramError if it is malformed)."""
    try:
        text = client_first.decode()
    except UnicodeDecodeError:
        raise ScramError("SCRAM message is not UTF-8") from None
    attrs = _attributes(_split_gs2(text)[2], "client-first")
    if not attrs or attrs[0][0] != "n" or not attrs[0][1]:
        raise ScramError("malformed SCRAM client-first message")
    return _decode_name(attrs[0][1])


def _split_gs2(text: str) -> tuple[str, str, str]:
    """'n,,n=user,r=nonce' -> ('n', authzid, 'n=user,r=nonce')."""
    parts = text.split(",", 2)
    if len(parts) != 3:
        raise ScramError("malformed SCRAM client-first message")
    flag, authzid, bare = parts
    if authzid and not authzid.startswith("a="):
        raise ScramError("malformed SCRAM client-first message")
    return flag, authzid, bare


def client_final_message(mechanism: str, password: str, client_first_bare: str, server_first: str,
                         gs2: str = "n,,", nonce: str | None = None) -> tuple[str, bytes]:
    """The client's side (for tests and tools): (client-final message, expected server signature); `nonce`
    replaces the server's combined nonce in the client-final message (to test what servers accept)."""
    attrs = dict(_attributes(server_first, "server-first"))
    salt, iterations, nonce = base64.b64decode(attrs["s"]), int(attrs["i"]), nonce or attrs["r"]
    salted = salted_password(mechanism, password.encode(), salt, iterations)
    client_key = _hmac(mechanism, salted, b"Client Key")
    stored_key = hashlib.new(_hash(mechanism), client_key).digest()
    without_proof = f"c={base64.b64encode(gs2.encode()).decode()},r={nonce}"
    auth_message = f"{client_first_bare},{server_first},{without_proof}".encode()
    proof = bytes(a ^ b for a, b in zip(client_key, _hmac(mechanism, stored_key, auth_message)))
    server_signature = _hmac(mechanism, _hmac(mechanism, salted, b"Server Key"), auth_message)
    return f"{without_proof},p={base64.b64encode(proof).decode()}", server_signature
