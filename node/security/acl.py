"""Kafka's ACL model and the authorization decision every front end uses.

An ACL binding allows or denies one principal (``User:alice``, or ``User:*`` for every user), from one host
(``*`` or an IP address), one operation on the resources a pattern names: a resource type (topic, group,
cluster), and a literal name (``*`` is every resource of the type) or a prefix. The decision
(`AclIndex.allowed`) is Kafka's AclAuthorizer:

* a DENY binding for the operation, or for ALL, that matches the principal, host and resource wins;
* else an ALLOW binding for the operation or ALL allows it, where ALLOW of READ, WRITE, DELETE or ALTER also
  allows DESCRIBE, and ALLOW of ALTER_CONFIGS also allows DESCRIBE_CONFIGS (a DENY implies nothing);
* else it is denied (no ACL, no access; superusers are decided before this, by the caller).

`AclFilter` is Kafka's binding filter (for listing and deleting): every field may be "any", and the pattern
type "match" selects the bindings that would apply to one resource name. Bindings travel as JSON documents
with lower-case names (``{"principal": "User:bob", "host": "*", "resource_type": "topic", "resource_name":
"orders", "pattern_type": "literal", "operation": "write", "permission": "allow"}``); the enum values are
Kafka's wire codes.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

__all__ = ["CLUSTER_NAME", "WILDCARD", "AclBinding", "AclError", "AclFilter", "AclIndex", "Operation",
           "PatternFilter", "PatternType", "Permission", "Resource", "ResourceType", "parse_enum",
           "parse_principal"]

CLUSTER_NAME = "kafka-cluster"  # Kafka's name of the one cluster resource
WILDCARD = "*"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class AclError(ValueError):
    """A binding or filter that cannot be used; the message says which field and why."""


class ResourceType(Enum):
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4


class Operation(Enum):
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12


class PatternType(Enum):
    LITERAL = 3
    PREFIXED = 4


class PatternFilter(Enum):
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Permission(Enum):
    DENY = 2
    ALLOW = 3


_IMPLIED_BY = {  # an ALLOW of any of these allows the key operation
    Operation.DESCRIBE: frozenset({Operation.DESCRIBE, Operation.READ, Operation.WRITE, Operation.DELETE,
                                   Operation.ALTER, Operation.ALL}),
    Operation.DESCRIBE_CONFIGS: frozenset({Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS, Operation.ALL}),
}


def _allowing(operation: Operation) -> frozenset[Operation]:
    return _IMPLIED_BY.get(operation, frozenset({operation, Operation.ALL}))


def _wire(member: Enum) -> str:
    return member.name.lower()


def parse_enum(kind: type[Enum], raw: object, field: str) -> Any:
    """'describe_configs', 'DescribeConfigs', 'DESCRIBE-CONFIGS' -> Operation.DESCRIBE_CONFIGS."""
    if isinstance(raw, str):
        wanted = re.sub(r"[_\-\s]", "", raw).lower()
        for member in kind:
            if member.name.replace("_", "").lower() == wanted:
                return member
    choices = ", ".join(_wire(m) for m in kind)
    raise AclError(f"'{field}' must be one of {choices}; got {raw!r}")


def parse_principal(raw: object, field: str = "principal") -> str:
    """'User:alice' (or 'User:*'), checked."""
    if not isinstance(raw, str):
        raise AclError(f"'{field}' must be a string like 'User:alice'")
    kind, sep, name = raw.partition(":")
    if not sep or kind != "User" or not name or len(raw) > 512 or _CONTROL.search(raw):
        raise AclError(f"'{field}' must be 'User:<name>' or 'User:*'; got {raw!r}")
    return raw


def _parse_host(raw: object) -> str:
    if raw == WILDCARD:
        return raw
    try:
        return str(ipaddress.ip_address(raw))  # type: ignore[arg-type]
    except ValueError:
        raise AclError(f"'host' must be '*' or an IP address; got {raw!r}") from None


def _parse_name(raw: object, resource_type: ResourceType | None) -> str:
    if not isinstance(raw, str) or not raw or len(raw) > 1024 or _CONTROL.search(raw):
        raise AclError(f"'resource_name' must be a non-empty string; got {raw!r}")
    if resource_type is ResourceType.CLUSTER and raw != CLUSTER_NAME:
        raise AclError(f"the cluster resource is named '{CLUSTER_NAME}'; got {raw!r}")
    return raw


@dataclass(frozen=True)
class Resource:
    type: ResourceType
    name: str

    @classmethod
    def topic(cls, name: str) -> Resource:
        return cls(ResourceType.TOPIC, name)

    @classmethod
    def group(cls, name: str) -> Resource:
        return cls(ResourceType.GROUP, name)

    @classmethod
    def cluster(cls) -> Resource:
        return cls(ResourceType.CLUSTER, CLUSTER_NAME)


_BINDING_FIELDS = frozenset({"principal", "host", "resource_type", "resource_name", "pattern_type", "operation",
                             "permission"})


def _check_fields(doc: object, what: str) -> Mapping[str, Any]:
    if not isinstance(doc, Mapping):
        raise AclError(f"an ACL {what} must be a JSON object")
    unknown = set(doc) - _BINDING_FIELDS
    if unknown:
        raise AclError(f"unknown fields {sorted(unknown)}; an ACL {what} has {', '.join(sorted(_BINDING_FIELDS))}")
    return doc


@dataclass(frozen=True)
class AclBinding:
    principal: str
    host: str
    resource_type: ResourceType
    resource_name: str
    pattern_type: PatternType
    operation: Operation
    permission: Permission

    @classmethod
    def from_json(cls, doc: object) -> AclBinding:
        doc = _check_fields(doc, "binding")
        missing = [f for f in ("principal", "resource_type", "operation", "permission") if f not in doc]
        if missing:
            raise AclError(f"missing fields {missing}")
        resource_type = parse_enum(ResourceType, doc["resource_type"], "resource_type")
        default_name = CLUSTER_NAME if resource_type is ResourceType.CLUSTER else None
        if doc.get("resource_name", default_name) is None:
            raise AclError("'resource_name' is required for topics and groups ('*' for all of them)")
        pattern_type = parse_enum(PatternType, doc.get("pattern_type", "literal"), "pattern_type")
        if resource_type is ResourceType.CLUSTER and pattern_type is not PatternType.LITERAL:
            raise AclError("the cluster resource takes a literal pattern")
        return cls(parse_principal(doc["principal"]), _parse_host(doc.get("host", WILDCARD)), resource_type,
                   _parse_name(doc.get("resource_name", default_name), resource_type), pattern_type,
                   parse_enum(Operation, doc["operation"], "operation"),
                   parse_enum(Permission, doc["permission"], "permission"))

    def to_json(self) -> dict[str, str]:
        return {"principal": self.principal, "host": self.host, "resource_type": _wire(self.resource_type),
                "resource_name": self.resource_name, "pattern_type": _wire(self.pattern_type),
                "operation": _wire(self.operation), "permission": _wire(self.permission)}

    def applies_to(self, resource: Resource) -> bool:
        if self.resource_type is not resource.type:
            return False
        if self.pattern_type is PatternType.PREFIXED:
            return resource.name.startswith(self.resource_name)
        return self.resource_name in (resource.name, WILDCARD)


@dataclass(frozen=True)
class AclFilter:
    """None in a field means "any"."""

    principal: str | None = None
    host: str | None = None
    resource_type: ResourceType | None = None
    resource_name: str | None = None
    pattern: PatternFilter = PatternFilter.ANY
    operation: Operation | None = None
    permission: Permission | None = None

    @classmethod
    def from_json(cls, doc: object) -> AclFilter:
        """Absent fields and the value "any" match anything; the pattern type defaults to "literal" when a
        resource name is given (as in Kafka's kafka-acls tool), else to "any"."""
        doc = _check_fields(doc, "filter")

        def given(name: str) -> object | None:
            value = doc.get(name)
            return None if value is None or (isinstance(value, str) and value.lower() == "any") else value

        resource_type = None if given("resource_type") is None else \
            parse_enum(ResourceType, doc["resource_type"], "resource_type")
        name = given("resource_name")
        raw_pattern = doc.get("pattern_type")
        pattern = PatternFilter.ANY if raw_pattern is None and name is None else \
            PatternFilter.LITERAL if raw_pattern is None else parse_enum(PatternFilter, raw_pattern, "pattern_type")
        return cls(
            principal=None if given("principal") is None else parse_principal(doc["principal"]),
            host=None if given("host") is None else _parse_host(doc["host"]),
            resource_type=resource_type,
            resource_name=None if name is None else _parse_name(name, resource_type),
            pattern=pattern,
            operation=None if given("operation") is None else parse_enum(Operation, doc["operation"], "operation"),
            permission=None if given("permission") is None else
            parse_enum(Permission, doc["permission"], "permission"))

    def matches(self, binding: AclBinding) -> bool:
        if self.principal is not None and self.principal != binding.principal:
            return False
        if self.host is not None and self.host != binding.host:
            return False
        if self.resource_type is not None and self.resource_type is not binding.resource_type:
            return False
        if self.operation is not None and self.operation is not binding.operation:
            return False
        if self.permission is not None and self.permission is not binding.permission:
            return False
        if self.pattern not in (PatternFilter.ANY, PatternFilter.MATCH) and \
                self.pattern.name != binding.pattern_type.name:
            return False
        if self.resource_name is None:
            return True
        if self.pattern is not PatternFilter.MATCH:
            return self.resource_name == binding.resource_name
        if binding.pattern_type is PatternType.PREFIXED:
            return self.resource_name.startswith(binding.resource_name)
        return binding.resource_name in (self.resource_name, WILDCARD)


class AclIndex:
    """The bindings of a cluster, indexed by resource type and literal name, for `allowed`."""

    def __init__(self, bindings: Iterable[AclBinding]):
        self.bindings = tuple(bindings)
        self._literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        self._prefixed: dict[ResourceType, list[AclBinding]] = {}
        for b in self.bindings:
            if b.pattern_type is PatternType.LITERAL:
                self._literal.setdefault((b.resource_type, b.resource_name), []).append(b)
            else:
                self._prefixed.setdefault(b.resource_type, []).append(b)

    def _applicable(self, principal: str, host: str, resource: Resource) -> list[AclBinding]:
        candidates = [*self._literal.get((resource.type, resource.name), ()),
                      *(self._literal.get((resource.type, WILDCARD), ()) if resource.name != WILDCARD else ()),
                      *(b for b in self._prefixed.get(resource.type, ()) if resource.name.startswith(b.resource_name))]
        return [b for b in candidates if b.principal in (principal, "User:*") and b.host in (host, WILDCARD)]

    def allowed(self, principal: str, host: str, operation: Operation, resource: Resource) -> bool:
        applicable = self._applicable(principal, host, resource)
        if any(b.permission is Permission.DENY and b.operation in (operation, Operation.ALL) for b in applicable):
            return False
        allowing = _allowing(operation)
        return any(b.permission is Permission.ALLOW and b.operation in allowing for b in applicable)

    def allowed_on_some(self, principal: str, host: str, operation: Operation, resource_type: ResourceType) -> bool:
        """May the principal do `operation` on at least one resource of the type? (Kafka's rule for an idempotent
        producer id: WRITE on any topic.) Yes when an ALLOW for it exists, unless a DENY on every resource of the
        type (the literal ``*``) applies."""
        def mine(b: AclBinding) -> bool:
            return b.principal in (principal, "User:*") and b.host in (host, WILDCARD)

        if any(b.permission is Permission.DENY and b.operation in (operation, Operation.ALL) and mine(b)
               for b in self._literal.get((resource_type, WILDCARD), ())):
            return False
        allowing = _allowing(operation)
        return any(b.permission is Permission.ALLOW and b.operation in allowing and b.resource_type is resource_type
                   and mine(b) for b in self.bindings)
