"""ACLs (raftka.node.security.acl, .state): the decision against a reference model, filters, parsing, and the
metadata commands that keep users and ACLs."""

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from security_model import NAMES, REQUEST_OPERATIONS, USERS, ModelAcl, acls_strategy, model_allows

from raftka.node.cluster.metadata import MetadataStateMachine, command
from raftka.node.security.acl import (AclBinding, AclError, AclFilter, AclIndex, Operation, PatternFilter,
                                      Resource, ResourceType, parse_enum)
from raftka.node.security.scram import ScramCredential
from raftka.node.security.state import acl_bindings, credentials, security_version


def index_of(acls: list[ModelAcl]) -> AclIndex:
    return AclIndex(AclBinding.from_json(a.doc()) for a in acls)


@settings(max_examples=400, deadline=None)
@given(acls=acls_strategy(hosts=("*", "10.0.0.1")), user=st.sampled_from(USERS),
       host=st.sampled_from(["10.0.0.1", "10.0.0.2"]), operation=st.sampled_from(REQUEST_OPERATIONS),
       resource=st.one_of(st.tuples(st.sampled_from(["topic", "group"]), st.sampled_from(NAMES)),
                          st.just(("cluster", "kafka-cluster"))))
def test_decision_equals_the_reference_model(acls, user, host, operation, resource):
    principal = f"User:{user}"
    expected = model_allows(acls, set(), principal, host, operation, *resource)
    actual = index_of(acls).allowed(principal, host, parse_enum(Operation, operation, "operation"),
                                    Resource(parse_enum(ResourceType, resource[0], "type"), resource[1]))
    assert actual == expected


def binding(**fields) -> AclBinding:
    doc = {"principal": "User:bob", "resource_type": "topic", "resource_name": "orders", "operation": "write",
           "permission": "allow", **fields}
    return AclBinding.from_json(doc)


def test_kafka_rules_spelled_out():
    alice = "User:alice"
    index = AclIndex([binding(principal=alice, operation="read"), binding(principal="User:*", operation="describe",
                                                                          resource_name="*"),
                      binding(principal=alice, operation="read", resource_name="orders-secret", permission="deny")])
    orders, secret = Resource.topic("orders"), Resource.topic("orders-secret")
    assert index.allowed(alice, "1.2.3.4", Operation.READ, orders)
    assert not index.allowed(alice, "1.2.3.4", Operation.WRITE, orders)
    assert index.allowed("User:carol", "1.2.3.4", Operation.DESCRIBE, secret)  # User:* on '*'
    assert not index.allowed(alice, "1.2.3.4", Operation.READ, secret)  # deny wins
    assert index.allowed(alice, "1.2.3.4", Operation.DESCRIBE, secret)  # a deny of read does not deny describe
    deny_all = AclIndex([binding(principal=alice, operation="all"), binding(principal=alice, operation="all",
                                                                            permission="deny", resource_name="*")])
    assert not deny_all.allowed(alice, "h", Operation.DESCRIBE, orders)


def test_write_on_some_topic():
    alice = "User:alice"
    assert AclIndex([binding(principal=alice, pattern_type="prefixed", resource_name="ord")]).allowed_on_some(
        alice, "h", Operation.WRITE, ResourceType.TOPIC)
    assert not AclIndex([binding(principal=alice, operation="read")]).allowed_on_some(
        alice, "h", Operation.WRITE, ResourceType.TOPIC)
    assert not AclIndex([binding(principal=alice), binding(principal="User:*", resource_name="*",
                                                           permission="deny")]).allowed_on_some(
        alice, "h", Operation.WRITE, ResourceType.TOPIC)


@pytest.mark.parametrize("doc, problem", [
    ({"principal": "alice"}, "User:<name>"),
    ({"principal": "Group:x"}, "User:<name>"),
    ({"operation": "fly"}, "'operation' must be one of"),
    ({"permission": "maybe"}, "'permission'"),
    ({"resource_type": "transactional_id"}, "'resource_type'"),
    ({"resource_name": ""}, "non-empty"),
    ({"host": "example.com"}, "IP address"),
    ({"pattern_type": "match"}, "'pattern_type'"),
    ({"resource_type": "cluster", "resource_name": "other"}, "kafka-cluster"),
    ({"colour": "red"}, "unknown fields"),
])
def test_invalid_bindings_say_which_field(doc, problem):
    base = {"principal": "User:bob", "resource_type": "topic", "resource_name": "orders", "operation": "write",
            "permission": "allow"}
    with pytest.raises(AclError, match=problem):
        AclBinding.from_json({**base, **doc})


def test_names_are_lenient_and_rendered_in_lower_case():
    b = AclBinding.from_json({"principal": "User:bob", "resource_type": "Cluster", "operation": "DescribeConfigs",
                              "permission": "ALLOW"})
    assert b.to_json() == {"principal": "User:bob", "host": "*", "resource_type": "cluster",
                           "resource_name": "kafka-cluster", "pattern_type": "literal",
                           "operation": "describe_configs", "permission": "allow"}


def test_filters_any_literal_prefixed_and_match():
    literal, prefixed, wildcard = binding(), binding(resource_name="ord", pattern_type="prefixed"), \
        binding(resource_name="*")
    everything = [literal, prefixed, wildcard]

    def selected(**doc):
        f = AclFilter.from_json(doc)
        return [b for b in everything if f.matches(b)]

    assert selected() == everything
    assert selected(resource_name="orders") == [literal]  # a name defaults to the literal pattern
    assert selected(resource_name="ord", pattern_type="any") == [prefixed]
    assert selected(resource_name="orders", pattern_type="match") == everything
    assert selected(resource_name="payments", pattern_type="match") == [wildcard]
    assert selected(pattern_type="prefixed") == [prefixed]
    assert selected(operation="read") == [] and selected(principal="User:bob", permission="any") == everything
    assert AclFilter.from_json({}).pattern is PatternFilter.ANY


# ------------------------------------------------------------- metadata commands


def apply(sm: MetadataStateMachine, op: str, **fields) -> dict:
    sm.applied_index += 1
    return sm.apply(sm.applied_index, 1, command(op, **fields))


def cred(password="pw", mechanism="SCRAM-SHA-256") -> dict:
    return ScramCredential.from_password(mechanism, password).to_json()


PLAIN_PASSWORD = "a plain password!"  # spaces and "!": never part of a base64 salt or key by chance ("pw" was)


def test_users_and_acls_in_the_metadata_survive_a_checkpoint(tmp_path):
    sm = MetadataStateMachine(str(tmp_path))
    result = apply(sm, "alter_scram", upserts=[{"name": "alice", "mechanism": "SCRAM-SHA-256",
                                                "credential": cred(PLAIN_PASSWORD)},
                                               {"name": "bad name", "mechanism": "SCRAM-SHA-256",
                                                "credential": cred()},
                                               {"name": "bob", "mechanism": "SCRAM-SHA-1", "credential": cred()}],
                   deletions=[{"name": "carol", "mechanism": "SCRAM-SHA-256"}])
    assert [r["error"] for r in result["results"]] == [None, 42206, 42206, 40407]
    assert apply(sm, "create_acls", acls=[binding().to_json(), binding().to_json()]) == {"ok": True, "created": 1}
    assert apply(sm, "create_acls", acls=[{"principal": "nobody"}])["error"] == 42206
    version = security_version(sm.state)
    sm.checkpoint()
    again = MetadataStateMachine(str(tmp_path))
    assert set(credentials(again.state, "alice")) == {"SCRAM-SHA-256"}
    assert acl_bindings(again.state) == [binding().to_json()] and security_version(again.state) == version
    raw = orjson.dumps(again.state)
    assert PLAIN_PASSWORD.encode() not in raw  # only salted keys are stored


def test_delete_acls_answers_what_each_filter_removed(tmp_path):
    sm = MetadataStateMachine(str(tmp_path))
    bindings = [binding().to_json(), binding(operation="read").to_json(), binding(principal="User:eve").to_json()]
    apply(sm, "create_acls", acls=bindings)
    result = apply(sm, "delete_acls", filters=[{"principal": "User:bob", "operation": "read"},
                                               {"principal": "User:bob"}])
    assert result["deleted"] == [[bindings[1]], bindings[:2]]
    assert acl_bindings(sm.state) == [bindings[2]]


def test_bootstrap_users_happens_once_and_never_overwrites(tmp_path):
    sm = MetadataStateMachine(str(tmp_path))
    apply(sm, "alter_scram", upserts=[{"name": "admin", "mechanism": "SCRAM-SHA-256", "credential": cred("old")}],
          deletions=[])
    first = apply(sm, "bootstrap_users", users={"admin": {"SCRAM-SHA-256": cred("new")},
                                                "ops": {"SCRAM-SHA-512": cred("x", "SCRAM-SHA-512")}})
    assert first == {"ok": True, "created": ["ops"]}
    assert ScramCredential.from_json("SCRAM-SHA-256", credentials(sm.state, "admin")["SCRAM-SHA-256"]) \
        .verify_password(b"old")
    apply(sm, "delete_user", name="ops")
    assert apply(sm, "bootstrap_users", users={"ops": {"SCRAM-SHA-512": cred("x", "SCRAM-SHA-512")}})["created"] == []
    assert apply(sm, "delete_user", name="ops")["error"] == 40407
