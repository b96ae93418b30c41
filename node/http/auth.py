"""Who is asking: authentication of every HTTP request, then the route's authorization (`access`).

With ``--auth required`` a request is authenticated, in this order, by:

1. a peer signature (a request another broker forwarded or made: ``X-Raftka-Principal``, see
   `raftka.node.security.peer`) — a forged or stale one is a failed login;
2. HTTP Basic (``Authorization: Basic base64(user:password)``), as the Confluent REST Proxy does;
3. a client certificate verified against ``--tls-client-ca``: principal ``User:<subject CN>``.

Anything else gets 401 40101 "Authentication required." and nothing more (no route, topic or reason), with
``WWW-Authenticate: Basic`` unless the request says ``X-Requested-With`` (the web console asks for the password
itself). A source address that failed too often gets 429 42901 before its credentials are looked at. Routes
that are open (`access.OPEN`: /health, /openapi.json, the console's files, and /metrics and /raft with
``--metrics-auth none``) skip authentication. With ``--auth none`` every request is ``User:ANONYMOUS``.

The principal and the client's address are kept on the request (`principal_of`, `client_host_of`) for the
routes that filter listings, and for forwarding (`identity_headers`).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import quote

from aiohttp import web

from raftka.node.errors import ApiError, AuthenticationRequired
from raftka.node.http.access import OPEN, rule_for
from raftka.node.http.common import SERVICES_KEY, error_response
from raftka.node.security.acl import Operation, Resource, ResourceType
from raftka.node.security.peer import CLIENT_HOST_HEADER, PRINCIPAL_HEADER, PeerSignatureError
from raftka.node.services.security import ANONYMOUS, SecurityService
from raftka.node.security.tls import peer_principal_name

__all__ = ["auth_middleware", "authorize", "client_host_of", "identity_headers", "principal_of", "visible"]

_PRINCIPAL = "raftka.principal"
_CLIENT_HOST = "raftka.client_host"
LISTENER = "http"


def principal_of(request: web.Request) -> str:
    return request.get(_PRINCIPAL, ANONYMOUS)


def client_host_of(request: web.Request) -> str:
    return request.get(_CLIENT_HOST) or request.remote or "*"


def identity_headers(request: web.Request) -> dict[str, str]:
    """Headers that make a forwarded request act for the same client (signed by the broker's session)."""
    return {PRINCIPAL_HEADER: quote(principal_of(request), safe=":*@+"), CLIENT_HOST_HEADER: client_host_of(request)}


def _security(request: web.Request) -> SecurityService:
    return request.app[SERVICES_KEY].security


async def authorize(request: web.Request, operation: Operation, resource: Resource) -> None:
    """Raise the authorization error unless the request's principal may do `operation` on `resource`."""
    services = request.app.get(SERVICES_KEY)
    if services is not None:  # None: route modules assembled on their own (their unit tests), no security layer
        await services.security.check(principal_of(request), client_host_of(request), operation, resource, LISTENER)


def visible(request: web.Request, resource_type: ResourceType, names, operation=Operation.DESCRIBE) -> list[str]:
    """The names the request's principal may see (listings leave the others out, as Kafka's do)."""
    services = request.app.get(SERVICES_KEY)
    if services is None:
        return list(names)
    return services.security.visible(principal_of(request), client_host_of(request), resource_type, names,
                                     operation)


async def _authenticate(request: web.Request, security: SecurityService) -> tuple[str, str]:
    remote = request.remote or "unknown"
    try:
        peer = request.app[SERVICES_KEY].broker.peer_signer.verify(request.headers, request.method,
                                                                   request.raw_path)
    except PeerSignatureError:
        security.check_address(remote, LISTENER)
        security.login_failed(remote, LISTENER)
        raise AuthenticationRequired() from None
    if peer is not None:
        return peer
    header = request.headers.get("Authorization")
    if header is not None:
        security.check_address(remote, LISTENER)
        scheme, _, value = header.strip().partition(" ")
        if scheme.lower() == "basic":
            try:
                user, sep, password = base64.b64decode(value.strip(), validate=True).partition(b":")
                name = user.decode()
            except (binascii.Error, ValueError):
                sep = b""
            if sep:
                return await security.login(name, password, remote, LISTENER), remote
        security.login_failed(remote, LISTENER)
        raise AuthenticationRequired()
    transport = request.transport
    common_name = peer_principal_name(transport.get_extra_info("peercert") if transport is not None else None)
    if common_name:
        return f"User:{common_name}", remote
    raise AuthenticationRequired()


@web.middleware
async def auth_middleware(request: web.Request, handler):
    security = _security(request)
    rule = rule_for(request, security.settings.metrics_auth)
    if not security.enabled or rule is OPEN:
        request[_PRINCIPAL], request[_CLIENT_HOST] = ANONYMOUS, request.remote or "*"
        return await handler(request)
    try:
        request[_PRINCIPAL], request[_CLIENT_HOST] = await _authenticate(request, security)
    except AuthenticationRequired as exc:
        response = error_response(exc)
        if "X-Requested-With" not in request.headers:
            response.headers["WWW-Authenticate"] = 'Basic realm="raftka", charset="UTF-8"'
        return response
    except ApiError as exc:  # too many failures
        return error_response(exc)
    if request.match_info.http_exception is None:  # an unknown route answers 404/405 to whoever is logged in
        await rule(request, principal_of(request), client_host_of(request), security)
    return await handler(request)
