"""REST Proxy v2 produce/fetch codecs (raftka.node.http.codecs), including fuzzing of the parser."""

import base64

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftka.node.errors import (
    ApiError,
    InvalidEncoding,
    InvalidRequest,
    NotAcceptable,
    NotLeader,
    RequestTooLarge,
    UnsupportedMediaType,
)
from raftka.node.http.codecs import (
    EmbeddedFormat,
    FetchedRecord,
    ProduceRecord,
    ProduceRequest,
    fetch_format,
    parse_produce_request,
    produce_format,
    render_produce_response,
    render_records,
)
from raftka.storage import StoredRecord

BINARY, JSON = EmbeddedFormat.BINARY, EmbeddedFormat.JSON


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def body(**doc) -> bytes:
    return orjson.dumps(doc)


# --- content negotiation ---------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "fmt"),
    [
        ("application/vnd.kafka.binary.v2+json", BINARY),
        ("Application/VND.kafka.binary.v2+JSON; charset=utf-8", BINARY),
        ("application/vnd.kafka.v2+json", BINARY),
        ("application/vnd.kafka.json.v2+json", JSON),
        ("application/json", JSON),
        ("application/json;charset=UTF-8", JSON),
    ],
)
def test_produce_content_types(content_type, fmt):
    assert produce_format(content_type) is fmt


@pytest.mark.parametrize(
    "content_type", [None, "", "application/x-www-form-urlencoded", "text/plain", "application/vnd.kafka.avro.v2+json"]
)
def test_unsupported_produce_content_types(content_type):
    with pytest.raises(UnsupportedMediaType) as info:
        produce_format(content_type)
    assert info.value.http_status == 415
    assert "application/vnd.kafka.binary.v2+json" in info.value.message


@pytest.mark.parametrize(
    ("accept", "fmt"),
    [
        (None, BINARY),
        ("", BINARY),
        ("*/*", BINARY),
        ("application/*", BINARY),
        ("application/vnd.kafka.json.v2+json", JSON),
        ("application/json", JSON),
        ("text/html, application/vnd.kafka.json.v2+json", JSON),
        ("application/vnd.kafka.binary.v2+json;q=0.5, application/json", JSON),
        ("application/json;q=0.2, application/vnd.kafka.binary.v2+json;q=0.9", BINARY),
        ("application/json;q=0, */*;q=0.1", BINARY),
        ("application/json;q=bogus, application/vnd.kafka.binary.v2+json", BINARY),
    ],
)
def test_fetch_accept_negotiation(accept, fmt):
    assert fetch_format(accept) is fmt


@pytest.mark.parametrize("accept", ["text/html", "application/json;q=0", "application/vnd.kafka.avro.v2+json"])
def test_unacceptable_fetch_types(accept):
    with pytest.raises(NotAcceptable) as info:
        fetch_format(accept)
    assert info.value.error_code == 40601


def test_content_type_of_format():
    assert JSON.content_type == "application/vnd.kafka.json.v2+json"
    assert BINARY.content_type == "application/vnd.kafka.binary.v2+json"


# --- produce parsing: good input -----------------------------------------------------


def test_binary_produce_request():
    req = parse_produce_request(
        body(
            records=[
                {"key": b64(b"k1"), "value": b64(b"\x00\xff"), "headers": [{"key": "h", "value": b64(b"hv")}]},
                {"value": "", "partition": 2, "timestamp": 1700000000000},
                {"key": None, "value": None, "headers": None},
                {"headers": [{"key": "tombstone-reason", "value": None}]},
            ]
        ),
        BINARY,
    )
    assert req == ProduceRequest(
        [
            ProduceRecord(b"k1", b"\x00\xff", [("h", b"hv")], None, None),
            ProduceRecord(None, b"", [], 2, 1700000000000),
            ProduceRecord(None, None, [], None, None),
            ProduceRecord(None, None, [("tombstone-reason", None)], None, None),
        ]
    )
    assert req.producer_id is None


def test_json_produce_request_stores_compact_orjson_bytes():
    req = parse_produce_request(
        b'{"records": [{"key": "user-1", "value": {"a": [1, 2.50, true, null], "b": "\\u00e9"}}, {"value": null}, {"value": 0}]}',
        JSON,
    )
    assert [r.key for r in req.records] == [b'"user-1"', None, None]
    assert [r.value for r in req.records] == [orjson.dumps({"a": [1, 2.5, True, None], "b": "é"}), None, b"0"]


def test_body_may_be_str_bytearray_or_memoryview():
    raw = body(records=[{"value": b64(b"v")}])
    for form in (raw.decode(), bytearray(raw), memoryview(raw)):
        assert parse_produce_request(form, BINARY).records[0].value == b"v"


def test_url_partition_fills_in_and_must_agree():
    req = parse_produce_request(body(records=[{"value": None}, {"value": None, "partition": 3}]), BINARY, partition=3)
    assert [r.partition for r in req.records] == [3, 3]
    with pytest.raises(InvalidRequest, match=r"records\[0\].partition is 1 but the URL names partition 3"):
        parse_produce_request(body(records=[{"partition": 1}]), BINARY, partition=3)


def test_idempotent_fields():
    req = parse_produce_request(
        body(records=[{"value": None}] * 3, producer_id=7, producer_epoch=0, base_sequence=42), BINARY, partition=1
    )
    assert (req.producer_id, req.producer_epoch, req.base_sequence) == (7, 0, 42)
    same = parse_produce_request(
        body(records=[{"partition": 4}, {"partition": 4}], producer_id=1, producer_epoch=2, base_sequence=3), BINARY
    )
    assert same.base_sequence == 3


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"producer_id": 1}, "missing producer_epoch, base_sequence"),
        ({"producer_id": 1, "producer_epoch": 0, "base_sequence": -1}, "base_sequence must be an integer from 0"),
        (
            {"producer_id": 1, "producer_epoch": 40000, "base_sequence": 0},
            "producer_epoch must be an integer from 0 to 32767",
        ),
        ({"producer_id": "1", "producer_epoch": 0, "base_sequence": 0}, "producer_id must be an integer"),
    ],
)
def test_bad_idempotent_fields(doc, match):
    with pytest.raises(InvalidRequest, match=match):
        parse_produce_request(body(records=[{"value": None}], **doc), BINARY, partition=0)


def test_idempotent_batch_must_target_one_partition():
    ids = {"producer_id": 1, "producer_epoch": 0, "base_sequence": 0}
    for records in ([{"value": None}], [{"partition": 1}, {"partition": 2}], [{"partition": 1}, {}]):
        with pytest.raises(InvalidRequest, match="exactly one partition"):
            parse_produce_request(body(records=records, **ids), BINARY)


def test_rest_proxy_v2_schema_fields_are_accepted_as_null():
    body = (b'{"records": [{"key": "k", "value": {"a": 1}}], "key_schema": null, "value_schema": null, '
            b'"key_schema_id": null, "value_schema_id": null}')
    parsed = parse_produce_request(body, EmbeddedFormat.JSON)
    assert [(r.key, r.value) for r in parsed.records] == [(b'"k"', b'{"a":1}')]


# --- produce parsing: bad input ---------------------------------------------------------

BAD_INPUTS = [
    (b"", BINARY, InvalidRequest, "body is empty"),
    (b"{", BINARY, InvalidRequest, "not valid JSON"),
    (b"\xff\xfe", BINARY, InvalidRequest, "not valid JSON"),
    (b"[]", BINARY, InvalidRequest, "must be a JSON object"),
    (b"{}", BINARY, InvalidRequest, '"records" must be a list'),
    (b'{"records": {}}', BINARY, InvalidRequest, "got object"),
    (b'{"records": []}', BINARY, InvalidRequest, "is empty"),
    (b'{"records": [], "key_schemas": "x"}', BINARY, InvalidRequest, "unknown field\\(s\\) 'key_schemas'"),
    (b'{"records": [{"value": null}], "key_schema": "x"}', BINARY, InvalidRequest, "key_schema: raftka has no schema"),
    (b'{"records": [{"value": null}], "value_schema_id": 3}', JSON, InvalidRequest, "value_schema_id: raftka has no"),
    (b'{"records": [1]}', BINARY, InvalidRequest, r"records\[0\] must be an object, got number"),
    (b'{"records": [{"vaule": "eA=="}]}', BINARY, InvalidRequest, r"records\[0\]: unknown field\(s\) 'vaule'"),
    (
        b'{"records": [{"value": 5}]}',
        BINARY,
        InvalidRequest,
        r"records\[0\].value must be a base64 string or null, got number",
    ),
    (b'{"records": [{"value": {"a": 1}}]}', BINARY, InvalidRequest, "got object"),
    (b'{"records": [{"key": "not base64!"}]}', BINARY, InvalidEncoding, r"records\[0\].key is not valid base64"),
    (b'{"records": [{"value": "eA"}]}', BINARY, InvalidEncoding, "padding"),
    (b'{"records": [{"value": "\xc3\xa9"}]}', BINARY, InvalidEncoding, "ASCII"),
    (b'{"records": [{"partition": -1}]}', BINARY, InvalidRequest, r"records\[0\].partition must be an integer from 0"),
    (b'{"records": [{"partition": 1.0}]}', BINARY, InvalidRequest, "partition must be an integer"),
    (b'{"records": [{"partition": true}]}', BINARY, InvalidRequest, "partition must be an integer"),
    (b'{"records": [{"partition": 2147483648}]}', BINARY, InvalidRequest, "partition must be an integer"),
    (b'{"records": [{"timestamp": "now"}]}', BINARY, InvalidRequest, "timestamp must be an integer"),
    (b'{"records": [{"headers": {"h": "eA=="}}]}', BINARY, InvalidRequest, r"records\[0\].headers must be a list"),
    (b'{"records": [{"headers": ["h"]}]}', BINARY, InvalidRequest, r"headers\[0\] must be an object"),
    (b'{"records": [{"headers": [{"key": "h"}]}]}', BINARY, InvalidRequest, 'needs both "key" and "value"'),
    (b'{"records": [{"headers": [{"key": "h", "value": "eA==", "x": 1}]}]}', BINARY, InvalidRequest, "unknown field"),
    (
        b'{"records": [{"headers": [{"key": 1, "value": "eA=="}]}]}',
        BINARY,
        InvalidRequest,
        r"headers\[0\].key must be a string",
    ),
    (
        b'{"records": [{"headers": [{"key": "h", "value": "%%"}]}]}',
        JSON,
        InvalidEncoding,
        r"headers\[0\].value is not valid base64",
    ),
    (b'{"records": [{"value": 123456789012345678901234567890}]}', JSON, InvalidRequest, "outside the 64-bit range"),
    (b'{"records": [{"value": -9999999999999999999}]}', JSON, InvalidRequest, "outside the 64-bit range"),
    (b'{"records": [{"value": 1e400}]}', JSON, InvalidRequest, "not valid JSON"),
    (b'{"records": [{"value": NaN}]}', JSON, InvalidRequest, "not valid JSON"),
    (
        b'{"records": [{"value": ' + b"[" * 300 + b"]" * 300 + b"}]}",
        JSON,
        InvalidRequest,
        r"records\[0\].value cannot be stored",
    ),
    (b'{"records": [{"value": ' + b"[" * 1100 + b"]" * 1100 + b"}]}", JSON, InvalidRequest, "not valid JSON"),
    (
        b'{"records": [{"value": [' + b"[" * 1000 + b"1234567890123456789" + b"]" * 1001 + b"}]}",
        JSON,
        InvalidRequest,
        "nested too deeply",
    ),
]


@pytest.mark.parametrize(("raw", "fmt", "error", "match"), BAD_INPUTS)
def test_bad_produce_bodies(raw, fmt, error, match):
    with pytest.raises(error, match=match) as info:
        parse_produce_request(raw, fmt)
    assert 400 <= info.value.http_status < 500


def test_big_but_in_range_ints_and_long_digit_strings_are_kept():
    req = parse_produce_request(
        b'{"records": [{"value": [18446744073709551615, -9223372036854775808, "12345678901234567890123"]}]}', JSON
    )
    assert orjson.loads(req.records[0].value) == [18446744073709551615, -9223372036854775808, "12345678901234567890123"]


def test_too_many_records():
    with pytest.raises(RequestTooLarge, match="Too many records in one request: 3 \\(at most 2\\)"):
        parse_produce_request(body(records=[{}, {}, {}]), BINARY, max_records=2)


# --- produce parsing: properties -------------------------------------------------------

record_strategy = st.fixed_dictionaries(
    {},
    optional={
        "key": st.none() | st.binary(max_size=40),
        "value": st.none() | st.binary(max_size=200),
        "headers": st.lists(st.tuples(st.text(max_size=10), st.none() | st.binary(max_size=20)), max_size=3),
        "partition": st.integers(min_value=0, max_value=2**31 - 1),
        "timestamp": st.integers(min_value=0, max_value=2**63 - 1),
    },
)


@given(st.lists(record_strategy, min_size=1, max_size=20))
def test_binary_round_trip(records):
    doc = {"records": []}
    for rec in records:
        item = {k: v for k, v in rec.items() if k in ("partition", "timestamp")}
        for field in ("key", "value"):
            if field in rec:
                item[field] = None if rec[field] is None else b64(rec[field])
        if "headers" in rec:
            item["headers"] = [{"key": k, "value": None if v is None else b64(v)} for k, v in rec["headers"]]
        doc["records"].append(item)
    parsed = parse_produce_request(orjson.dumps(doc), BINARY)
    assert parsed.records == [
        ProduceRecord(r.get("key"), r.get("value"), list(r.get("headers", [])), r.get("partition"), r.get("timestamp"))
        for r in records
    ]


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(st.lists(st.tuples(json_values, json_values), min_size=1, max_size=10))
def test_json_produce_then_fetch_round_trip(pairs):
    req = parse_produce_request(orjson.dumps({"records": [{"key": k, "value": v} for k, v in pairs]}), JSON)
    fetched = [FetchedRecord(i, 1, r.key, r.value, r.headers) for i, r in enumerate(req.records)]
    rendered = orjson.loads(render_records("t", 0, fetched, JSON))
    assert [(item["key"], item["value"]) for item in rendered] == pairs
    assert all("base64_fields" not in item for item in rendered)


# Fuzzing: JSON-ish documents shaped like produce requests, and raw bytes.
scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
json_ish = st.recursive(
    scalars, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=6), c, max_size=3), max_leaves=10
)
field_names = st.sampled_from(["key", "value", "partition", "headers", "timestamp", "x"])
base64ish = st.sampled_from(["", "eA==", "eA", "====", "YWJj", "é", "a b=", "AAAA" * 3])
header_ish = st.lists(
    st.dictionaries(st.sampled_from(["key", "value", "k"]), base64ish | json_ish, max_size=3) | json_ish, max_size=3
)
record_ish = st.dictionaries(field_names, base64ish | json_ish | header_ish, max_size=5) | json_ish
produce_ish = st.dictionaries(
    st.sampled_from(["records", "producer_id", "producer_epoch", "base_sequence", "extra"]),
    st.lists(record_ish, max_size=4) | json_ish,
    max_size=5,
)


def dumps_leniently(doc) -> bytes:
    try:
        return orjson.dumps(doc)
    except (orjson.JSONEncodeError, TypeError):
        return repr(doc).encode()


@settings(max_examples=300)
@given(produce_ish, st.sampled_from([BINARY, JSON]), st.none() | st.integers(min_value=0, max_value=3))
def test_fuzz_structured_bodies_raise_only_api_errors(doc, fmt, url_partition):
    try:
        parse_produce_request(dumps_leniently(doc), fmt, partition=url_partition)
    except ApiError as exc:
        assert 400 <= exc.http_status < 500 and exc.message


@settings(max_examples=200)
@given(st.binary(max_size=200) | st.text(max_size=100), st.sampled_from([BINARY, JSON]))
def test_fuzz_raw_bodies_raise_only_api_errors(raw, fmt):
    try:
        parse_produce_request(raw, fmt)
    except ApiError as exc:
        assert 400 <= exc.http_status < 500


# --- rendering ------------------------------------------------------------------------


def test_render_binary_records():
    records = [
        FetchedRecord(5, 1700000000000, b"k", b"\x00\x01", [("h", b"v")]),
        FetchedRecord(6, 1700000000001, None, None, [("n", None)]),
    ]
    assert orjson.loads(render_records("orders", 2, records, BINARY)) == [
        {"topic": "orders", "key": "aw==", "value": "AAE=", "partition": 2, "offset": 5, "timestamp": 1700000000000, "headers": [{"key": "h", "value": "dg=="}]},
        {"topic": "orders", "key": None, "value": None, "partition": 2, "offset": 6, "timestamp": 1700000000001, "headers": [{"key": "n", "value": None}]},
    ]  # fmt: skip


def test_render_json_falls_back_to_base64_for_non_json_bytes():
    records = [
        FetchedRecord(0, 1, b'"k"', b'{"a":1}', [("h", b"\xff")]),
        FetchedRecord(1, 2, b"plain key", b"\xff\xfe", []),
        FetchedRecord(2, 3, b"[1]", b"", []),
    ]
    out = orjson.loads(render_records("t", 0, records, JSON))
    assert out[0]["key"] == "k" and out[0]["value"] == {"a": 1} and "base64_fields" not in out[0]
    assert out[0]["headers"] == [{"key": "h", "value": "/w=="}]
    assert out[1]["key"] == b64(b"plain key") and out[1]["value"] == b64(b"\xff\xfe")
    assert out[1]["base64_fields"] == ["key", "value"]
    assert out[2]["key"] == [1] and out[2]["value"] == "" and out[2]["base64_fields"] == ["value"]


def test_render_storage_records():
    stored = [StoredRecord(9, 10, None, b"x", [("h", None)])]
    assert orjson.loads(render_records("t", 1, stored, BINARY)) == [
        {"topic": "t", "key": None, "value": "eA==", "partition": 1, "offset": 9, "timestamp": 10, "headers": [{"key": "h", "value": None}]}
    ]  # fmt: skip
    assert render_records("t", 1, [], JSON) == b"[]"


def test_render_produce_response():
    out = orjson.loads(
        render_produce_response([(0, 41), (1, NotLeader("partition 1 of topic 't'", 3, "http://b3:8080"))])
    )
    assert out == {
        "offsets": [
            {"partition": 0, "offset": 41, "error_code": None, "error": None},
            {"partition": 1, "offset": None, "error_code": 50301, "error": "Not the leader for partition 1 of topic 't': the leader is broker 3 at http://b3:8080."},
        ],
        "key_schema_id": None,
        "value_schema_id": None,
    }  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [
        '{"records": [{"value": "\ud800"}]}',
        b'{"records": [{"value": "\\ud800"}]}',
        b'\xef\xbb\xbf{"records": [{"value": 1}]}',
    ],
)
def test_inputs_that_stdlib_json_would_accept_are_rejected(raw):
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_produce_request(raw, JSON)
