"""Prometheus text exposition of raftka.node.metrics, checked with prometheus_client's parser."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from raftka.node.metrics import CONTENT_TYPE, MetricsRegistry


def parse(registry: MetricsRegistry) -> dict:
    """{family name: (type, help, {(sample name, sorted labels): value})} from the exposition."""
    out = {}
    for family in text_string_to_metric_families(registry.render().decode()):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples}
        out[family.name] = (family.type, family.documentation, samples)
    return out


def test_exact_exposition_text():
    registry = MetricsRegistry()
    registry.counter("raftka_records_total", "Records.", ("topic",)).labels("t").inc(2)
    registry.gauge("raftka_leaders", "Leaders.").set(3)
    registry.histogram("raftka_latency_seconds", "Latency.", buckets=(0.1, 1)).observe(0.5)
    assert registry.render() == (
        b"# HELP raftka_records_total Records.\n"
        b"# TYPE raftka_records_total counter\n"
        b'raftka_records_total{topic="t"} 2.0\n'
        b"# HELP raftka_leaders Leaders.\n"
        b"# TYPE raftka_leaders gauge\n"
        b"raftka_leaders 3.0\n"
        b"# HELP raftka_latency_seconds Latency.\n"
        b"# TYPE raftka_latency_seconds histogram\n"
        b'raftka_latency_seconds_bucket{le="0.1"} 0\n'
        b'raftka_latency_seconds_bucket{le="1.0"} 1\n'
        b'raftka_latency_seconds_bucket{le="+Inf"} 1\n'
        b"raftka_latency_seconds_sum 0.5\n"
        b"raftka_latency_seconds_count 1\n"
    )
    assert CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"


def test_counters_and_gauges_parse_back():
    registry = MetricsRegistry()
    produced = registry.counter("produced_total", "Produced records.", ("topic", "partition"))
    produced.labels("orders", 0).inc()
    produced.labels("orders", 0).inc(4)
    produced.labels("orders", 1).inc(0.5)
    inflight = registry.gauge("inflight", "In-flight requests.")
    inflight.inc(3)
    inflight.dec()
    families = parse(registry)
    kind, help_text, samples = families["produced"]
    assert (kind, help_text) == ("counter", "Produced records.")
    assert samples == {
        ("produced_total", (("partition", "0"), ("topic", "orders"))): 5.0,
        ("produced_total", (("partition", "1"), ("topic", "orders"))): 0.5,
    }
    assert families["inflight"] == ("gauge", "In-flight requests.", {("inflight", ()): 2.0})


def test_histogram_buckets_are_cumulative():
    registry = MetricsRegistry()
    latency = registry.histogram("req_seconds", "Request time.", ("route",), buckets=(0.01, 0.1, 1.0))
    for v in (0.001, 0.01, 0.05, 0.2, 3.0, 7.0):
        latency.labels("produce").observe(v)
    _, _, samples = parse(registry)["req_seconds"]
    bucket = {dict(labels)["le"]: value for (name, labels), value in samples.items() if name == "req_seconds_bucket"}
    assert bucket == {"0.01": 2.0, "0.1": 3.0, "1.0": 4.0, "+Inf": 6.0}  # le is inclusive
    assert samples[("req_seconds_count", (("route", "produce"),))] == 6.0
    assert samples[("req_seconds_sum", (("route", "produce"),))] == pytest.approx(10.261)


# The parser trims whitespace around the help text, so generate help without any.
@given(st.text(max_size=30), st.text(max_size=60).map(str.strip))
def test_label_values_and_help_are_escaped(label_value, help_text):
    registry = MetricsRegistry()
    registry.gauge("g", help_text, ("l",)).labels(label_value).set(1)
    _, parsed_help, samples = parse(registry)["g"]
    assert samples == {("g", (("l", label_value),)): 1.0}
    assert parsed_help == help_text


def test_newlines_and_backslashes_in_help_and_labels():
    registry = MetricsRegistry()
    registry.gauge("g", 'two\nlines \\ "q"', ("l",)).labels('a\nb\\c"d').set(1)
    assert b'# HELP g two\\nlines \\\\ "q"\n' in registry.render()
    assert b'g{l="a\\nb\\\\c\\"d"} 1.0\n' in registry.render()
    _, parsed_help, samples = parse(registry)["g"]
    assert parsed_help == 'two\nlines \\ "q"' and samples == {("g", (("l", 'a\nb\\c"d'),)): 1.0}


def test_special_float_values():
    registry = MetricsRegistry()
    gauge = registry.gauge("g", "G.", ("k",))
    gauge.labels("inf").set(math.inf)
    gauge.labels("ninf").set(-math.inf)
    gauge.labels("nan").set(math.nan)
    gauge.labels("big").set(1e22)
    text = registry.render().decode()
    assert 'g{k="inf"} +Inf' in text and 'g{k="ninf"} -Inf' in text and 'g{k="nan"} NaN' in text
    samples = parse(registry)["g"][2]
    assert samples[("g", (("k", "big"),))] == 1e22
    assert math.isnan(samples[("g", (("k", "nan"),))])


def test_gauge_function_reads_at_scrape_time():
    state = {"p0": 5}
    registry = MetricsRegistry()
    registry.gauge_function("commit_index", "Commit index.", ("group",), lambda: [((g,), v) for g, v in state.items()])
    assert parse(registry)["commit_index"][2] == {("commit_index", (("group", "p0"),)): 5.0}
    state["p1"] = 7
    state["p0"] = 6
    assert parse(registry)["commit_index"][2] == {
        ("commit_index", (("group", "p0"),)): 6.0,
        ("commit_index", (("group", "p1"),)): 7.0,
    }


def test_gauge_function_with_wrong_label_count_fails_loudly():
    registry = MetricsRegistry()
    registry.gauge_function("f", "F.", ("a", "b"), lambda: [(("x",), 1)])
    with pytest.raises(ValueError, match="takes labels"):
        registry.render()


def test_remove_forgets_a_child_and_empty_families_still_declare_themselves():
    registry = MetricsRegistry()
    lag = registry.gauge("lag", "Lag.", ("topic",))
    lag.labels("a").set(1)
    lag.labels("b").set(2)
    lag.remove("a")
    assert parse(registry)["lag"][2] == {("lag", (("topic", "b"),)): 2.0}
    registry.counter("never_total", "Never incremented.", ("x",))
    assert b"# TYPE never_total counter\n" in registry.render()


@pytest.mark.parametrize(
    "make",
    [
        lambda r: r.counter("bad name", "x"),
        lambda r: r.counter("9lives", "x"),
        lambda r: r.gauge("g", "x", ("__reserved",)),
        lambda r: r.gauge("g", "x", ("a-b",)),
        lambda r: r.gauge("g", "x", ("a", "a")),
        lambda r: r.histogram("h", "x", ("le",)),
        lambda r: r.histogram("h", "x", buckets=(1, 0.5)),
        lambda r: r.histogram("h", "x", buckets=()),
        lambda r: r.histogram("h", "x", buckets=(1, 1)),
        lambda r: r.histogram("h", "x", buckets=(math.nan,)),
    ],
)
def test_invalid_definitions(make):
    with pytest.raises(ValueError):
        make(MetricsRegistry())


def test_misuse_is_rejected():
    registry = MetricsRegistry()
    counter = registry.counter("c_total", "C.")
    with pytest.raises(ValueError, match="only go up"):
        counter.inc(-1)
    with pytest.raises(ValueError, match="already registered"):
        registry.gauge("c_total", "again")
    labelled = registry.counter("l_total", "L.", ("a",))
    with pytest.raises(ValueError, match="takes labels"):
        labelled.labels("x", "y")
    with pytest.raises(AttributeError):
        labelled.inc()


def test_registries_are_independent():
    one, two = MetricsRegistry(), MetricsRegistry()
    one.counter("x_total", "X.").inc()
    two.counter("x_total", "X.")
    assert parse(one)["x"][2] == {("x_total", ()): 1.0}
    assert parse(two)["x"][2] == {("x_total", ()): 0.0}
