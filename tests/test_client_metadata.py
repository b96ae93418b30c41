"""Metadata cache: parsing GET /metadata, refresh rules, leader hints, broker liveness, routing candidates."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftka.client.errors import ProtocolError
from raftka.client.metadata import MetadataCache

BOOT = ["http://boot:1"]
DOC = {
    "brokers": {"1": "http://b1:1", "2": "http://b2:2", "3": "http://b3:3/"},
    "topics": {
        "orders": {"partitions": [{"leader": 1, "replicas": [1, 2, 3]}, {"leader": 2, "replicas": [2, 3, 1]}]},
        "electing": {"partitions": [{"leader": None, "replicas": [3, 1, 2]}]},
    },
    "metadata_leader": 3,
}


def cache(**kwargs) -> MetadataCache:
    c = MetadataCache(BOOT, **{"max_age_s": 30, "refresh_backoff_s": 0.1, "down_backoff_s": 1.0, **kwargs})
    c.update(DOC, now=100.0)
    return c


def test_parse_metadata_document():
    c = cache()
    assert c.brokers == {1: "http://b1:1", 2: "http://b2:2", 3: "http://b3:3"}
    assert [p.leader for p in c.partitions("orders")] == [1, 2]
    assert c.partitions("orders")[1].replicas == (2, 3, 1)
    assert c.partitions("missing") is None
    assert c.metadata_leader == 3 and c.coordinator_url(100) == "http://b3:3"


def test_explicit_partition_numbers_are_honoured():
    c = MetadataCache(BOOT)
    c.update({"brokers": {}, "topics": {"t": {"partitions": [{"partition": 1, "leader": 5}, {"partition": 0, "leader": 4}]}}}, 0)
    assert [p.leader for p in c.partitions("t")] == [4, 5]


@pytest.mark.parametrize(
    "doc",
    [
        [],
        {"brokers": []},
        {"brokers": {"x": "http://a:1"}},
        {"brokers": {"1": ""}},
        {"topics": {"t": {}}},
        {"topics": {"t": {"partitions": [{"leader": "1"}]}}},
        {"topics": {"t": {"partitions": [{"partition": 5}]}}},
        {"topics": {"t": {"partitions": [{"partition": 0}, {"partition": 0}]}}},
        {"topics": {"t": {"partitions": [{"replicas": [1, "2"]}]}}},
    ],
)
def test_malformed_metadata_is_a_protocol_error(doc):
    with pytest.raises(ProtocolError):
        MetadataCache(BOOT).update(doc, 0)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=20,
)


@given(st.fixed_dictionaries({}, optional={"brokers": json_values, "topics": json_values, "metadata_leader": json_values}))
def test_any_json_either_parses_or_raises_protocol_error(doc):
    try:
        MetadataCache(BOOT).update(doc, 0)
    except ProtocolError:
        pass


def test_refresh_rules_never_fetched_is_due():
    c = MetadataCache(BOOT)
    assert c.refresh_due(0.0) and c.refresh_delay(0.0) == 0.0


def test_refresh_rules_fresh_then_aged():
    c = cache(max_age_s=30)
    assert c.refresh_delay(110.0) is None and not c.refresh_due(110.0)
    assert abs(c.age_refresh_in(110.0) - 20.0) < 1e-9
    assert c.refresh_due(130.0)


def test_invalidation_is_rate_limited_by_the_backoff():
    c = cache(refresh_backoff_s=0.5)
    c.refresh_started(100.0)
    c.update(DOC, 100.0)
    c.invalidate()
    assert c.invalidated
    assert abs(c.refresh_delay(100.2) - 0.3) < 1e-9  # a storm of errors: one refresh per backoff period
    assert c.refresh_due(100.5)
    c.update(DOC, 100.6)
    assert not c.invalidated and not c.refresh_due(100.6)


def test_not_leader_hint_moves_the_leader_without_a_refresh():
    c = cache()
    assert c.on_not_leader("orders", 0, 2, "http://b2:2") is True
    assert c.leader_url("orders", 0, 100.0) == "http://b2:2"
    assert not c.invalidated


def test_not_leader_hint_with_a_new_broker_url_registers_it():
    c = cache()
    c.on_not_leader("orders", 0, 9, "http://b9:9/")
    assert c.leader_url("orders", 0, 100.0) == "http://b9:9" and not c.invalidated


def test_not_leader_hint_naming_an_unknown_broker_without_url_forces_a_refresh():
    c = cache()
    c.note_leader("orders", 1, 9)
    assert c.invalidated and c.leader_url("orders", 1, 100.0) is None


def test_not_leader_without_a_leader_invalidates():
    c = cache()
    assert c.on_not_leader("orders", 0, None, None) is False
    assert c.invalidated


def test_served_by_header_updates_a_partition_leader():
    c = cache()
    c.note_leader("orders", 1, 3)
    assert c.leader_url("orders", 1, 100.0) == "http://b3:3"


def test_unknown_leader_means_any_broker():
    c = cache()
    assert c.leader_url("electing", 0, 100.0) is None
    assert c.leader_url("orders", 7, 100.0) is None
    assert c.leader_url("missing", 0, 100.0) is None


def test_suspected_down_brokers_are_avoided_for_a_while():
    c = cache(down_backoff_s=1.0)
    c.mark_down("http://b1:1", 100.0)
    assert c.leader_url("orders", 0, 100.5) is None  # leader suspected down: any broker forwards
    assert c.candidates(100.5)[-1] == "http://b1:1"  # tried last
    assert c.leader_url("orders", 0, 101.0) == "http://b1:1"  # suspicion expired
    c.mark_down("http://b1:1", 102.0)
    c.mark_up("http://b1:1")
    assert c.leader_url("orders", 0, 102.1) == "http://b1:1"


def test_candidates_prefer_then_known_brokers_rotated_then_bootstrap():
    c = cache()
    first = c.candidates(100.0, prefer="http://b2:2")
    assert first[0] == "http://b2:2"
    assert sorted(first) == sorted(["http://b1:1", "http://b2:2", "http://b3:3", "http://boot:1"])
    assert first[-1] == "http://boot:1"
    heads = {tuple(c.candidates(100.0)[:3]) for _ in range(3)}
    assert len(heads) == 3  # rotated: "any broker" load spreads over the cluster


def test_before_first_fetch_only_bootstrap_addresses_are_candidates():
    c = MetadataCache(["http://a:1", "http://b:2"])
    assert c.candidates(0.0) == ["http://a:1", "http://b:2"]
