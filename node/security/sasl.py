"""SASL for a connection-oriented front end (the Kafka listener): PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.

A `SaslSession` runs one authentication: `start(mechanism)`, then `step(token)` for each token the client
sends, answering the server's token and, once the exchange is complete, the principal. PLAIN (RFC 4616:
``authzid NUL user NUL password``) checks the password like HTTP Basic (`SecurityService.login`); SCRAM runs
the challenge-response of `scram.ScramExchange` against the stored credential, so the password never crosses
the connection. Every failure is a `SaslFailed` whose message is safe to send (it names no secret and does
not say whether the user exists); failures count against the source address like failed HTTP logins, and an
address over the limit is refused before anything is checked.
"""

from __future__ import annotations

from raftka.node.errors import ApiError
from raftka.node.security.scram import MECHANISMS as SCRAM_MECHANISMS
from raftka.node.security.scram import ScramError, ScramExchange, client_first_user

__all__ = ["MECHANISMS", "SaslFailed", "SaslSession"]

MECHANISMS = ("PLAIN", *SCRAM_MECHANISMS)
MAX_TOKEN_BYTES = 4096


class SaslFailed(Exception):
    """Authentication failed or the exchange was malformed; the message is safe to send to the client."""


class SaslSession:
    def __init__(self, security, address: str, listener: str, mechanism: str):
        """`security` is the broker's `SecurityService`; `mechanism` one of `MECHANISMS` (ValueError otherwise)."""
        if mechanism not in MECHANISMS:
            raise ValueError(f"unsupported SASL mechanism {mechanism!r}; enabled: {', '.join(MECHANISMS)}")
        self.security = security
        self.address = address
        self.listener = listener
        self.mechanism = mechanism
        self.principal: str | None = None
        self._scram: ScramExchange | None = None
        self._steps = 0

    @property
    def complete(self) -> bool:
        return self.principal is not None

    async def step(self, token: bytes) -> bytes:
        """The server's answer to `token`; sets `principal` when the exchange succeeds. SaslFailed otherwise
        (the session is then over)."""
        if self.complete or self._steps >= 2:
            raise SaslFailed("the SASL exchange is already over")
        self._steps += 1
        try:
            self.security.check_address(self.address, self.listener)
        except ApiError as exc:
            raise SaslFailed(exc.message) from None
        if len(token) > MAX_TOKEN_BYTES:
            return self._failed("SASL token too large")
        if self.mechanism == "PLAIN":
            return await self._plain(token)
        return await self._scram_step(token)

    def _failed(self, message: str) -> bytes:
        self.security.login_failed(self.address, self.listener)
        raise SaslFailed(message)

    async def _plain(self, token: bytes) -> bytes:
        parts = token.split(b"\0")
        if len(parts) != 3:
            return self._failed("malformed SASL/PLAIN token")
        authzid, user, password = parts
        try:
            name = user.decode()
            if authzid and authzid.decode() != name:
                return self._failed("SASL/PLAIN: authorization id differs from the user")
        except UnicodeDecodeError:
            return self._failed("malformed SASL/PLAIN token")
        try:
            self.principal = await self.security.login(name, password, self.address, self.listener)
        except ApiError as exc:  # login counted the failure
            raise SaslFailed("Authentication failed: invalid credentials" if exc.error_code == 40101
                             else exc.message) from None
        return b""

    async def _scram_step(self, token: bytes) -> bytes:
        try:
            if self._scram is None:
                user = client_first_user(token)
                if self.security.credential(user, self.mechanism) is None:
                    await self.security.catch_up()  # created a moment ago through another broker?
                self._scram = ScramExchange(self.mechanism, lambda name: self.security.credential(name,
                                                                                                  self.mechanism))
                return self._scram.first(token)
            user, server_final = self._scram.final(token)
        except ScramError as exc:
            return self._failed(f"Authentication failed: {exc}")
        self.principal = f"User:{user}"
        return server_final
