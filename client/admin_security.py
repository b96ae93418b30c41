"""Users and ACLs for the admin client (mixed into ``AIOAdmin``): ``/users``, ``/acls`` and ``/whoami``.

ACL bindings are ``Acl`` values with Kafka's fields in lower case (``Acl("User:bob", "topic", "orders",
"write")``); filters are keyword arguments where a missing field matches anything.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

from raftka.client.errors import ProtocolError

__all__ = ["Acl", "UsersAndAcls"]

_FILTER_FIELDS = ("principal", "host", "resource_type", "resource_name", "pattern_type", "operation", "permission")


@dataclass(frozen=True)
class Acl:
    """An ACL binding: allow or deny `principal` (``User:name`` or ``User:*``) `operation` on a resource."""

    principal: str
    resource_type: str  # topic, group, cluster
    resource_name: str  # a name, '*' for all, or a prefix with pattern_type="prefixed"; "kafka-cluster"
    operation: str  # read, write, create, delete, alter, describe, describe_configs, alter_configs, all
    permission: str = "allow"
    pattern_type: str = "literal"
    host: str = "*"

    @classmethod
    def from_json(cls, doc: Any) -> Acl:
        try:
            return cls(**{k: str(doc[k]) for k in _FILTER_FIELDS})
        except (KeyError, TypeError) as exc:
            raise ProtocolError(f"malformed ACL {doc!r} ({exc})") from None

    def to_json(self) -> dict[str, str]:
        return asdict(self)


def _filter(fields: dict[str, str | None]) -> dict[str, str]:
    unknown = set(fields) - set(_FILTER_FIELDS)
    if unknown:
        raise TypeError(f"unknown ACL filter fields {sorted(unknown)}")
    return {k: v for k, v in fields.items() if v is not None}


class UsersAndAcls:
    """Needs ``_read(path)`` and ``_write(method, path, json=...)`` from the admin client."""

    async def _read(self, path: str, **kwargs: Any) -> Any: ...

    async def _write(self, method: str, path: str, **kwargs: Any) -> Any: ...

    async def whoami(self) -> dict[str, Any]:
        """The principal the brokers see for these credentials, and whether it is a superuser."""
        return await self._read("/whoami")

    async def list_users(self) -> dict[str, list[tuple[str, int]]]:
        """user -> [(mechanism, iterations)] (the brokers never answer keys or salts)."""
        doc = await self._read("/users")
        try:
            return {u["name"]: [(m["mechanism"], m["iterations"]) for m in u["mechanisms"]] for u in doc["users"]}
        except (KeyError, TypeError) as exc:
            raise ProtocolError(f"GET /users: malformed answer ({exc})") from None

    async def create_user(self, name: str, password: str, mechanisms: Sequence[str] | None = None) -> bool:
        """Create the user, or set a new password; True if it was created. Both SCRAM mechanisms by default."""
        body: dict[str, Any] = {"name": name, "password": password}
        if mechanisms is not None:
            body["mechanisms"] = list(mechanisms)
        return bool((await self._write("POST", "/users", json=body)).get("created"))

    async def delete_user(self, name: str) -> None:
        await self._write("DELETE", "/users/" + quote(name, safe=""))

    async def list_acls(self, **acl_filter: str | None) -> list[Acl]:
        doc = await self._read("/acls", params=_filter(acl_filter))
        return [Acl.from_json(a) for a in doc.get("acls", [])]

    async def create_acls(self, acls: Iterable[Acl]) -> int:
        """Add bindings (ones that exist already are kept once); the number that were new."""
        body = {"acls": [a.to_json() for a in acls]}
        return int((await self._write("POST", "/acls", json=body)).get("created", 0))

    async def delete_acls(self, **acl_filter: str | None) -> list[Acl]:
        """Remove every binding the filter matches (a missing field matches anything); the removed ones."""
        doc = await self._write("DELETE", "/acls", json=_filter(acl_filter))
        return [Acl.from_json(a) for a in doc.get("deleted", [])]
