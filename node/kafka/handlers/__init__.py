"""One module per Kafka API family, each a thin adapter over the broker's services (`raftka.node.services`).

A handler is ``async def handler(conn, request) -> response``: it reads the
decoded request (`frames.Request`; ``request.body`` is kafka-python's
object), calls services, and returns the kafka-python response object built
at the request's version, a `RawResponse` (an answer relayed from another
broker, already framed), or None (acks=0 produce: no answer). Per-item
failures become Kafka error codes in the answer (`raftka.node.kafka.errors`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from raftka.node.kafka.handlers.api_versions import api_versions, unsupported_version_response
from raftka.node.kafka.handlers.fetch import fetch
from raftka.node.kafka.handlers.list_offsets import list_offsets
from raftka.node.kafka.handlers.metadata import metadata
from raftka.node.kafka.handlers.produce import init_producer_id, produce
from raftka.node.kafka.handlers.raw import RawResponse

Handler = Callable[[Any, Any], Awaitable[Any]]

HANDLERS: dict[int, Handler] = {
    0: produce,
    1: fetch,
    2: list_offsets,
    3: metadata,
    18: api_versions,
    22: init_producer_id,
}


async def handle(conn: Any, request: Any) -> Any:
    return await HANDLERS[request.api.key](conn, request)


__all__ = ["HANDLERS", "RawResponse", "handle", "unsupported_version_response"]
