"""SaslHandshake and SaslAuthenticate: logging a Kafka connection in with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.

SaslHandshake names the mechanism (UNSUPPORTED_SASL_MECHANISM with the enabled list otherwise); then each
SaslAuthenticate carries one token of the exchange (`raftka.node.security.sasl.SaslSession`) and answers the
server's. When the exchange completes the connection is logged in as ``User:<name>`` (a SASL login overrides a
client certificate's principal). A failure answers SASL_AUTHENTICATION_FAILED with a message that names no
secret, and the connection closes after the answer (Kafka's behaviour). A v0 handshake (its tokens would follow
outside Kafka frames) answers ILLEGAL_SASL_STATE; clients use v1. Re-authentication (KIP-368) is not offered:
SASL requests on a logged-in connection answer ILLEGAL_SASL_STATE, as do SASL requests while authentication is
off (`--auth none`).
"""

from __future__ import annotations

from typing import Any

from kafka.protocol.sasl import SaslAuthenticateResponse, SaslHandshakeResponse

from raftka.node.kafka.access import LISTENER
from raftka.node.kafka.errors import ErrorCode
from raftka.node.security.sasl import MECHANISMS, SaslFailed, SaslSession


async def sasl_handshake(conn: Any, request: Any) -> Any:
    def answer(code: int) -> Any:
        return SaslHandshakeResponse(version=request.api_version, error_code=code, mechanisms=list(MECHANISMS))

    if conn.sasl_logged_in or not conn.server.services.security.enabled or request.api_version == 0:
        return answer(ErrorCode.ILLEGAL_SASL_STATE)
    mechanism = request.body.mechanism
    if mechanism not in MECHANISMS:
        return answer(ErrorCode.UNSUPPORTED_SASL_MECHANISM)
    conn.sasl = SaslSession(conn.server.services.security, conn.host, LISTENER, mechanism)
    return answer(ErrorCode.NONE)


async def sasl_authenticate(conn: Any, request: Any) -> Any:
    def answer(code: int, message: str | None = None, token: bytes = b"") -> Any:
        return SaslAuthenticateResponse(version=request.api_version, error_code=code, error_message=message,
                                        auth_bytes=token, session_lifetime_ms=0)

    session = conn.sasl
    if session is None or conn.sasl_logged_in:
        conn.login_failed = True
        return answer(ErrorCode.ILLEGAL_SASL_STATE, "SaslAuthenticate needs a SaslHandshake first")
    try:
        token = await session.step(request.body.auth_bytes or b"")
    except SaslFailed as exc:
        conn.sasl, conn.login_failed = None, True
        return answer(ErrorCode.SASL_AUTHENTICATION_FAILED, str(exc))
    if session.complete:
        conn.sasl = None
        conn.logged_in(session.principal)
    return answer(ErrorCode.NONE, None, token)


__all__ = ["sasl_authenticate", "sasl_handshake"]
