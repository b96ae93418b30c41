"""A small reference model of Kafka's authorization rules, written independently of raftka.node.security.acl,
and hypothesis strategies for ACL sets and requests (used by the unit and the broker-level matrix tests)."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import strategies as st

OPERATIONS = ["all", "read", "write", "create", "delete", "alter", "describe", "describe_configs", "alter_configs"]
REQUEST_OPERATIONS = [op for op in OPERATIONS if op != "all"]
NAMES = ["orders", "orders-eu", "ord", "payments", "logs"]
PREFIXES = ["ord", "orders", "pay", "x"]
USERS = ["alice", "bob"]


@dataclass(frozen=True)
class ModelAcl:
    principal: str
    host: str
    resource_type: str
    resource_name: str
    pattern_type: str
    operation: str
    permission: str

    def doc(self) -> dict:
        return dict(self.__dict__)


def model_allows(acls: list[ModelAcl], superusers: set[str], principal: str, host: str, operation: str,
                 resource_type: str, name: str) -> bool:
    """Kafka's AclAuthorizer, spelled out: superusers pass; a matching DENY (the operation or all) wins; else
    a matching ALLOW (the operation, all, or one that implies it) allows; else no."""
    if principal in superusers:
        return True

    def applies(acl: ModelAcl) -> bool:
        if acl.principal not in (principal, "User:*") or acl.host not in (host, "*"):
            return False
        if acl.resource_type != resource_type:
            return False
        if acl.pattern_type == "prefixed":
            return name.startswith(acl.resource_name)
        return acl.resource_name == name or acl.resource_name == "*"

    relevant = [acl for acl in acls if applies(acl)]
    if any(acl.permission == "deny" and acl.operation in (operation, "all") for acl in relevant):
        return False
    implied_by = {"describe": {"describe", "read", "write", "delete", "alter"},
                  "describe_configs": {"describe_configs", "alter_configs"}}.get(operation, {operation})
    return any(acl.permission == "allow" and acl.operation in implied_by | {"all"} for acl in relevant)


def acls_strategy(hosts=("*",), max_size=8):
    """ACL sets over a few users, names and prefixes, for topics, groups and the cluster."""
    def acls(resource_type, name, pattern_type):
        return st.builds(ModelAcl, principal=st.sampled_from([f"User:{u}" for u in USERS] + ["User:*"]),
                         host=st.sampled_from(hosts), resource_type=resource_type, resource_name=name,
                         pattern_type=st.just(pattern_type), operation=st.sampled_from(OPERATIONS),
                         permission=st.sampled_from(["allow", "deny"]))

    resources = st.sampled_from(["topic", "group"])
    return st.lists(st.one_of(acls(resources, st.sampled_from(NAMES + ["*"]), "literal"),
                              acls(resources, st.sampled_from(PREFIXES), "prefixed"),
                              acls(st.just("cluster"), st.just("kafka-cluster"), "literal")),
                    max_size=max_size, unique=True)
