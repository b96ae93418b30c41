"""ApiVersions: the APIs and version ranges of `API_TABLE`; an unsupported request version gets v0 + UNSUPPORTED_VERSION.

A client that sends a newer ApiVersions than raftka knows gets the v0
answer with UNSUPPORTED_VERSION and the full list (KIP-511), then retries
with a version from it. Requests for APIs raftka does not serve (or at a
version it does not serve) are answered here too, with UNSUPPORTED_VERSION
where the response has a top-level error code; otherwise the connection
closes, as Kafka does for a version it cannot parse.
"""

from __future__ import annotations

from typing import Any

from kafka.protocol.api_header import ResponseClassRegistry
from kafka.protocol.metadata import ApiVersionsResponse

from raftka.node.kafka.apis import API_TABLE
from raftka.node.kafka.errors import ErrorCode
from raftka.node.kafka.frames import UnsupportedVersion

_API_KEYS = [ApiVersionsResponse.ApiVersion(api_key=s.key, min_version=s.min_version, max_version=s.max_version)
             for s in sorted(API_TABLE.values(), key=lambda s: s.key)]


async def api_versions(conn: Any, request: Any) -> Any:
    return ApiVersionsResponse(version=request.api_version, error_code=ErrorCode.NONE, api_keys=_API_KEYS,
                               throttle_time_ms=0)


def unsupported_version_response(unsupported: UnsupportedVersion) -> bytes | None:
    """The framed answer to a request raftka does not serve at that version, or None: close the connection."""
    if unsupported.api_key == ApiVersionsResponse.API_KEY:
        response = ApiVersionsResponse(version=0, error_code=ErrorCode.UNSUPPORTED_VERSION, api_keys=_API_KEYS)
        version = 0
    else:
        registry = ResponseClassRegistry._response_class_registry
        cls = registry.get(unsupported.api_key)
        version = unsupported.api_version
        if cls is None or not 0 <= version <= cls.max_version:
            return None
        error_field = cls.fields.get("error_code")
        if error_field is None or not error_field.for_version_q(version):
            return None
        response = cls(version=version, error_code=ErrorCode.UNSUPPORTED_VERSION)
    response.with_header(correlation_id=unsupported.correlation_id)
    return bytes(response.encode(header=True, framed=True))


__all__ = ["api_versions", "unsupported_version_response"]
