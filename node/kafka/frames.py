"""Kafka request frames: size prefix, request header, and the decoded request (pure; no I/O).

A Kafka request on the wire is ``int32 size`` + ``size`` bytes: the request
header (api key, api version, correlation id, client id; tagged fields in
flexible versions) and the body. `frame_size` checks the prefix against the
broker's limit; `decode_request` reads the api key and version, looks the
message class up in the API table, and decodes header and body with it
(kafka-python's generated classes; record batches stay bytes). Anything
that does not decode raises `MalformedFrame` with a short reason, which the
connection counts and answers by closing (a client that sent garbage cannot
be resynchronised). A request whose version raftka does not support is not
malformed: `UnsupportedVersion` carries what is needed to answer it.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from raftka.node.kafka.apis import API_TABLE, KNOWN_RESPONSES, ApiSpec

_PREFIX = struct.Struct(">hhi")  # api key, api version, correlation id: the same in every header version
_CLIENT_ID_LEN = struct.Struct(">h")


class MalformedFrame(Exception):
    """The bytes are not a Kafka request raftka can read; `reason` is a short label for metrics."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class UnsupportedVersion(Exception):
    """A known API at a version raftka does not serve (or an API raftka does not implement)."""

    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


@dataclass(frozen=True, slots=True)
class Request:
    api: ApiSpec
    api_version: int
    correlation_id: int
    client_id: str | None
    body: Any  # the kafka-python request object
    frame: bytes  # as received, without the size prefix (relayed unchanged to the metadata leader)


def frame_size(prefix: bytes, limit: int) -> int:
    """The size announced by a 4-byte frame prefix; MalformedFrame if it is not in 1..limit."""
    (size,) = struct.unpack(">i", prefix)
    if size < _PREFIX.size:
        raise MalformedFrame("size", f"frame of {size} bytes")
    if size > limit:
        raise MalformedFrame("too_large", f"frame of {size} bytes exceeds --max-request-bytes {limit}")
    return size


def _client_id(frame: bytes | memoryview) -> str | None:
    """The client id of a v1/v2 request header (a nullable int16-length string after the prefix)."""
    try:
        (length,) = _CLIENT_ID_LEN.unpack_from(frame, _PREFIX.size)
        if length < 0:
            return None
        start = _PREFIX.size + _CLIENT_ID_LEN.size
        return bytes(frame[start:start + length]).decode("utf-8", "replace")
    except struct.error:
        return None


def decode_request(frame: bytes) -> Request:
    """Decode one frame (without its size prefix). Raises MalformedFrame or UnsupportedVersion."""
    try:
        api_key, api_version, correlation_id = _PREFIX.unpack_from(frame, 0)
    except struct.error:
        raise MalformedFrame("truncated", "shorter than a request header") from None
    api = API_TABLE.get(api_key)
    if api is None or not api.min_version <= api_version <= api.max_version:
        if api is None and api_key not in KNOWN_RESPONSES:
            raise MalformedFrame("unknown_api", f"api key {api_key}")
        if api_version < 0:
            raise MalformedFrame("bad_version", f"api key {api_key} version {api_version}")
        raise UnsupportedVersion(api_key, api_version, correlation_id, _client_id(frame))
    try:
        body = api.request.decode(frame, version=api_version, header=True)
    except Exception as exc:  # noqa: BLE001 - any decoding failure of untrusted bytes is a malformed frame
        raise MalformedFrame("undecodable", f"{api.name} v{api_version}: {type(exc).__name__}: {exc}") from None
    return Request(api, api_version, correlation_id, body.header.client_id, body, frame)


__all__ = ["MalformedFrame", "Request", "UnsupportedVersion", "decode_request", "frame_size"]
