"""The join request and its proof of the cluster secret (raftka.node.cluster.join)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftka.node.cluster.join import JoinRequestError, join_request, parse_join_request, proof_valid

SECRET = b"cluster-secret-0123456789"


def request(**overrides):
    doc = join_request(SECRET, "cid", broker=4, incarnation=77, http_url="http://b4:8080", raft_host="b4",
                       raft_port=9090, rack="r1")
    doc.update(overrides)
    return doc


def test_a_proof_holds_only_for_the_same_secret_cluster_and_fields():
    assert proof_valid(SECRET, "cid", parse_join_request(request()))
    assert not proof_valid(b"another-secret-0123456789", "cid", parse_join_request(request()))
    assert not proof_valid(SECRET, "other-cluster", parse_join_request(request()))
    assert not proof_valid(None, "cid", parse_join_request(request()))
    for field, value in (("id", 5), ("incarnation", 78), ("http_url", "http://evil:1"), ("raft_host", "evil"),
                         ("raft_port", 1), ("rack", None)):
        assert not proof_valid(SECRET, "cid", parse_join_request(request(**{field: value}))), field


@pytest.mark.parametrize("doc,message", [
    ([], "expected a JSON object"),
    ({**request(), "extra": 1}, "unknown fields"),
    ({k: v for k, v in request().items() if k != "proof"}, "'proof' is missing"),
    (request(id=0), "'id' is invalid"),
    (request(id=True), "'id' is invalid"),
    (request(incarnation=0), "'incarnation' is invalid"),
    (request(http_url="ftp://x"), "'http_url' is invalid"),
    (request(raft_port=70000), "'raft_port' is invalid"),
    (request(rack=""), "'rack' is invalid"),
])
def test_malformed_requests_say_which_field(doc, message):
    with pytest.raises(JoinRequestError, match=message):
        parse_join_request(doc)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["id", "incarnation", "http_url", "raft_host", "raft_port", "rack", "proof",
                                        "x"]),
                       st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=70),
                                 st.lists(st.integers()))))
def test_any_document_is_parsed_or_refused_cleanly(doc):
    try:
        parsed = parse_join_request(doc)
    except JoinRequestError:
        return
    assert proof_valid(SECRET, "cid", parsed) in (True, False)
