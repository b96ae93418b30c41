"""REST Proxy v2 record bodies: content types, produce request parsing, produce/fetch rendering.

Embedded formats (``Content-Type`` of a produce, ``Accept`` of a fetch):

* ``application/vnd.kafka.binary.v2+json`` - keys and values are base64 strings.
  ``application/vnd.kafka.v2+json`` (no embedded format) means binary, as in
  Confluent's REST Proxy.
* ``application/vnd.kafka.json.v2+json`` and plain ``application/json`` - keys
  and values are any JSON; they are stored as their compact orjson encoding
  (so ``{"a": 1.50}`` is stored as ``{"a":1.5}``). JSON ``null`` means a null
  key/value, in both formats. Integers outside [-2**63, 2**64) are rejected
  rather than silently rounded to floats.

Header values are base64 (or null) in both formats: ``{"key": "h", "value": "<b64>"}``.

Produce body: ``{"records": [{"key", "value", "partition", "headers",
"timestamp"}, ...]}`` plus, for the idempotent producer, all three of
``producer_id``, ``producer_epoch`` and ``base_sequence`` (these apply to one
partition, so every record must then name the same partition, or the URL
does). REST Proxy v2's ``key_schema``, ``value_schema``, ``key_schema_id`` and
``value_schema_id`` are accepted as null (there is no schema registry). Unknown
fields are rejected, so a typo such as ``"vaule"`` can never
silently produce a null value. Errors name the offending field, e.g.
``records[3].headers[0].value``.

Fetch rendering with the json format: a stored key or value that is not valid
JSON (e.g. produced in binary format) is rendered as a base64 string instead
and its field name is listed in the record's ``"base64_fields"`` (present only
then), so one such record never makes a partition unreadable.
"""

from __future__ import annotations

import enum
import json
from binascii import Error as BinasciiError
from binascii import a2b_base64, b2a_base64
from collections.abc import Iterable
from typing import Any, NamedTuple

import orjson

from raftka.node.errors import (
    ApiError,
    InvalidEncoding,
    InvalidRequest,
    NotAcceptable,
    RequestTooLarge,
    UnsupportedMediaType,
)

__all__ = [
    "MAX_RECORDS_PER_REQUEST",
    "EmbeddedFormat",
    "FetchedRecord",
    "ProduceRecord",
    "ProduceRequest",
    "fetch_format",
    "parse_produce_request",
    "produce_format",
    "render_produce_response",
    "render_records",
]

MAX_RECORDS_PER_REQUEST = 100_000
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_INT16_MAX = 2**15 - 1


class EmbeddedFormat(enum.Enum):
    BINARY = "application/vnd.kafka.binary.v2+json"
    JSON = "application/vnd.kafka.json.v2+json"

    @property
    def content_type(self) -> str:
        """The response ``Content-Type`` for records in this format."""
        return self.value


_MEDIA_TYPES = {
    "application/vnd.kafka.binary.v2+json": EmbeddedFormat.BINARY,
    "application/vnd.kafka.v2+json": EmbeddedFormat.BINARY,
    "application/vnd.kafka.json.v2+json": EmbeddedFormat.JSON,
    "application/json": EmbeddedFormat.JSON,
}
_SUPPORTED = ", ".join(_MEDIA_TYPES)


def produce_format(content_type: str | None) -> EmbeddedFormat:
    """Embedded format of a produce request from its ``Content-Type`` (parameters ignored)."""
    media = (content_type or "").split(";", 1)[0].strip().lower()
    fmt = _MEDIA_TYPES.get(media)
    if fmt is None:
        shown = f"'{content_type}'" if content_type else "missing"
        raise UnsupportedMediaType(f"Content-Type {shown} is not supported; use one of: {_SUPPORTED}.")
    return fmt


def fetch_format(accept: str | None) -> EmbeddedFormat:
    """Embedded format for fetched records from an ``Accept`` header (q-values honoured).

    No header, ``*/*`` or ``application/*`` give binary, the lossless format.
    """
    if not accept or not accept.strip():
        return EmbeddedFormat.BINARY
    ranked = []
    for position, item in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            name, _, raw = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(raw)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, media.lower()))
    for _, _, media in sorted(ranked):
        if media in _MEDIA_TYPES:
            return _MEDIA_TYPES[media]
        if media in ("*/*", "application/*"):
            return EmbeddedFormat.BINARY
    raise NotAcceptable(f"Cannot serve records as '{accept}'; acceptable types: {_SUPPORTED}.")


class ProduceRecord(NamedTuple):
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    partition: int | None  # None: the broker picks (murmur2 of the key, or spreads null keys)
    timestamp: int | None  # ms; None: the broker stamps it


class ProduceRequest(NamedTuple):
    records: list[ProduceRecord]
    producer_id: int | None = None
    producer_epoch: int | None = None
    base_sequence: int | None = None


class FetchedRecord(NamedTuple):
    """What ``render_records`` reads; any object with these attributes will do
    (e.g. ``raftka.storage.StoredRecord``)."""

    offset: int
    timestamp: int | None
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


_SCHEMA_FIELDS = ("key_schema", "value_schema", "key_schema_id", "value_schema_id")  # REST Proxy v2: null here
_TOP_FIELDS = frozenset(("records", "producer_id", "producer_epoch", "base_sequence", *_SCHEMA_FIELDS))
_RECORD_FIELDS = frozenset(("key", "value", "partition", "headers", "timestamp"))
_HEADER_FIELDS = frozenset(("key", "value"))
_PRODUCER_FIELDS = (("producer_id", _INT64_MAX), ("producer_epoch", _INT16_MAX), ("base_sequence", _INT32_MAX))
# bytes.translate maps digits to b"1" and all else to b"0": a C-speed scan for 19+ digit runs.
_DIGIT_MASK = bytes(0x31 if 0x30 <= i <= 0x39 else 0x30 for i in range(256))
_NINETEEN_DIGITS = b"1" * 19


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


def _unknown_fields(found: Iterable[str], allowed: frozenset[str], where: str) -> InvalidRequest:
    names = ", ".join(repr(name) for name in sorted(set(found) - allowed))
    return InvalidRequest(f"{where}: unknown field(s) {names}; allowed: {', '.join(sorted(allowed))}.")


def _from_base64(text: object, where: str) -> bytes:
    if type(text) is not str:
        raise InvalidRequest(f"{where} must be a base64 string or null, got {_json_type(text)}.")
    try:
        return a2b_base64(text, strict_mode=True)
    except (BinasciiError, ValueError) as exc:
        raise InvalidEncoding(f"{where} is not valid base64: {exc}.") from None


def _from_json(value: object, where: str) -> bytes:
    try:
        return orjson.dumps(value)
    except orjson.JSONEncodeError as exc:
        raise InvalidRequest(f"{where} cannot be stored as JSON: {exc}.") from None


def _not_an_int(where: str, value: object, high: int) -> InvalidRequest:
    return InvalidRequest(f"{where} must be an integer from 0 to {high}, got {value!r}.")


def _reject_out_of_range_ints(body: bytes) -> None:
    """orjson turns integers outside [-2**63, 2**64) into floats; refuse them instead of altering them.

    Runs only when the body has a run of 19+ digits, with the slower stdlib parser.
    """

    def check(token: str) -> int:
        number = int(token)
        if not -(2**63) <= number < 2**64:
            raise InvalidRequest(
                f"JSON integer {token[:40]} is outside the 64-bit range and would lose precision; send it as a string."
            )
        return number

    try:
        json.loads(body, parse_int=check)
    except RecursionError:
        raise InvalidRequest("Request body is nested too deeply.") from None


def _parse_headers(raw: object, where: str) -> list[tuple[str, bytes | None]]:
    if type(raw) is not list:
        raise InvalidRequest(
            f'{where} must be a list of {{"key": string, "value": base64}} objects, got {_json_type(raw)}.'
        )
    headers = []
    for j, header in enumerate(raw):
        here = f"{where}[{j}]"
        if type(header) is not dict:
            raise InvalidRequest(f"{here} must be an object, got {_json_type(header)}.")
        if header.keys() != _HEADER_FIELDS:
            if not header.keys() <= _HEADER_FIELDS:
                raise _unknown_fields(header, _HEADER_FIELDS, here)
            raise InvalidRequest(f'{here} needs both "key" and "value".')
        name = header["key"]
        if type(name) is not str:
            raise InvalidRequest(f"{here}.key must be a string, got {_json_type(name)}.")
        value = header["value"]
        headers.append((name, None if value is None else _from_base64(value, f"{here}.value")))
    return headers


def parse_produce_request(
    body: bytes | bytearray | memoryview | str,
    fmt: EmbeddedFormat,
    *,
    partition: int | None = None,
    max_records: int = MAX_RECORDS_PER_REQUEST,
) -> ProduceRequest:
    """Validate a produce body into bytes records; raises only ``ApiError`` subclasses.

    ``partition`` is the partition from the URL (``POST /topics/{t}/partitions/{p}``):
    records may then omit it or must repeat the same number.
    """
    if not body:
        raise InvalidRequest('Request body is empty; expected {"records": [...]}.')
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}.") from None
    if type(doc) is not dict:
        raise InvalidRequest(f'Request body must be a JSON object {{"records": [...]}}, got {_json_type(doc)}.')
    if not doc.keys() <= _TOP_FIELDS:
        raise _unknown_fields(doc, _TOP_FIELDS, "request body")
    schemas = [name for name in _SCHEMA_FIELDS if doc.get(name) is not None]
    if schemas:
        raise InvalidRequest(f"{', '.join(schemas)}: raftka has no schema registry; these fields may only be null "
                             "(use the binary or json embedded format).")
    raw_records = doc.get("records")
    if type(raw_records) is not list:
        raise InvalidRequest(f'"records" must be a list of record objects, got {_json_type(raw_records)}.')
    if not raw_records:
        raise InvalidRequest('"records" is empty; send at least one record.')
    if len(raw_records) > max_records:
        raise RequestTooLarge(f"Too many records in one request: {len(raw_records)} (at most {max_records}).")

    binary = fmt is EmbeddedFormat.BINARY
    if not binary:
        raw = body.encode() if isinstance(body, str) else bytes(body)
        if _NINETEEN_DIGITS in raw.translate(_DIGIT_MASK):
            _reject_out_of_range_ints(raw)
    decode = _from_base64 if binary else _from_json
    records: list[ProduceRecord] = []
    append = records.append
    new_record = tuple.__new__
    # Field errors are raised with a relative location (".key") and prefixed with
    # "records[i]" below, so the happy path formats no strings.
    i = 0
    try:
        for i, rec in enumerate(raw_records):
            if type(rec) is not dict:
                raise InvalidRequest(f" must be an object, got {_json_type(rec)}.")
            if not rec.keys() <= _RECORD_FIELDS:
                raise _unknown_fields(rec, _RECORD_FIELDS, "")
            key = rec.get("key")
            if key is not None:
                key = decode(key, ".key")
            value = rec.get("value")
            if value is not None:
                value = decode(value, ".value")
            headers = rec.get("headers")
            headers = [] if headers is None else _parse_headers(headers, ".headers")
            p = rec.get("partition")
            if p is None:
                p = partition
            elif type(p) is not int or not 0 <= p <= _INT32_MAX:
                raise _not_an_int(".partition", p, _INT32_MAX)
            elif partition is not None and p != partition:
                raise InvalidRequest(f".partition is {p} but the URL names partition {partition}.")
            timestamp = rec.get("timestamp")
            if timestamp is not None and (type(timestamp) is not int or not 0 <= timestamp <= _INT64_MAX):
                raise _not_an_int(".timestamp", timestamp, _INT64_MAX)
            append(new_record(ProduceRecord, (key, value, headers, p, timestamp)))
    except (InvalidRequest, InvalidEncoding) as exc:
        raise type(exc)(f"records[{i}]{exc.message}") from None

    producer = [doc.get(name) for name, _ in _PRODUCER_FIELDS]
    if all(v is None for v in producer):
        return ProduceRequest(records)
    if any(v is None for v in producer):
        missing = [name for (name, _), v in zip(_PRODUCER_FIELDS, producer, strict=True) if v is None]
        raise InvalidRequest(
            f"producer_id, producer_epoch and base_sequence go together; missing {', '.join(missing)}."
        )
    for (name, high), v in zip(_PRODUCER_FIELDS, producer, strict=True):
        if type(v) is not int or not 0 <= v <= high:
            raise _not_an_int(name, v, high)
    partitions = {r.partition for r in records}
    if len(partitions) != 1 or None in partitions:
        raise InvalidRequest(
            "An idempotent produce (producer_id/base_sequence) must target exactly one partition: "
            "give it in the URL or the same 'partition' on every record."
        )
    return ProduceRequest(records, *producer)


def _to_base64(data: bytes) -> str:
    return b2a_base64(data, newline=False).decode("ascii")


def render_records(topic: str, partition: int, records: Iterable[Any], fmt: EmbeddedFormat) -> bytes:
    """Fetch response body: a JSON list of ``{"topic", "key", "value", "partition", "offset",
    "timestamp", "headers"}`` objects in the requested embedded format."""
    out = []
    append = out.append
    b64 = _to_base64
    if fmt is EmbeddedFormat.BINARY:
        for r in records:
            key, value = r.key, r.value
            append(
                {
                    "topic": topic,
                    "key": None if key is None else b64(key),
                    "value": None if value is None else b64(value),
                    "partition": partition,
                    "offset": r.offset,
                    "timestamp": r.timestamp,
                    "headers": [{"key": k, "value": None if v is None else b64(v)} for k, v in headers]
                    if (headers := r.headers)
                    else [],
                }
            )
        return orjson.dumps(out)
    loads, decode_error = orjson.loads, orjson.JSONDecodeError
    for r in records:
        item = {
            "topic": topic,
            "key": None,
            "value": None,
            "partition": partition,
            "offset": r.offset,
            "timestamp": r.timestamp,
            "headers": [{"key": k, "value": None if v is None else b64(v)} for k, v in headers]
            if (headers := r.headers)
            else [],
        }
        for field in ("key", "value"):
            data = getattr(r, field)
            if data is None:
                continue
            try:
                item[field] = loads(data)
            except decode_error:
                item[field] = b64(data)
                item.setdefault("base64_fields", []).append(field)
        append(item)
    return orjson.dumps(out)


def render_produce_response(results: Iterable[tuple[int, int | ApiError]]) -> bytes:
    """Produce response body from ``(partition, offset or error)`` per record, in request order."""
    offsets = []
    for partition, outcome in results:
        if isinstance(outcome, ApiError):
            offsets.append(
                {"partition": partition, "offset": None, "error_code": outcome.error_code, "error": outcome.message}
            )
        else:
            offsets.append({"partition": partition, "offset": outcome, "error_code": None, "error": None})
    return orjson.dumps({"offsets": offsets, "key_schema_id": None, "value_schema_id": None})
