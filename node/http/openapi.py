"""The OpenAPI 3.0 description of the broker's HTTP API, served at ``GET /openapi.json``.

Built in code from a few helpers so each route reads as one entry; the
prose contract is notes/http_api.md. Every route ``create_app`` registers is
here (aiohttp's automatic HEAD twins of the GET routes aside): a test
compares the two, and a fuzz test drives a real cluster from this document.
"""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["SPEC_VERSION", "openapi_spec"]

SPEC_VERSION = "3.0.3"

JSON = "application/json"
KAFKA = "application/vnd.kafka.v2+json"
BINARY = "application/vnd.kafka.binary.v2+json"
JSON_EMBEDDED = "application/vnd.kafka.json.v2+json"
BATCH = "application/vnd.raftka.batch"

NAME_PATTERN = "^[a-zA-Z0-9._-]{1,249}$"
INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _param(name: str) -> dict:
    return {"$ref": f"#/components/parameters/{name}"}


def _obj(properties: dict, required: tuple[str, ...] = (), *, additional: bool = False) -> dict:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "additionalProperties": additional}
    if required:
        schema["required"] = list(required)
    return schema


def _int(low: int | None = None, high: int | None = None, **extra: Any) -> dict:
    schema: dict[str, Any] = {"type": "integer", **extra}
    if low is not None:
        schema["minimum"] = low
    if high is not None:
        schema["maximum"] = high
    return schema


def _nullable(schema: dict) -> dict:
    return {**schema, "nullable": True}


def _query(name: str, schema: dict, description: str, *, required: bool = False) -> dict:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


def _body(schema: dict, *media_types: str, required: bool = True) -> dict:
    return {"required": required, "content": {m: {"schema": schema} for m in (media_types or (JSON,))}}


def _ok(description: str, schema: dict | None = None, *media_types: str, status: str = "200") -> dict:
    response: dict[str, Any] = {"description": description,
                                "headers": {"X-Raftka-Broker": {"$ref": "#/components/headers/Broker"}}}
    if schema is not None:
        response["content"] = {m: {"schema": schema} for m in (media_types or (JSON,))}
    return {status: response}


def _op(summary: str, responses: dict, *, params: list | None = None, body: dict | None = None,
        tag: str, errors: str = "") -> dict:
    op: dict[str, Any] = {
        "summary": summary,
        "tags": [tag],
        "responses": {**responses, "default": {"$ref": "#/components/responses/Error"}},
    }
    if errors:
        op["description"] = f"Errors: {errors}."
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = body
    return op


# ------------------------------------------------------------------ schemas

_TP = _obj({"topic": _ref("Name"), "partition": _int(0, INT32_MAX)}, ("topic", "partition"))
_TP_OFFSET = _obj({"topic": _ref("Name"), "partition": _int(0, INT32_MAX), "offset": _int(0, INT64_MAX),
                   "metadata": _nullable({"type": "string", "description": "accepted, not stored"})},
                  ("topic", "partition", "offset"))
_TOPIC_CONFIGS = {
    "type": "object",
    "description": "Kafka topic configs (retention.ms, retention.bytes, segment.bytes, max.message.bytes, "
                   "cleanup.policy); values as integers or decimal strings.",
    "additionalProperties": {"oneOf": [{"type": "string"}, {"type": "integer"}]},
}
_REPLICA = _obj({"broker": {"type": "integer"}, "leader": {"type": "boolean"},
                 "in_sync": _nullable({"type": "boolean"})}, ("broker", "leader", "in_sync"))
_PARTITION = _obj({"partition": {"type": "integer"}, "leader": _nullable({"type": "integer"}),
                   "replicas": {"type": "array", "items": _REPLICA},
                   "high_watermark": _nullable({"type": "integer"}),
                   "log_start_offset": _nullable({"type": "integer"})},
                  ("partition", "leader", "replicas", "high_watermark", "log_start_offset"))
_HEADER = _obj({"key": {"type": "string"}, "value": _nullable({"type": "string", "format": "byte"})}, ("key", "value"))
_PRODUCER_FIELDS = {
    "producer_id": _int(0, INT64_MAX, description="From POST /producers; with producer_epoch and base_sequence."),
    "producer_epoch": _int(0, 2**15 - 1),
    "base_sequence": _int(0, INT32_MAX, description="Sequence of the first record; +len(records) per batch."),
}


def _produce_record(embedded: dict) -> dict:
    return _obj({"key": embedded, "value": embedded, "partition": _int(0, INT32_MAX),
                 "headers": _nullable({"type": "array", "items": _HEADER}),
                 "timestamp": _nullable(_int(0, INT64_MAX))})


def _produce_request(embedded: dict) -> dict:
    return _obj({"records": {"type": "array", "minItems": 1, "items": _produce_record(embedded)},
                 **_PRODUCER_FIELDS, **_SCHEMA_FIELDS}, ("records",))


_SCHEMA_FIELDS = {name: {"nullable": True, "enum": [None], "description": "REST Proxy v2; only null (no schema "
                                                                            "registry)"}
                  for name in ("key_schema", "value_schema", "key_schema_id", "value_schema_id")}


_B64 = _nullable({"type": "string", "format": "byte", "description": "base64"})
_ANY_JSON = {"nullable": True, "description": "any JSON value"}

_FETCHED = _obj({"topic": {"type": "string"}, "key": {"nullable": True}, "value": {"nullable": True},
                 "partition": {"type": "integer"}, "offset": {"type": "integer"},
                 "timestamp": _nullable({"type": "integer"}), "headers": {"type": "array", "items": _HEADER},
                 "base64_fields": {"type": "array", "items": {"type": "string"}}},
                ("topic", "key", "value", "partition", "offset", "timestamp", "headers"))

SCHEMAS: dict[str, Any] = {
    "Name": {"type": "string", "pattern": NAME_PATTERN, "description": "topic or group name"},
    "Error": {
        "type": "object",
        "required": ["error_code", "message"],
        "properties": {
            "error_code": {"type": "integer", "description": "five digits; error_code // 100 == HTTP status"},
            "message": {"type": "string"},
            "leader_id": _nullable({"type": "integer"}),
            "leader_url": _nullable({"type": "string"}),
            "earliest": {"type": "integer"},
            "latest": {"type": "integer"},
            "generation": _nullable({"type": "integer"}),
        },
    },
    "TopicPartition": _TP,
    "TopicPartitionOffset": _TP_OFFSET,
    "Partition": _PARTITION,
    "ProduceRequestBinary": _produce_request(_B64),
    "ProduceRequestJson": _produce_request(_ANY_JSON),
    "ProduceResponse": _obj({
        "offsets": {"type": "array", "items": _obj({
            "partition": {"type": "integer"}, "offset": _nullable({"type": "integer"}),
            "error_code": _nullable({"type": "integer"}), "error": _nullable({"type": "string"})},
            ("partition", "offset", "error_code", "error"))},
        "key_schema_id": _nullable({"type": "integer"}), "value_schema_id": _nullable({"type": "integer"})},
        ("offsets",)),
    "Records": {"type": "array", "items": _FETCHED},
    "Assignment": {"type": "array", "items": _TP},
    "Offsets": _obj({"offsets": {"type": "array", "items": _TP_OFFSET}}, ("offsets",)),
}

_TOPIC_PARAM = {"name": "topic", "in": "path", "required": True, "schema": _ref("Name")}
_PARTITION_PARAM = {"name": "partition", "in": "path", "required": True, "schema": _int(0, 999_999_999)}
_GROUP_PARAM = {"name": "group", "in": "path", "required": True, "schema": _ref("Name")}
_INSTANCE_PARAM = {"name": "instance", "in": "path", "required": True,
                   "schema": {"type": "string", "pattern": "^[a-zA-Z0-9._-]{1,64}$"},
                   "description": "the name given at creation, else rk<owner broker>-<uuid>; other brokers forward "
                                  "to the owner"}
_MEMBER_PARAM = {"name": "member", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}

TOPIC = [_param("topic")]
PART = [_param("topic"), _param("partition")]
GROUP = [_param("group")]
INST = [_param("group"), _param("instance")]
_TIMEOUT_MS = _query("timeout_ms", _int(1, 300_000), "Commit timeout (default 10000); 50003 when exceeded.")

# ------------------------------------------------------------------- paths


def _ops_paths() -> dict:
    any_object = {"type": "object"}
    return {
        "/health": {"get": _op("Liveness: 200 when a metadata leader is known (status ok, or degraded with the "
                               "problems in words, and partition replicas that could not be opened here, retried "
                               "with backoff, in partition_problems; storage: the data dir's state, e.g. below "
                               "--min-free-bytes or a write failed, with storage.reason), else 503.", {
            **_ok("healthy", _obj({"status": {"type": "string", "enum": ["ok", "degraded"]},
                                   "broker": {"type": "integer"},
                                   "metadata_leader": _nullable({"type": "integer"}),
                                   "problems": {"type": "array", "items": {"type": "string"}},
                                   "partition_problems": {"type": "array", "items": any_object},
                                   "listeners": _obj({"kafka": {"type": "string"}}),
                                   "storage": any_object},
                                  ("status", "broker", "metadata_leader", "problems", "partition_problems",
                                   "storage"))),
            "503": {"description": "no metadata leader known",
                    "content": {JSON: {"schema": any_object}}}}, tag="ops")},
        "/raft": {"get": _op("Raft state of every group on this broker.", _ok("groups", any_object), tag="ops",
                             params=[_query("groups", {"type": "string"}, "comma-separated group names: only these")])},
        "/raft/leaders": {"get": _op("Partition groups this broker leads, with their terms, and the metadata group's "
                                     "term if it leads it under its lease (`metadata_lease_pending`: it leads it, the lease not yet confirmed; "
                                     "used by peers, when a broker's heartbeats announce a new leadership tag). With `since` = the version "
                                     "of an earlier answer, `groups` is left out while nothing changed.",
                                     _ok("led groups", any_object), tag="ops",
                                     params=[_query("since", {"type": "string"}, "version of an earlier answer")])},
        "/metrics": {"get": _op("Prometheus metrics.", _ok("metrics", {"type": "string"}, "text/plain"), tag="ops")},
        "/openapi.json": {"get": _op("This document.", _ok("OpenAPI 3 document", any_object), tag="ops")},
        "/brokers/{broker}/{view}": {"get": _op(
            "Another broker's /health, /raft or /metrics, relayed by this one (for clients that reach one broker).",
            _ok("that broker's document", any_object, JSON, "text/plain"),
            params=[{"name": "broker", "in": "path", "required": True, "schema": _int(0, INT32_MAX)},
                    {"name": "view", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": ["health", "raft", "metrics"]}}],
            tag="ops", errors="422 42206 unknown broker or view, 503 50302 broker unreachable, "
                              "500 50003 no answer in time")},
        **_console_paths(),
    }


def _console_paths() -> dict:
    page = _op("The web console (a single-page app; a client of this API).", _ok("page", {"type": "string"},
                                                                                  "text/html"), tag="console")
    return {
        "/ui": {"get": page},
        "/ui/": {"get": copy.deepcopy(page)},
        "/ui/{file}": {"get": _op(
            "A static file of the web console.", _ok("file", {"type": "string"}, "text/javascript", "text/css",
                                                     "text/plain"),
            params=[{"name": "file", "in": "path", "required": True, "schema": {"type": "string"}}],
            tag="console", errors="404 40400 no such file")},
    }


_BROKER_PARAM = {"name": "broker", "in": "path", "required": True, "schema": _int(0, INT32_MAX)}
_JOB_REPLICA = _obj({"broker": {"type": "integer"}, "role": {"type": "string",
                                                             "enum": ["voter", "learner", "waiting", "leaving"]},
                     "in_target": {"type": "boolean"}, "bytes_copied": _nullable({"type": "integer"}),
                     "bytes_total": _nullable({"type": "integer"}), "alive": {"type": "boolean"}},
                    ("broker", "role", "bytes_copied", "bytes_total"), additional=True)
SCHEMAS["Reassignment"] = _obj({
    "id": {"type": "integer"}, "topic": {"type": "string"}, "partition": {"type": "integer"},
    "reason": {"type": "string"},
    "state": {"type": "string", "enum": ["copying", "removing", "cancelling", "stuck", "complete"]},
    "stuck_reason": _nullable({"type": "string"}), "cancelled": {"type": "boolean"},
    "before": {"type": "array", "items": {"type": "integer"}}, "target": {"type": "array", "items": {"type": "integer"}},
    "replicas": {"type": "array", "items": _JOB_REPLICA},
    "bytes_copied": {"type": "integer"}, "bytes_total": {"type": "integer"}},
    ("topic", "partition", "state"), additional=True)
SCHEMAS["ReplicationFactorChange"] = _obj({"name": {"type": "string"}, "replication_factor": {"type": "integer"},
                                           "reassignments": {"type": "array", "items": _ref("Reassignment")}},
                                          ("name", "replication_factor", "reassignments"))
SCHEMAS["Decommission"] = _obj({
    "broker": {"type": "integer"}, "membership": {"type": "string", "enum": ["active", "draining", "decommissioned"]},
    "partitions_total": _nullable({"type": "integer"}), "partitions_remaining": {"type": "integer"},
    "metadata_voter": {"type": "boolean"}, "done": {"type": "boolean"},
    "reassignments": {"type": "array", "items": _ref("Reassignment")}},
    ("broker", "membership", "partitions_remaining", "done", "reassignments"), additional=True)


def _cluster_paths() -> dict:
    registry = _obj({"cluster_id": _nullable({"type": "string"}), "formed": {"type": "boolean"},
                     "brokers": {"type": "object"}, "metadata_leader": _nullable({"type": "integer"})},
                    ("cluster_id", "formed", "brokers"))
    broker_detail = _obj({
        "id": {"type": "integer"}, "url": _nullable({"type": "string"}), "raft_address": _nullable({"type": "string"}),
        "rack": _nullable({"type": "string"}), "alive": {"type": "boolean"},
        "membership": {"type": "string", "enum": ["active", "draining", "decommissioned"]},
        "replicas": {"type": "integer"}, "leaders": {"type": "integer"},
        "metadata_role": {"type": "string", "enum": ["voter", "learner", "none"]}},
        ("id", "url", "alive", "membership", "replicas", "leaders", "metadata_role"), additional=True)
    join = _obj({"id": _int(1, INT32_MAX), "incarnation": _int(1, 2**32 - 1), "http_url": {"type": "string"},
                 "raft_host": {"type": "string"}, "raft_port": _int(1, 65535), "rack": _nullable({"type": "string"}),
                 "proof": {"type": "string"}}, ("id", "incarnation", "http_url", "raft_host", "raft_port", "proof"))
    broker = [_BROKER_PARAM]
    return {
        "/cluster": {"get": _op("The cluster id and the broker registry (brokers that start ask it).",
                                _ok("cluster", registry), tag="cluster")},
        "/brokers": {
            "get": _op("Every broker: addresses, rack, alive, membership (active, draining, decommissioned), replica "
                       "and leader counts, metadata role (voter or learner).", _ok("brokers", _obj({
                           "brokers": {"type": "array", "items": {"type": "integer"}},
                           "metadata_leader": _nullable({"type": "integer"}),
                           "cluster_id": _nullable({"type": "string"}),
                           "details": {"type": "array", "items": broker_detail}},
                           ("brokers", "metadata_leader", "details"))), tag="cluster"),
            "post": _op("A broker joins the cluster (raftka-node --join sends this, with a proof of the cluster "
                        "secret; with authentication on, as a request signed with the cluster secret: no user "
                        "needed).", _ok("registered; the cluster as it is now", registry, status="201"),
                        body=_body(join), tag="cluster",
                        errors="403 40321 the proof does not match the cluster secret, 409 40923 a live broker runs "
                               "under that id, 422 42206 malformed, 503 50301 no metadata leader"),
        },
        "/reassignments": {"get": _op(
            "Replica moves in progress: state, the replicas before and after, per-replica bytes copied of the "
            "leader's total, and why a move is stuck.", _ok("moves", _obj(
                {"reassignments": {"type": "array", "items": _ref("Reassignment")}}, ("reassignments",))),
            tag="cluster")},
        "/topics/{topic}/partitions/{partition}/reassignment": {
            "parameters": PART,
            "post": _op("Move a partition to `replicas` (preferred leader first): add learners, let them catch up, "
                        "promote them, move leadership off a leaving leader, remove the old replicas.",
                        {**_ok("only the order changed (a new preferred leader), or nothing",
                               _obj({}, additional=True)),
                         **_ok("the move started", _ref("Reassignment"), status="202")},
                        body=_body(_obj({"replicas": {"type": "array", "items": _int(0, INT32_MAX)}},
                                        ("replicas",))),
                        tag="cluster", errors="404 40401/40402, 409 40921 moving already, 422 42221 an unknown, "
                                              "dead, draining or repeated broker, 503 50301 no metadata leader"),
            "delete": _op("Cancel a move: the partition returns to the replicas it started from.",
                          _ok("the move, now going back", _ref("Reassignment")), tag="cluster",
                          errors="404 40411 not moving"),
        },
        "/brokers/{broker}/decommission": {
            "parameters": broker,
            "post": _op("Drain every replica (and a metadata voter seat) off a broker, keeping each partition's "
                        "replication factor.", _ok("the drain started", _ref("Decommission"), status="202"),
                        tag="cluster", errors="404 40406 unknown broker, 409 40921 a partition on it is moving, "
                                              "409 40922 it would leave a partition short or the metadata group "
                                              "without a live quorum, or it is not active"),
            "get": _op("Progress of a broker's drain.", _ok("drain", _ref("Decommission")), tag="cluster",
                       errors="404 40406 unknown broker"),
        },
        "/brokers/{broker}/recommission": {"post": _op(
            "Stop an unfinished drain: the broker is active again; its moves still running go back.",
            _ok("drain stopped", _ref("Decommission")), params=broker, tag="cluster",
            errors="404 40406 unknown broker, 422 42206 not draining")},
        "/cluster/rebalance": {"post": _op(
            "Spread replicas and preferred leaders evenly over the live active brokers (racks respected).",
            {**_ok("the plan (dry run, or nothing to do)", _obj({}, additional=True)),
             **_ok("moves started", _obj({}, additional=True), status="202")},
            params=[_query("dry_run", {"type": "boolean"}, "only return the plan")], tag="cluster")},
        "/cluster/leaders/balance": {"post": _op(
            "Move partition leadership to each partition's preferred (first) replica.",
            _ok("transfers asked for", _obj({"epoch": {"type": "integer"}, "transfers": {"type": "array"}},
                                            ("epoch", "transfers")), status="202"), tag="cluster")},
    }


def _topic_paths() -> dict:
    create = _obj({"name": _ref("Name"), "partitions": _int(1, 10_000), "partitions_count": _int(1, 10_000),
                   "replication_factor": _int(1, 1000, description="any factor up to the active brokers; an even "
                                                 "one tolerates no more failures than the odd one below it"),
                   "configs": {"oneOf": [_TOPIC_CONFIGS, {"type": "array", "items": _obj(
                       {"name": {"type": "string"}, "value": {"type": "string"}}, ("name", "value"))}]}},
                  ("name",))
    topic_doc = _obj({"name": {"type": "string"}, "configs": {"type": "object"},
                      "replication_factor": {"type": "integer"},
                      "partitions": {"type": "array", "items": _ref("Partition")}},
                     ("name", "configs", "partitions"), additional=True)
    configs_doc = _obj({"name": {"type": "string"}, "configs": {"type": "object"}}, ("name", "configs"))
    return {
        "/metadata": {"get": _op("Compact metadata for smart clients (brokers, topics, partition leaders).",
                                 _ok("metadata", _obj({"brokers": {"type": "object"}, "topics": {"type": "object"},
                                                       "metadata_leader": _nullable({"type": "integer"})},
                                                      ("brokers", "topics"))), tag="cluster")},
        "/brokers/{broker}/replace": {"post": _op(
            "Register the data directory a broker runs on now as its incarnation, so that every group replaces the "
            "old one's replicas (automatic unless two directories under that id were heard from lately).",
            _ok("registration proposed", _obj({"broker": {"type": "integer"}, "incarnation": {"type": "string"},
                                               "previous_incarnation": {"type": "string"}},
                                              ("broker", "incarnation", "previous_incarnation")), status="202"),
            params=[{"name": "broker", "in": "path", "required": True, "schema": _int(0, INT32_MAX)}],
            tag="topics", errors="404 40406 unknown broker, 422 42206 nothing to replace, "
                                 "503 50301 no metadata leader")},
        "/producers": {"post": _op("Allocate an idempotent producer id.", _ok("producer id", _obj(
            {"producer_id": {"type": "integer"}, "producer_epoch": {"type": "integer"}},
            ("producer_id", "producer_epoch"))), tag="produce", errors="503 50301 no metadata leader")},
        "/topics": {
            "get": _op("Topic names.", _ok("names", {"type": "array", "items": {"type": "string"}}), tag="topics"),
            "post": _op("Create a topic (replication factor defaults to min(3, brokers)).",
                        _ok("created", _obj({"name": {"type": "string"}, "partitions": {"type": "integer"},
                                             "replication_factor": {"type": "integer"}, "configs": {"type": "object"}},
                                            ("name", "partitions", "replication_factor", "configs")), status="201"),
                        body=_body(create), tag="topics",
                        errors="409 40904 exists, 422 42206 bad body, 42208 bad name, 42209 bad partition count, "
                               "42210 bad replication factor (or > brokers), 42211 bad config"),
        },
        "/topics/{topic}": {
            "parameters": TOPIC,
            "get": _op("Describe a topic.", _ok("topic", topic_doc), tag="topics", errors="404 40401"),
            "delete": _op("Delete a topic and its data.", _ok("deleted", status="204"), tag="topics",
                          errors="404 40401"),
            "patch": _op("Change the replication factor: every partition moves to N replicas through reassignments "
                         "(202 and the jobs; 200 when nothing changes). Any N from 1 to the active brokers; an even N "
                         "tolerates no more failures than N - 1.",
                         {**_ok("unchanged", _ref("ReplicationFactorChange")),
                          **_ok("moves started", _ref("ReplicationFactorChange"), status="202")},
                         body=_body(_obj({"replication_factor": _int(1, 1000)}, ("replication_factor",))),
                         tag="cluster", errors="404 40401, 409 40921 a partition is moving, 409 40922 not enough live "
                                               "brokers, 422 42206 bad body, 42210 factor above the active brokers"),
            "post": _op("Produce records (REST Proxy v2): explicit partition, else murmur2(key), else round robin.",
                        _ok("per-record offsets (error_code per record when only some partitions failed)",
                            _ref("ProduceResponse"), KAFKA),
                        params=[_TIMEOUT_MS],
                        body={"required": True, "content": {
                            BINARY: {"schema": _ref("ProduceRequestBinary")},
                            JSON_EMBEDDED: {"schema": _ref("ProduceRequestJson")},
                            JSON: {"schema": _ref("ProduceRequestJson")}}},
                        tag="produce", errors="404 40401, 413 41301/41302, 415 41501, 422 42206/42207"),
        },
        "/topics/{topic}/partitions": {
            "parameters": TOPIC,
            "get": _op("Partitions with leaders, replicas and watermarks.",
                       _ok("partitions", {"type": "array", "items": _ref("Partition")}), tag="topics"),
            "post": _op("Grow the partition count to `count`.", _ok("new count", _obj(
                {"name": {"type": "string"}, "partitions": {"type": "integer"}}, ("name", "partitions"))),
                body=_body(_obj({"count": _int(1, 10_000), "partitions": _int(1, 10_000)})), tag="topics",
                errors="404 40401, 422 42209 not larger"),
        },
        "/topics/{topic}/partitions/{partition}": {
            "parameters": PART,
            "get": _op("One partition.", _ok("partition", _ref("Partition")), tag="topics", errors="404 40401/40402"),
            "post": _op("Produce to one partition; optionally idempotent (producer_id, producer_epoch, "
                        "base_sequence).",
                        _ok("offsets", _ref("ProduceResponse"), KAFKA), params=[_TIMEOUT_MS],
                        body={"required": True, "content": {
                            BINARY: {"schema": _ref("ProduceRequestBinary")},
                            JSON_EMBEDDED: {"schema": _ref("ProduceRequestJson")},
                            JSON: {"schema": _ref("ProduceRequestJson")}}},
                        tag="produce", errors="409 40907 sequence out of order, 409 40908 fenced epoch, "
                                              "500 50003 timed out (retry with the same sequence), 503 50301, "
                                              "507 50701 broker storage unavailable (retry on the new leader)"),
        },
        "/topics/{topic}/partitions/{partition}/batch": {
            "parameters": PART,
            "post": _op("Fast path: one Kafka RecordBatch v2 (producer id/epoch/sequence in its header).",
                        _ok("offsets", _obj({"partition": {"type": "integer"}, "base_offset": {"type": "integer"},
                                             "last_offset": {"type": "integer"}, "duplicate": {"type": "boolean"}},
                                            ("partition", "base_offset", "last_offset", "duplicate"))),
                        params=[_TIMEOUT_MS],
                        body=_body({"type": "string", "format": "binary"}, BATCH), tag="produce",
                        errors="422 42206 not a valid batch, 413 41302"),
        },
        "/topics/{topic}/partitions/{partition}/records": {
            "parameters": PART,
            "get": _op("Fetch committed records from `offset` (leader; others forward). Long-polls up to timeout_ms.",
                       _ok("records (raw RecordBatch bytes with Accept: application/vnd.raftka.batch)",
                           _ref("Records"), BINARY, JSON_EMBEDDED),
                       params=[_query("offset", _int(0, INT64_MAX), "first offset", required=True),
                               _query("max_bytes", _int(1, 64 << 20), "default 1 MiB"),
                               _query("timeout_ms", _int(0, 30_000), "long-poll wait, default 0")],
                       tag="fetch", errors="404 40401/40402, 406 40601, 416 41601 (body adds earliest, latest)"),
        },
        "/topics/{topic}/partitions/{partition}/offsets": {
            "parameters": PART,
            "get": _op("Beginning and end offsets of a partition; with `timestamp`, also the first offset whose "
                       "record timestamp is at or after it (Kafka's ListOffsets by time).", _ok("offsets", _obj(
                {"beginning_offset": {"type": "integer"}, "end_offset": {"type": "integer"},
                 "timestamp_offset": {"type": "integer", "description": "end_offset when no record is that recent"}},
                ("beginning_offset", "end_offset"))),
                params=[_query("timestamp", _int(0, INT64_MAX), "epoch milliseconds")], tag="fetch"),
        },
        "/topics/{topic}/partitions/{partition}/delete-records": {
            "parameters": PART,
            "post": _op("Delete the records before `before_offset` (Kafka's DeleteRecords; -1: the high watermark): "
                        "the partition's log start offset moves there on every replica, and a fetch below it "
                        "answers 416 with the new earliest offset. Answers the new log start offset (Kafka's low "
                        "watermark); an offset at or below it changes nothing.",
                        _ok("new log start offset", _obj(
                            {"topic": {"type": "string"}, "partition": {"type": "integer"},
                             "log_start_offset": {"type": "integer"}}, ("topic", "partition", "log_start_offset"))),
                        params=[_TIMEOUT_MS],
                        body=_body(_obj({"before_offset": _int(-1, INT64_MAX)}, ("before_offset",))),
                        tag="fetch", errors="404 40401/40402, 416 41601 above the high watermark (body adds "
                                            "earliest, latest), 422 42206 bad body, 500 50003 timed out"),
        },
        "/topics/{topic}/configs": {
            "parameters": TOPIC,
            "get": _op("Topic configs (with defaults).", _ok("configs", configs_doc), tag="topics"),
            "put": _op("Alter topic configs.", _ok("configs", configs_doc),
                       body=_body(_obj({"configs": _TOPIC_CONFIGS}, ("configs",))), tag="topics",
                       errors="422 42211"),
        },
    }


def _group_paths() -> dict:
    member = _obj({"member_id": {"type": "string"}, "generation": {"type": "integer"},
                   "assignment": _ref("Assignment")}, ("member_id", "generation", "assignment"))
    join = _obj({"member_id": {"type": "string", "minLength": 1},
                 "topics": {"type": "array", "minItems": 1, "items": _ref("Name")},
                 "session_timeout_ms": _int(6000, 1_800_000), "rebalance_timeout_ms": _int(1, 1_800_000),
                 "client_id": {"type": "string", "pattern": "^[a-zA-Z0-9._-]{1,100}$"}}, ("topics",))
    commit = _obj({"member_id": {"type": "string", "minLength": 1}, "generation": _int(0, INT32_MAX),
                   "offsets": {"type": "array", "minItems": 1, "items": _TP_OFFSET},
                   "reset": {"type": "boolean", "description": "store lower offsets too (commit after a seek); "
                                                                "default false: committed offsets only grow"}},
                  ("offsets",))
    summary = _obj({"group": {"type": "string"}, "state": {"type": "string"}, "generation": {"type": "integer"},
                    "members": {"type": "integer"}}, ("group", "state", "generation", "members"))
    describe = _obj({"group": {"type": "string"}, "state": {"type": "string"}, "generation": {"type": "integer"},
                     "members": {"type": "array", "items": _obj({"member_id": {"type": "string"},
                                                                 "topics": {"type": "array"},
                                                                 "assignment": _ref("Assignment")},
                                                                ("member_id", "assignment"))},
                     "offsets": {"type": "array", "items": _obj({
                         "topic": {"type": "string"}, "partition": {"type": "integer"}, "offset": {"type": "integer"},
                         "end_offset": _nullable({"type": "integer"}), "lag": _nullable({"type": "integer"})},
                         ("topic", "partition", "offset", "end_offset", "lag"))}},
                    ("group", "state", "generation", "members", "offsets"))
    return {
        "/groups": {"get": _op("Consumer groups known to the coordinator.", _ok("groups", _obj(
            {"groups": {"type": "array", "items": summary}}, ("groups",))), tag="groups")},
        "/groups/{group}": {"parameters": GROUP, "get": _op(
            "Describe a group: members, assignment, committed offsets and lag.", _ok("group", describe),
            tag="groups", errors="404 40405")},
        "/groups/{group}/members": {"parameters": GROUP, "post": _op(
            "Join (long-polls until the rebalance completes; the first one of an empty group waits 3 s).",
            _ok("membership", member), body=_body(join), tag="groups",
            errors="404 40403 unknown member_id, 409 40906 superseded, 422 42206")},
        "/groups/{group}/members/{member}": {"parameters": [*GROUP, _param("member")], "delete": _op(
            "Leave the group (triggers a rebalance).", _ok("left", status="204"), tag="groups",
            errors="404 40403")},
        "/groups/{group}/heartbeat": {"parameters": GROUP, "post": _op(
            "Keep the session alive.", _ok("ok", {"type": "object"}),
            body=_body(_obj({"member_id": {"type": "string", "minLength": 1}, "generation": _int(0, INT32_MAX)},
                            ("member_id", "generation"))),
            tag="groups", errors="404 40403 unknown member, 409 40905 stale generation, 409 40906 rebalancing")},
        "/groups/{group}/offsets": {
            "parameters": GROUP,
            "post": _op("Commit offsets (next offset to read). Without member_id/generation only while the "
                        "group has no live members.", _ok("committed", {"type": "object"}), body=_body(commit),
                        tag="groups", errors="409 40905 stale generation, 404 40401/40402"),
            "get": _op("Committed offsets.", _ok("offsets", _ref("Offsets")),
                       params=[_query("topic", _ref("Name"), "only this topic")], tag="groups"),
        },
        **_consumer_paths(),
    }


_ACL_FIELDS = {
    "principal": {"type": "string", "pattern": "^User:.+$", "description": "User:<name>, or User:* for every user"},
    "host": {"type": "string", "description": "'*' (default) or a client IP address"},
    "resource_type": {"type": "string", "enum": ["topic", "group", "cluster"]},
    "resource_name": {"type": "string", "minLength": 1,
                      "description": "a name, '*' for all, a prefix (pattern_type prefixed); 'kafka-cluster'"},
    "pattern_type": {"type": "string", "enum": ["literal", "prefixed"]},
    "operation": {"type": "string", "enum": ["all", "read", "write", "create", "delete", "alter", "describe",
                                             "describe_configs", "alter_configs", "idempotent_write",
                                             "cluster_action"]},
    "permission": {"type": "string", "enum": ["allow", "deny"]},
}
_ACL = _obj(_ACL_FIELDS, ("principal", "resource_type", "operation", "permission"))
_ACL_FILTER = _obj({**_ACL_FIELDS, "pattern_type": {"type": "string",
                                                     "enum": ["any", "match", "literal", "prefixed"]}})
_ACLS = _obj({"acls": {"type": "array", "items": _ACL}}, ("acls",))


def _security_paths() -> dict:
    mechanisms = {"type": "array", "items": _obj({"mechanism": {"type": "string"}, "iterations": {"type": "integer"}},
                                                 ("mechanism", "iterations"))}
    user = _obj({"name": {"type": "string", "pattern": "^[A-Za-z0-9._@+-]{1,255}$"},
                 "password": {"type": "string", "minLength": 1},
                 "mechanisms": {"type": "array", "items": {"type": "string",
                                                           "enum": ["SCRAM-SHA-256", "SCRAM-SHA-512"]}},
                 "iterations": _int(4096, 16384)}, ("name", "password"))
    set_user = _obj({"name": {"type": "string"}, "mechanisms": {"type": "array", "items": {"type": "string"}},
                     "created": {"type": "boolean"}}, ("name", "mechanisms", "created"))
    return {
        "/whoami": {"get": _op("The principal this request is authenticated as.", _ok("principal", _obj({
            "principal": {"type": "string"}, "superuser": {"type": "boolean"}, "auth": {"type": "string"},
            "tls": {"type": "boolean"}}, ("principal", "superuser", "auth", "tls"))), tag="security")},
        "/users": {
            "get": _op("Users and their SCRAM mechanisms (never keys or salts).", _ok("users", _obj({
                "users": {"type": "array", "items": _obj({"name": {"type": "string"}, "mechanisms": mechanisms},
                                                         ("name", "mechanisms"))}}, ("users",))), tag="security",
                errors="403 40303 not allowed to describe the cluster"),
            "post": _op("Create a user or set its password (SCRAM credentials; the password is not stored).",
                        {**_ok("password changed", set_user), **_ok("user created", set_user, status="201")},
                        body=_body(user), tag="security",
                        errors="403 40303 not allowed to alter the cluster, 422 42206 bad name or password"),
        },
        "/users/{user}": {"delete": _op(
            "Delete a user.", _ok("deleted", status="204"),
            params=[{"name": "user", "in": "path", "required": True, "schema": {"type": "string"}}],
            tag="security", errors="403 40303, 404 40407 no such user")},
        "/acls": {
            "get": _op("ACLs matching the query (absent fields match anything; with a resource name the pattern "
                       "type defaults to literal; match: every ACL that applies to that name).",
                       _ok("acls", _ACLS),
                       params=[_query(name, schema, name) for name, schema in _ACL_FILTER["properties"].items()],
                       tag="security", errors="403 40303, 422 42206 bad filter"),
            "post": _op("Add ACLs (one binding, or {\"acls\": [...]}).", _ok("added", _obj(
                {"created": {"type": "integer"}}, ("created",)), status="201"),
                body=_body({"oneOf": [_ACL, _ACLS]}), tag="security", errors="403 40303, 422 42206 bad ACL"),
            "delete": _op("Remove the ACLs a filter matches (one filter, or {\"filters\": [...]}).",
                          _ok("removed", _obj({"deleted": {"type": "array", "items": _ACL}}, ("deleted",))),
                          body=_body({"oneOf": [_ACL_FILTER, _obj({"filters": {"type": "array",
                                                                               "items": _ACL_FILTER}},
                                                                  ("filters",))]}),
                          tag="security", errors="403 40303, 422 42206 bad filter"),
        },
    }


def _consumer_paths() -> dict:
    base = "/consumers/{group}/instances/{instance}"
    name = _nullable({"type": "string", "pattern": "^[a-zA-Z0-9._-]{1,64}$"})
    create = _obj({"name": name, "id": name,
                   "format": _nullable({"type": "string", "enum": ["binary", "json"]}),
                   "auto.offset.reset": _nullable({"type": "string", "enum": ["earliest", "latest", "none"]}),
                   "auto.commit.enable": _nullable({"oneOf": [{"type": "boolean"},
                                                               {"type": "string", "enum": ["true", "false"]}]}),
                   "fetch.min.bytes": _nullable({"oneOf": [_int(-1, INT32_MAX),
                                                           {"type": "string", "pattern": "^-?[0-9]{1,10}$"}]}),
                   "consumer.request.timeout.ms": _nullable({"oneOf": [_int(0, 30_000),
                                                                       {"type": "string",
                                                                        "pattern": "^[0-9]{1,5}$"}]})})
    partitions = _obj({"partitions": {"type": "array", "minItems": 1, "items": _TP}}, ("partitions",))
    offsets = _obj({"offsets": {"type": "array", "minItems": 1, "items": _TP_OFFSET}}, ("offsets",))
    committed = _obj({"offsets": {"type": "array", "items": _obj({
        "topic": {"type": "string"}, "partition": {"type": "integer"}, "offset": {"type": "integer"},
        "metadata": {"type": "string"}}, ("topic", "partition", "offset"))}}, ("offsets",))
    no_content = _ok("done", status="204")
    any_object = {"type": "object"}
    return {
        "/consumers/{group}": {"parameters": GROUP, "post": _op(
            "Create a consumer instance on this broker.",
            _ok("instance", _obj({"instance_id": {"type": "string"}, "base_uri": {"type": "string"}},
                                 ("instance_id", "base_uri")), KAFKA),
            body=_body(create, KAFKA, JSON, required=False), tag="consumers",
            errors="409 40902 name taken, 422 42204 bad config")},
        base: {"parameters": INST,
               "get": _op("The instance: id, group, format, owning broker, subscription (raftka's addition).",
                          _ok("instance", any_object, KAFKA), tag="consumers", errors="404 40403"),
               "delete": _op("Delete the instance (commits if auto-commit).", no_content,
                             tag="consumers", errors="404 40403")},
        f"{base}/subscription": {
            "parameters": INST,
            "post": _op("Subscribe to topics, or to every topic matching topic_pattern (a regular expression "
                        "matching whole names); joins the group in the background.", no_content,
                        body=_body({"oneOf": [
                            _obj({"topics": {"type": "array", "minItems": 1, "items": _ref("Name")}}, ("topics",)),
                            _obj({"topic_pattern": {"type": "string", "minLength": 1}}, ("topic_pattern",))]},
                            KAFKA, JSON),
                        tag="consumers", errors="409 40901 manually assigned"),
            "get": _op("Subscribed topics.", _ok("topics", _obj({"topics": {"type": "array",
                                                                           "items": {"type": "string"}}},
                                                               ("topics",)), KAFKA), tag="consumers"),
            "delete": _op("Unsubscribe.", no_content, tag="consumers"),
        },
        f"{base}/assignments": {
            "parameters": INST,
            "post": _op("Assign partitions manually.", no_content,
                        body=_body(_obj({"partitions": {"type": "array", "items": _TP}}, ("partitions",)), KAFKA, JSON),
                        tag="consumers", errors="409 40901 subscribed"),
            "get": _op("Assigned partitions.", _ok("partitions", _obj({"partitions": _ref("Assignment")},
                                                                     ("partitions",)), KAFKA), tag="consumers"),
        },
        f"{base}/records": {"parameters": INST, "get": _op(
            "Poll records from the assigned partitions (returns as soon as any has data).",
            _ok("records", _ref("Records"), BINARY, JSON_EMBEDDED),
            params=[_query("timeout", _int(0, 30_000), "ms; default consumer.request.timeout.ms"),
                    _query("max_bytes", _int(1, INT32_MAX), "bound on keys and values returned")],
            tag="consumers", errors="406 40601 Accept does not match the instance format")},
        f"{base}/offsets": {
            "parameters": INST,
            "post": _op("Commit the offsets of the last records consumed (stored +1); no body = current positions.",
                        _ok("committed"), body=_body(offsets, KAFKA, JSON, required=False), tag="consumers",
                        errors="409 40905/40906"),
            "get": _op("Committed offsets of ?topic=t[&partition=p] (or a {\"partitions\"} body), else the "
                       "assignment.", _ok("offsets", committed, KAFKA),
                       params=[_query("topic", _ref("Name"), "topic"),
                               _query("partition", _int(0, INT32_MAX), "partition (repeatable)")],
                       tag="consumers"),
        },
        f"{base}/positions": {"parameters": INST, "post": _op(
            "Seek to offsets.", no_content, body=_body(offsets, KAFKA, JSON), tag="consumers")},
        f"{base}/positions/beginning": {"parameters": INST, "post": _op(
            "Seek to the beginning.", no_content, body=_body(partitions, KAFKA, JSON), tag="consumers")},
        f"{base}/positions/end": {"parameters": INST, "post": _op(
            "Seek to the end.", no_content, body=_body(partitions, KAFKA, JSON), tag="consumers")},
    }


def openapi_spec() -> dict:
    """A fresh copy of the OpenAPI document (callers may modify it)."""
    return copy.deepcopy({
        "openapi": SPEC_VERSION,
        "info": {
            "title": "raftka broker API",
            "version": "1",
            "description": "Kafka-style log replicated with Raft; REST Proxy v2 compatible where it overlaps. "
                           "Every answer carries X-Raftka-Broker (the broker that served it). Errors are "
                           '{"error_code", "message"} with error_code // 100 == HTTP status; 503 50301/50302, '
                           "507 50701 (broker storage unavailable: nothing written) and 500 50003 are retriable. "
                           "Produce is always acks=all. With authentication on (--auth required) every route "
                           "but /health, /openapi.json and /ui takes HTTP Basic credentials or a client "
                           "certificate (401 40101 without), and the ACLs decide (403 40301 topic, 40302 group, "
                           "40303 cluster).",
        },
        "paths": {**_ops_paths(), **_topic_paths(), **_cluster_paths(), **_group_paths(), **_security_paths()},
        "components": {
            "schemas": SCHEMAS,
            "parameters": {"topic": _TOPIC_PARAM, "partition": _PARTITION_PARAM, "group": _GROUP_PARAM,
                           "instance": _INSTANCE_PARAM, "member": _MEMBER_PARAM},
            "headers": {"Broker": {"description": "id of the broker that served the request",
                                   "schema": {"type": "string"}}},
            "responses": {"Error": {"description": "error document",
                                    "content": {JSON: {"schema": _ref("Error")}}}},
            "securitySchemes": {"basic": {"type": "http", "scheme": "basic"}},
        },
        "security": [{}, {"basic": []}],
    })
