"""HTTP routes for consumer groups: raftka's group protocol (``/groups``) and REST Proxy v2 instances (``/consumers``).

Thin handlers: forward when another broker must serve the request (the
group coordinator, or the broker owning a consumer instance), validate the
JSON (orjson; unknown fields and wrong types are 422s naming the field), call
``GroupCoordinator`` / ``RestConsumers``, render JSON. An ``ApiError`` becomes
its REST Proxy error document here, so the handlers do not depend on a
middleware. Paths and bodies: notes/http_api.md; the broker supplies a
``GroupsFacade`` (``HttpGroups`` in broker_groups.py, over the ``GroupService``).

Additions to the contract: ``POST /groups/{g}/members`` accepts an optional
``client_id`` (prefix of a new member id); member descriptions carry their
``topics``; ``GET /consumers/{g}/instances/{i}/offsets`` without a body takes
``?topic=t[&partition=p...]``, or else the instance's assignment.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import orjson
from aiohttp import web

from raftka.node.cluster.topics import validate_topic_name
from raftka.node.errors import (
    ApiError,
    ConsumerAlreadyExists,
    GroupNotFound,
    InvalidRequest,
    NotAcceptable,
    TopicNotFound,
    UnsupportedMediaType,
)
from raftka.node.groups.assignor import TopicPartition
from raftka.node.groups.coordinator import GroupCoordinator, validate_group_name
from raftka.node.http.auth import authorize, principal_of, visible
from raftka.node.http.codecs import EmbeddedFormat, render_records
from raftka.node.http.rest_consumers import MAX_REQUEST_TIMEOUT_MS, RestConsumers, parse_instance_config
from raftka.node.security.acl import Operation, Resource, ResourceType

__all__ = ["GroupsFacade", "add_group_routes"]

_JSON = "application/json"
_KAFKA = "application/vnd.kafka.v2+json"
_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_DEFAULT_SESSION_TIMEOUT_MS = 10_000
_DEFAULT_REBALANCE_TIMEOUT_MS = 30_000
_DEFAULT_MAX_BYTES = 64 * 1024 * 1024  # Confluent's consumer.request.max.bytes


class GroupsFacade(Protocol):
    """What the group handlers need from the broker."""

    rest_consumers: RestConsumers
    """The REST consumer instances this broker owns."""

    def coordinator(self) -> GroupCoordinator:
        """This broker's group coordinator; raises ``NotLeader`` when this broker is not the coordinator."""
        ...

    async def forward_to_coordinator(self, request: web.Request) -> web.StreamResponse | None:
        """The coordinator's response when another broker coordinates groups; None when this one does."""
        ...

    async def forward_to_instance_owner(
        self, request: web.Request, group: str, instance_id: str
    ) -> web.StreamResponse | None:
        """The owner's response when another broker hosts the instance; None when this one does or none does."""
        ...

    async def instance_elsewhere(self, request: web.Request, group: str, instance_id: str) -> int | None:
        """The other broker that hosts the instance, if any (asked of the peers)."""
        ...

    def partitions_of(self, topic: str) -> int | None:
        """Partition count of ``topic``; None if it does not exist."""
        ...

    def check_partitions(self, partitions: list[TopicPartition]) -> None:
        """``TopicNotFound`` / ``PartitionNotFound`` unless every (topic, partition) exists."""
        ...

    async def committed_offsets(self, group: str) -> dict[TopicPartition, int]:
        """All committed (next-to-read) offsets of ``group``."""
        ...

    async def commit_offsets(
        self,
        group: str,
        offsets: dict[TopicPartition, int],
        member_id: str | None,
        generation: int | None,
        *,
        reset: bool = False,
    ) -> None:
        """Commit through the metadata group; its state machine refuses stale generations (``StaleGeneration``).

        Committed offsets only grow, unless ``reset`` (an explicit commit after a seek) stores lower ones."""
        ...

    async def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int | None]:
        """High watermark of each partition (None when its leader cannot tell now)."""
        ...


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _api(handler: Handler) -> Handler:
    """Answer an ``ApiError`` with its error document."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            return await handler(request)
        except ApiError as exc:
            return web.Response(status=exc.http_status, body=exc.to_json(), content_type=_JSON)

    return wrapped


def _json(doc: Any, *, content_type: str = _JSON) -> web.Response:
    return web.Response(body=orjson.dumps(doc), content_type=content_type)


def _no_content() -> web.Response:
    return web.Response(status=204)


# --- request parsing ----------------------------------------------------------------


def _type_name(value: object) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__
    )


async def _json_object(request: web.Request, *, optional: bool = False) -> dict[str, Any] | None:
    """The JSON object in the body; None if the body is empty and ``optional``."""
    raw = await request.read()
    if not raw.strip():
        if optional:
            return None
        raise InvalidRequest("Request body is empty; expected a JSON object.")
    content_type = request.headers.get("Content-Type")
    if content_type is not None:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != _JSON and not (media.startswith("application/vnd.kafka.") and media.endswith("+json")):
            raise UnsupportedMediaType(f"Content-Type '{content_type}' is not supported; send {_KAFKA} or {_JSON}.")
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"Request body is not valid JSON: {exc}.") from None
    if type(doc) is not dict:
        raise InvalidRequest(f"Request body must be a JSON object, got {_type_name(doc)}.")
    return doc


async def _body(request: web.Request, allowed: frozenset[str], *, optional: bool = False) -> dict[str, Any] | None:
    """``_json_object`` with only the ``allowed`` fields."""
    doc = await _json_object(request, optional=optional)
    unknown = sorted(set(doc or ()) - allowed)
    if unknown:
        raise InvalidRequest(
            f"Unknown field(s) {', '.join(map(repr, unknown))} in the request body; allowed: {', '.join(sorted(allowed))}."
        )
    return doc


def _int(value: object, where: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise InvalidRequest(f"{where} must be an integer from {low} to {high}, got {value!r}.")
    return value


def _str(value: object, where: str) -> str:
    if type(value) is not str or not value:
        raise InvalidRequest(f"{where} must be a non-empty string, got {_type_name(value)}.")
    return value


def _list(doc: dict[str, Any], name: str) -> list[Any]:
    value = doc.get(name)
    if type(value) is not list:
        raise InvalidRequest(f"'{name}' must be a list, got {_type_name(value)}.")
    return value


def _topics(doc: dict[str, Any]) -> list[str]:
    topics = _list(doc, "topics")
    if not topics:
        raise InvalidRequest("'topics' must name at least one topic.")
    return [validate_topic_name(topic) for topic in topics]


def _subscription(doc: dict[str, Any]) -> list[str] | str:
    """A REST Proxy subscription: ``{"topics": [...]}`` or ``{"topic_pattern": "regex"}``."""
    given = [name for name in ("topics", "topic_pattern") if doc.get(name) is not None]
    if len(given) != 1:
        raise InvalidRequest("Give either 'topics' (a list of topic names) or 'topic_pattern' (a regular expression).")
    if given == ["topics"]:
        return _topics(doc)
    return _str(doc["topic_pattern"], "'topic_pattern'")


def _partition_items(
    doc: dict[str, Any], name: str, fields: frozenset[str], *, allow_empty: bool = False,
    optional: frozenset[str] = frozenset(),
) -> list[dict[str, Any]]:
    items = _list(doc, name)
    if not items and not allow_empty:
        raise InvalidRequest(f"'{name}' is empty.")
    seen: set[TopicPartition] = set()
    for i, item in enumerate(items):
        where = f"{name}[{i}]"
        if type(item) is not dict:
            raise InvalidRequest(f"{where} must be an object, got {_type_name(item)}.")
        if not fields <= item.keys() <= fields | optional:
            also = f" (and optionally {', '.join(sorted(optional))})" if optional else ""
            raise InvalidRequest(f"{where} must have exactly the fields {', '.join(sorted(fields))}{also}.")
        if type(item.get("metadata", "")) is not str and item.get("metadata") is not None:
            raise InvalidRequest(f"{where}.metadata must be a string, got {_type_name(item['metadata'])}.")
        tp = (validate_topic_name(item["topic"]), _int(item["partition"], f"{where}.partition", 0, _INT32_MAX))
        if tp in seen:
            raise InvalidRequest(f"{where}: partition {tp[0]}/{tp[1]} is listed twice.")
        seen.add(tp)
    return items


_PARTITION_FIELDS = frozenset(("topic", "partition"))
_OFFSET_FIELDS = frozenset(("topic", "partition", "offset"))
_OFFSET_OPTIONAL = frozenset(("metadata",))  # Kafka's commit metadata: accepted, not stored


def _partitions(doc: dict[str, Any], *, allow_empty: bool = False) -> list[TopicPartition]:
    items = _partition_items(doc, "partitions", _PARTITION_FIELDS, allow_empty=allow_empty)
    return [(item["topic"], item["partition"]) for item in items]


def _offsets(doc: dict[str, Any], low: int) -> dict[TopicPartition, int]:
    return {
        (item["topic"], item["partition"]): _int(item["offset"], f"offsets[{i}].offset", low, _INT64_MAX)
        for i, item in enumerate(_partition_items(doc, "offsets", _OFFSET_FIELDS, optional=_OFFSET_OPTIONAL))
    }


def _query_number(raw: str, name: str, low: int, high: int) -> int:
    if not (raw.isascii() and raw.isdigit()):
        raise InvalidRequest(f"Query parameter '{name}' must be an integer from {low} to {high}, got {raw!r}.")
    return _int(int(raw), f"Query parameter '{name}'", low, high)


def _query_int(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    return default if raw is None else _query_number(raw, name, low, high)


def _tp_json(partitions: list[TopicPartition]) -> list[dict[str, Any]]:
    return [{"topic": topic, "partition": partition} for topic, partition in partitions]


def _offsets_json(offsets: dict[TopicPartition, int], **extra: Any) -> list[dict[str, Any]]:
    return [{"topic": t, "partition": p, "offset": offsets[(t, p)], **extra} for t, p in sorted(offsets)]


def _check_accept(accept: str | None, fmt: EmbeddedFormat) -> None:
    """Confluent: the Accept header must name the instance's format (or anything: ``*/*``, none)."""
    if not accept or not accept.strip():
        return
    served = {"*/*", "application/*", _KAFKA, fmt.content_type} | ({_JSON} if fmt is EmbeddedFormat.JSON else set())
    if any(item.split(";", 1)[0].strip().lower() in served for item in accept.split(",")):
        return
    raise NotAcceptable(
        f"This consumer instance was created with the {fmt.name.lower()} format; the Accept header "
        f"'{accept}' does not allow {fmt.content_type}."
    )


def _render_batches(batches: list[tuple[str, int, list[Any]]], fmt: EmbeddedFormat) -> bytes:
    parts = [render_records(topic, partition, records, fmt) for topic, partition, records in batches]
    # Each part is a compact JSON array: splice their elements into one array.
    return b"[" + b",".join(part[1:-1] for part in parts if len(part) > 2) + b"]"


# --- handlers ------------------------------------------------------------------


class _Handlers:
    def __init__(self, groups: GroupsFacade) -> None:
        self.groups = groups

    # raftka group protocol ------------------------------------------------------

    async def join(self, request: web.Request) -> web.StreamResponse:
        if (forwarded := await self.groups.forward_to_coordinator(request)) is not None:
            return forwarded
        group = validate_group_name(request.match_info["group"])
        doc = await _body(
            request, frozenset(("member_id", "topics", "session_timeout_ms", "rebalance_timeout_ms", "client_id"))
        )
        member_id = doc.get("member_id")
        if member_id is not None:
            _str(member_id, "'member_id'")
        client_id = doc.get("client_id")
        if client_id is not None:
            _str(client_id, "'client_id'")
        result = await self.groups.coordinator().join(
            group,
            member_id,
            _topics(doc),
            doc.get("session_timeout_ms", _DEFAULT_SESSION_TIMEOUT_MS),
            doc.get("rebalance_timeout_ms", _DEFAULT_REBALANCE_TIMEOUT_MS),
            client_id=client_id,
        )
        return _json(
            {"member_id": result.member_id, "generation": result.generation, "assignment": _tp_json(result.assignment)}
        )

    async def heartbeat(self, request: web.Request) -> web.StreamResponse:
        if (forwarded := await self.groups.forward_to_coordinator(request)) is not None:
            return forwarded
        group = validate_group_name(request.match_info["group"])
        doc = await _body(request, frozenset(("member_id", "generation")))
        member_id = _str(doc.get("member_id"), "'member_id'")
        generation = _int(doc.get("generation"), "'generation'", 0, _INT32_MAX)
        await self.groups.coordinator().heartbeat(group, member_id, generation)
        return _json({})

    async def leave(self, request: web.Request) -> web.StreamResponse:
        if (forwarded := await self.groups.forward_to_coordinator(request)) is not None:
            return forwarded
        group = validate_group_name(request.match_info["group"])
        await self.groups.coordinator().leave(group, request.match_info["member"])
        return _no_content()

    async def commit(self, request: web.Request) -> web.StreamResponse:
        if (forwarded := await self.groups.forward_to_coordinator(request)) is not None:
            return forwarded
        group = validate_group_name(request.match_info["group"])
        doc = await _body(request, frozenset(("member_id", "generation", "offsets", "reset")))
        member_id, generation, reset = doc.get("member_id"), doc.get("generation"), doc.get("reset", False)
        if type(reset) is not bool:
            raise InvalidRequest(f"'reset' must be true or false, got {_type_name(reset)}.")
        if member_id is not None:
            _str(member_id, "'member_id'")
        if generation is not None:
            _int(generation, "'generation'", 0, _INT32_MAX)
        offsets = _offsets(doc, 0)
        self.groups.check_partitions(list(offsets))
        self.groups.coordinator().check_commit(group, member_id, generation)
        await self.groups.commit_offsets(group, offsets, member_id, generation, reset=reset)
        return _json({})

    async def committed(self, request: web.Request) -> web.StreamResponse:
        if (forwarded := await self.groups.forward_to_coordinator(request)) is not None:
            return forwarded
        group = validate_group_name(request.match_info["group"])
        topic = request.query.get("topic")
        if topic is not None:
            validate_topic_name(topic)
        offsets = await self.groups.committed_offsets(group)
        if topic is not None:
            offsets = {tp: offset for tp, offset in offsets.items() if tp[0] == topic}
        return _json({"offsets": _offsets_json(offsets)})

    async def list_groups(self, request: web.Request) -> web.StreamResponse:
        if (forwarded := await self.groups.forward_to_coordinator(request)) is not None:
            return forwarded
        summaries = self.groups.coordinator().list_groups()
        shown = set(visible(request, ResourceType.GROUP, [s.group for s in summaries]))
        summaries = [s for s in summaries if s.group in shown]
        return _json(
            {
                "groups": [
                    {"group": s.group, "state": s.state, "generation": s.generation, "members": s.members}
                    for s in summaries
                ]
            }
        )

    async def describe(self, request: web.Request) -> web.StreamResponse:
        if (forwarded := await self.groups.forward_to_coordinator(request)) is not None:
            return forwarded
        group = validate_group_name(request.match_info["group"])
        try:
            description = self.groups.coordinator().describe(group)
        except GroupNotFound:
            description = None
        committed = await self.groups.committed_offsets(group)
        if description is None and not committed:
            raise GroupNotFound(group)
        ends = await self.groups.end_offsets(sorted(committed))
        offsets = []
        for tp in sorted(committed):
            end = ends.get(tp)
            lag = None if end is None else max(0, end - committed[tp])
            offsets.append(
                {"topic": tp[0], "partition": tp[1], "offset": committed[tp], "end_offset": end, "lag": lag}
            )
        members = [] if description is None else description.members
        return _json(
            {
                "group": group,
                "state": "Empty" if description is None else description.state,
                "generation": 0 if description is None else description.generation,
                "members": [
                    {"member_id": m.member_id, "topics": m.topics, "assignment": _tp_json(m.assignment)}
                    for m in members
                ],
                "offsets": offsets,
            }
        )

    # REST Proxy v2 consumer instances ------------------------------------------

    async def _instance(self, request: web.Request) -> tuple[str, str, web.StreamResponse | None]:
        group = validate_group_name(request.match_info["group"])
        instance = request.match_info["instance"]
        forwarded = await self.groups.forward_to_instance_owner(request, group, instance)
        if forwarded is None:  # an instance serves only the user who created it (to others it does not exist)
            self.groups.rest_consumers.check_owner(group, instance, principal_of(request))
        return group, instance, forwarded

    async def create_instance(self, request: web.Request) -> web.StreamResponse:
        group = validate_group_name(request.match_info["group"])
        doc = await _json_object(request, optional=True)
        config = parse_instance_config(doc or {})
        if config.name is not None and not self.groups.rest_consumers.has(group, config.name) \
                and await self.groups.instance_elsewhere(request, group, config.name) is not None:
            raise ConsumerAlreadyExists(group, config.name)  # names are unique in a group across the cluster
        instance_id = self.groups.rest_consumers.create(group, config, owner=principal_of(request))
        base_uri = f"{request.url.origin()}/consumers/{group}/instances/{instance_id}"
        return _json({"instance_id": instance_id, "base_uri": base_uri}, content_type=_KAFKA)

    async def describe_instance(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        rest = self.groups.rest_consumers
        config = rest.config(group, instance)
        return _json({"instance_id": instance, "group": group, "format": config.format.name.lower(),
                      "broker": rest.broker_id, "subscription": rest.subscription(group, instance)},
                     content_type=_KAFKA)

    async def delete_instance(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        await self.groups.rest_consumers.delete(group, instance)
        return _no_content()

    async def subscribe(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        subscription = _subscription(await _body(request, frozenset(("topics", "topic_pattern"))))
        if isinstance(subscription, str):
            await self.groups.rest_consumers.subscribe_pattern(group, instance, subscription)
        else:
            await self.groups.rest_consumers.subscribe(group, instance, subscription)
        return _no_content()

    async def subscription(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        return _json({"topics": self.groups.rest_consumers.subscription(group, instance)}, content_type=_KAFKA)

    async def unsubscribe(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        await self.groups.rest_consumers.unsubscribe(group, instance)
        return _no_content()

    async def assign(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        doc = await _body(request, frozenset(("partitions",)))
        await self.groups.rest_consumers.assign(group, instance, _partitions(doc, allow_empty=True))
        return _no_content()

    async def assignments(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        partitions = self.groups.rest_consumers.assignments(group, instance)
        return _json({"partitions": _tp_json(partitions)}, content_type=_KAFKA)

    async def records(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        rest = self.groups.rest_consumers
        config = rest.config(group, instance)
        for topic in sorted({t for t, _ in rest.assignments(group, instance)}):
            await authorize(request, Operation.READ, Resource.topic(topic))
        _check_accept(request.headers.get("Accept"), config.format)
        timeout_ms = _query_int(request, "timeout", config.request_timeout_ms, 0, MAX_REQUEST_TIMEOUT_MS)
        max_bytes = _query_int(request, "max_bytes", _DEFAULT_MAX_BYTES, 1, _INT32_MAX)
        polled = await rest.records(group, instance, timeout_ms, max_bytes)
        return web.Response(
            body=_render_batches(polled.batches, polled.format), content_type=polled.format.content_type
        )

    async def commit_instance_offsets(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        doc = await _body(request, frozenset(("offsets",)), optional=True)
        last_consumed = None if doc is None or doc.get("offsets") in (None, []) else _offsets(doc, -1)
        await self.groups.rest_consumers.commit_offsets(group, instance, last_consumed)
        return web.Response(status=200)

    async def instance_committed(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        rest = self.groups.rest_consumers
        doc = await _body(request, frozenset(("partitions",)), optional=True)
        if doc is not None:
            partitions = _partitions(doc)
        elif "topic" in request.query:
            topic = validate_topic_name(request.query["topic"])
            numbers = [_query_number(n, "partition", 0, _INT32_MAX) for n in request.query.getall("partition", [])]
            if not numbers:
                count = self.groups.partitions_of(topic)
                if count is None:
                    raise TopicNotFound(topic)
                numbers = list(range(count))
            partitions = [(topic, number) for number in numbers]
        else:
            partitions = rest.assignments(group, instance)
        committed = await rest.committed_offsets(group, instance, partitions)
        return _json({"offsets": _offsets_json(committed, metadata="")}, content_type=_KAFKA)

    async def seek(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        doc = await _body(request, frozenset(("offsets",)))
        self.groups.rest_consumers.seek(group, instance, _offsets(doc, 0))
        return _no_content()

    async def seek_to_beginning(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        doc = await _body(request, frozenset(("partitions",)))
        await self.groups.rest_consumers.seek_to_beginning(group, instance, _partitions(doc))
        return _no_content()

    async def seek_to_end(self, request: web.Request) -> web.StreamResponse:
        group, instance, forwarded = await self._instance(request)
        if forwarded is not None:
            return forwarded
        doc = await _body(request, frozenset(("partitions",)))
        await self.groups.rest_consumers.seek_to_end(group, instance, _partitions(doc))
        return _no_content()


def add_group_routes(app: web.Application, groups: GroupsFacade) -> None:
    """Register the ``/groups`` and ``/consumers`` routes of notes/http_api.md on ``app``."""
    h = _Handlers(groups)
    instance = "/consumers/{group}/instances/{instance}"
    routes = [
        ("GET", "/groups", h.list_groups),
        ("GET", "/groups/{group}", h.describe),
        ("POST", "/groups/{group}/members", h.join),
        ("DELETE", "/groups/{group}/members/{member}", h.leave),
        ("POST", "/groups/{group}/heartbeat", h.heartbeat),
        ("POST", "/groups/{group}/offsets", h.commit),
        ("GET", "/groups/{group}/offsets", h.committed),
        ("POST", "/consumers/{group}", h.create_instance),
        ("GET", instance, h.describe_instance),
        ("DELETE", instance, h.delete_instance),
        ("POST", f"{instance}/subscription", h.subscribe),
        ("GET", f"{instance}/subscription", h.subscription),
        ("DELETE", f"{instance}/subscription", h.unsubscribe),
        ("POST", f"{instance}/assignments", h.assign),
        ("GET", f"{instance}/assignments", h.assignments),
        ("GET", f"{instance}/records", h.records),
        ("POST", f"{instance}/offsets", h.commit_instance_offsets),
        ("GET", f"{instance}/offsets", h.instance_committed),
        ("POST", f"{instance}/positions", h.seek),
        ("POST", f"{instance}/positions/beginning", h.seek_to_beginning),
        ("POST", f"{instance}/positions/end", h.seek_to_end),
    ]
    for method, path, handler in routes:
        app.router.add_route(method, path, _api(handler))
