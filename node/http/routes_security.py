"""Users and ACLs over HTTP: ``/users``, ``/acls``, and ``/whoami`` (who the request is authenticated as).

Thin adapters over `SecurityService`; writes run on the metadata leader and are forwarded there.

* ``GET /users`` -> ``{"users": [{"name", "mechanisms": [{"mechanism", "iterations"}]}]}`` (never a key);
  ``POST /users`` ``{"name", "password"[, "mechanisms": ["SCRAM-SHA-256", ...], "iterations": 4096]}``
  creates the user (201) or changes its password (200); ``DELETE /users/{name}`` (204).
* ``GET /acls[?principal=&host=&resource_type=&resource_name=&pattern_type=&operation=&permission=]``
  -> ``{"acls": [...]}`` (absent fields match anything; with a resource name the pattern type defaults to
  literal; ``pattern_type=match`` lists the bindings that apply to that name);
  ``POST /acls`` one binding or ``{"acls": [...]}`` -> ``{"created": n}`` (201);
  ``DELETE /acls`` one filter or ``{"filters": [...]}`` -> ``{"deleted": [...]}``.
"""

from __future__ import annotations

from aiohttp import web

from raftka.node.errors import InvalidRequest
from raftka.node.http.auth import principal_of
from raftka.node.http.common import SERVICES_KEY, json_response, read_json
from raftka.node.http.forwarding import forwarded_elsewhere
from raftka.node.security.acl import AclBinding, AclError, AclFilter
from raftka.node.services.security import SecurityService

__all__ = ["add_security_routes"]

_USER_FIELDS = frozenset({"name", "password", "mechanisms", "iterations"})


def _security(request: web.Request) -> SecurityService:
    return request.app[SERVICES_KEY].security


async def whoami(request: web.Request) -> web.Response:
    security = _security(request)
    principal = principal_of(request)
    return json_response({"principal": principal, "superuser": security.enabled and security.is_superuser(principal),
                          "auth": security.settings.auth, "tls": security.settings.tls is not None})


@forwarded_elsewhere
async def list_users(request: web.Request) -> web.Response:
    described = await _security(request).describe_users()
    return json_response({"users": [{"name": name, "mechanisms": mechanisms}
                                     for name, mechanisms in described.items()]})


@forwarded_elsewhere
async def set_user(request: web.Request) -> web.Response:
    doc = await read_json(request)
    unknown = set(doc) - _USER_FIELDS
    if unknown:
        raise InvalidRequest(f"Unknown fields {sorted(unknown)}; expected name, password, mechanisms, iterations.")
    options = {}
    if "mechanisms" in doc:
        if not isinstance(doc["mechanisms"], list):
            raise InvalidRequest("'mechanisms' must be a list like [\"SCRAM-SHA-256\", \"SCRAM-SHA-512\"].")
        options["mechanisms"] = doc["mechanisms"]
    if "iterations" in doc:
        options["iterations"] = doc["iterations"]
    result = await _security(request).set_password(doc.get("name"), doc.get("password"), **options)
    return json_response(result, status=201 if result["created"] else 200)


@forwarded_elsewhere
async def delete_user(request: web.Request) -> web.Response:
    await _security(request).delete_user(request.match_info["user"])
    return web.Response(status=204)


def _many(doc: dict, key: str) -> list:
    if set(doc) == {key}:
        if not isinstance(doc[key], list) or not doc[key]:
            raise InvalidRequest(f"'{key}' must be a non-empty list.")
        return doc[key]
    return [doc]


@forwarded_elsewhere
async def list_acls(request: web.Request) -> web.Response:
    try:
        acl_filter = AclFilter.from_json(dict(request.query))
    except AclError as exc:
        raise InvalidRequest(f"Invalid ACL filter: {exc}.") from None
    bindings = await _security(request).describe_acls(acl_filter)
    return json_response({"acls": [b.to_json() for b in bindings]})


@forwarded_elsewhere
async def create_acls(request: web.Request) -> web.Response:
    try:
        bindings = [AclBinding.from_json(doc) for doc in _many(await read_json(request), "acls")]
    except AclError as exc:
        raise InvalidRequest(f"Invalid ACL: {exc}.") from None
    created = await _security(request).create_acls(bindings)
    return json_response({"created": created}, status=201)


@forwarded_elsewhere
async def delete_acls(request: web.Request) -> web.Response:
    docs = _many(await read_json(request), "filters")
    try:
        filters = [AclFilter.from_json(doc) for doc in docs]
    except AclError as exc:
        raise InvalidRequest(f"Invalid ACL filter: {exc}.") from None
    deleted = await _security(request).delete_acls(filters, docs)
    unique = {b: None for matched in deleted for b in matched}
    return json_response({"deleted": [b.to_json() for b in unique]})


def add_security_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/whoami", whoami)
    r.add_get("/users", list_users)
    r.add_post("/users", set_user)
    r.add_delete("/users/{user}", delete_user)
    r.add_get("/acls", list_acls)
    r.add_post("/acls", create_acls)
    r.add_delete("/acls", delete_acls)
