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

from raftka.node.kafka.handlers.acls import (alter_user_scram_credentials, create_acls, delete_acls, describe_acls,
                                             describe_user_scram_credentials)
from raftka.node.kafka.handlers.admin import (alter_configs, create_partitions, create_topics, delete_topics,
                                              describe_cluster, describe_configs, incremental_alter_configs)
from raftka.node.kafka.handlers.api_versions import api_versions, unsupported_version_response
from raftka.node.kafka.handlers.delete_records import delete_records
from raftka.node.kafka.handlers.fetch import fetch
from raftka.node.kafka.handlers.groups import (delete_groups, describe_groups, find_coordinator, heartbeat, join_group,
                                               leave_group, list_groups, sync_group)
from raftka.node.kafka.handlers.list_offsets import list_offsets
from raftka.node.kafka.handlers.metadata import metadata
from raftka.node.kafka.handlers.offsets import offset_commit, offset_fetch
from raftka.node.kafka.handlers.produce import init_producer_id, produce
from raftka.node.kafka.handlers.raw import RawResponse
from raftka.node.kafka.handlers.sasl import sasl_authenticate, sasl_handshake

Handler = Callable[[Any, Any], Awaitable[Any]]

HANDLERS: dict[int, Handler] = {  # by API key; every API of `API_TABLE` (a test checks both ways)
    0: produce,
    1: fetch,
    2: list_offsets,
    3: metadata,
    8: offset_commit,
    9: offset_fetch,
    10: find_coordinator,
    11: join_group,
    12: heartbeat,
    13: leave_group,
    14: sync_group,
    15: describe_groups,
    16: list_groups,
    17: sasl_handshake,
    18: api_versions,
    19: create_topics,
    20: delete_topics,
    21: delete_records,
    22: init_producer_id,
    29: describe_acls,
    30: create_acls,
    31: delete_acls,
    32: describe_configs,
    33: alter_configs,
    36: sasl_authenticate,
    37: create_partitions,
    42: delete_groups,
    44: incremental_alter_configs,
    50: describe_user_scram_credentials,
    51: alter_user_scram_credentials,
    60: describe_cluster,
}


async def handle(conn: Any, request: Any) -> Any:
    return await HANDLERS[request.api.key](conn, request)


__all__ = ["HANDLERS", "RawResponse", "handle", "unsupported_version_response"]
