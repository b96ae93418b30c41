"""Produce and fetch routes: REST Proxy v2 JSON, and raftka's binary RecordBatch fast path.

A partition request is served by its leader; any other broker forwards it
(one batch per partition, as raw RecordBatch bytes to the leader's fast path).
`POST /topics/{t}` partitions records itself: explicit partition, else Kafka's
murmur2 of the key, else round robin.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict

import orjson
from aiohttp import web

from raftka.client.partitioner import partition_for_key
from raftka.node.cluster.broker import Broker
from raftka.node.cluster.topics import parse_topic_configs
from raftka.node.errors import ApiError, InvalidRequest, OffsetOutOfRange, RecordTooLarge, error_body
from raftka.node.http.codecs import (fetch_format, parse_produce_request, produce_format, render_produce_response,
                                     render_records)
from raftka.node.http.common import BROKER_KEY, json_response, partition_number, query_int
from raftka.node.http.forwarding import BROKER_HEADER, forward
from raftka.raft import canary
from raftka.raft.partition import ProduceError
from raftka.storage import CorruptBatchError, InvalidRecordError, Record, encode_batch, iter_records, validate_batch
from raftka.storage.errors import OffsetOutOfRangeError, StorageError

BATCH_TYPE = "application/vnd.raftka.batch"
DEFAULT_TIMEOUT_MS = 10_000
MAX_FETCH_BYTES = 64 << 20
MAX_FETCH_WAIT_MS = 30_000
LEADER_WAIT_S = 3.0


class ProduceRejected(ApiError):
    """The partition refused the batch: 40907 sequence out of order, 40908 fenced producer epoch,
    42206 corrupt or invalid batch (codes in raftka's range of the REST Proxy scheme)."""

    def __init__(self, error_code: int, message: str):
        super().__init__(message)
        self.error_code = error_code
        self.http_status = error_code // 100


PRODUCE_ERROR_CODES = {
    ProduceError.OUT_OF_ORDER_SEQUENCE_NUMBER: 40907,
    ProduceError.INVALID_PRODUCER_EPOCH: 40908,
    ProduceError.CORRUPT_MESSAGE: 42206,
    ProduceError.INVALID_RECORD: 42206,
    ProduceError.INVALID_REQUEST: 42206,
}


def max_message_bytes(broker: Broker, topic: str) -> int:
    return parse_topic_configs(broker.topic(topic)["configs"], broker.config.topic_defaults).max_message_bytes


async def leader_or_forward_target(broker: Broker, topic: str, partition: int) -> int | None:
    """This broker's id if it can serve the partition now, else the best broker to forward to."""
    deadline = asyncio.get_running_loop().time() + LEADER_WAIT_S
    replicas = broker.replicas(topic, partition)
    while True:
        hosted = broker.partitions.get((topic, partition))
        if hosted is not None and broker.host.read_allowed(hosted.group):
            return broker.id
        leader = broker.leader_of(topic, partition)
        if leader is not None and leader != broker.id:
            return leader
        if hosted is None:
            return replicas[0]  # a replica knows more; it forwards once more if needed
        if asyncio.get_running_loop().time() >= deadline:
            return None
        await asyncio.sleep(0.02)


# ------------------------------------------------------------------ produce

async def produce_batch(request: web.Request, broker: Broker, topic: str, partition: int, batch: bytes,
                        timeout_s: float) -> tuple[dict, str]:
    """Commit one batch to a partition: locally when leading, else via the leader's fast path.

    Returns the batch endpoint's answer and the id of the broker that served it (for X-Raftka-Broker)."""
    target = await leader_or_forward_target(broker, topic, partition)
    if target == broker.id:
        result = await broker.produce(topic, partition, batch, timeout_s)
        if not result.ok:
            raise ProduceRejected(PRODUCE_ERROR_CODES.get(result.error, 42206), result.error_message)
        return {"partition": partition, "base_offset": result.base_offset, "last_offset": result.last_offset,
                "duplicate": result.duplicate}, str(broker.id)
    error = broker.not_leader(target, f"partition {topic}/{partition}")
    if target is None:
        raise error
    path = f"/topics/{topic}/partitions/{partition}/batch?timeout_ms={int(timeout_s * 1000)}"
    resp = await forward(request, broker.session, broker.urls[target], error, body=batch, path=path,
                         content_type=BATCH_TYPE, timeout=timeout_s + 2)  # a paused leader must not stall us
    doc = orjson.loads(resp.body)
    if resp.status != 200:
        raise ProduceRejected(doc.get("error_code", 50002), doc.get("message", "forwarded produce failed"))
    return doc, resp.headers.get(BROKER_HEADER, str(target))


def encode_records(records, producer) -> bytes:
    producer_id, producer_epoch, base_sequence = producer
    return encode_batch([Record(r.key, r.value, r.headers, r.timestamp) for r in records],
                        producer_id=-1 if producer_id is None else producer_id,
                        producer_epoch=-1 if producer_epoch is None else producer_epoch,
                        base_sequence=-1 if base_sequence is None else base_sequence)


async def produce_to_topic(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    topic = request.match_info["topic"]
    partition_count = len(broker.topic(topic)["partitions"])
    fmt = produce_format(request.headers.get("Content-Type"))
    req = parse_produce_request(await request.read(), fmt)
    timeout_s = query_int(request, "timeout_ms", DEFAULT_TIMEOUT_MS, 1, 300_000) / 1000
    spread = itertools.count(next(broker.round_robin[topic]))
    by_partition: dict[int, list[int]] = defaultdict(list)
    for i, r in enumerate(req.records):
        if r.partition is not None:
            if r.partition >= partition_count:
                raise InvalidRequest(f"Record {i}: partition {r.partition} does not exist; topic '{topic}' has "
                                     f"{partition_count} partitions.")
            p = r.partition
        elif r.key is not None:
            p = partition_for_key(r.key, partition_count)
        else:
            p = next(spread) % partition_count
        by_partition[p].append(i)
    limit = max_message_bytes(broker, topic)
    outcomes: dict[int, int | ApiError] = {}
    servers: set[str] = set()

    async def one(p: int, indexes: list[int]) -> None:
        try:
            batch = encode_records([req.records[i] for i in indexes], (None, None, None))
            if len(batch) > limit:
                raise RecordTooLarge(f"Batch for partition {p} is {len(batch)} bytes; max.message.bytes is {limit}.")
            doc, served_by = await produce_batch(request, broker, topic, p, batch, timeout_s)
            servers.add(served_by)
            for k, i in enumerate(indexes):
                outcomes[i] = doc["base_offset"] + k
        except ApiError as exc:
            for i in indexes:
                outcomes[i] = exc

    await asyncio.gather(*(one(p, idx) for p, idx in by_partition.items()))
    partition_of = {i: p for p, idx in by_partition.items() for i in idx}
    body = render_produce_response((partition_of[i], outcomes[i]) for i in range(len(req.records)))
    errors = [o for o in outcomes.values() if isinstance(o, ApiError)]
    if errors and len(errors) == len(outcomes):
        # Nothing was written: an error document (error_code, message) that still lists every record.
        body = error_body(errors[0].error_code, errors[0].message, **orjson.loads(body))
        return web.Response(body=body, status=errors[0].http_status, content_type="application/json")
    headers = {BROKER_HEADER: servers.pop()} if len(servers) == 1 else None  # else: several leaders served
    return web.Response(body=body, content_type="application/vnd.kafka.v2+json", headers=headers)


async def produce_to_partition(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    topic, partition = request.match_info["topic"], partition_number(request)
    broker.replicas(topic, partition)
    fmt = produce_format(request.headers.get("Content-Type"))
    req = parse_produce_request(await request.read(), fmt, partition=partition)
    timeout_s = query_int(request, "timeout_ms", DEFAULT_TIMEOUT_MS, 1, 300_000) / 1000
    batch = encode_records(req.records, (req.producer_id, req.producer_epoch, req.base_sequence))
    limit = max_message_bytes(broker, topic)
    if len(batch) > limit:
        raise RecordTooLarge(f"Batch is {len(batch)} bytes; max.message.bytes of '{topic}' is {limit}.")
    doc, served_by = await produce_batch(request, broker, topic, partition, batch, timeout_s)
    body = render_produce_response((partition, doc["base_offset"] + k) for k in range(len(req.records)))
    return web.Response(body=body, content_type="application/vnd.kafka.v2+json", headers={BROKER_HEADER: served_by})


async def produce_raw_batch(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    topic, partition = request.match_info["topic"], partition_number(request)
    broker.replicas(topic, partition)
    if request.headers.get("Content-Type", "").split(";")[0].strip() != BATCH_TYPE:
        raise InvalidRequest(f"The batch endpoint takes Content-Type {BATCH_TYPE}.")
    batch = await request.read()
    limit = max_message_bytes(broker, topic)
    if len(batch) > limit:
        raise RecordTooLarge(f"Batch is {len(batch)} bytes; max.message.bytes of '{topic}' is {limit}.")
    try:
        validate_batch(batch)
    except (CorruptBatchError, InvalidRecordError, StorageError, ValueError) as exc:
        raise InvalidRequest(f"Body is not a valid RecordBatch v2: {exc}") from None
    timeout_s = query_int(request, "timeout_ms", DEFAULT_TIMEOUT_MS, 1, 300_000) / 1000
    doc, served_by = await produce_batch(request, broker, topic, partition, batch, timeout_s)
    response = json_response(doc)
    response.headers[BROKER_HEADER] = served_by
    return response


# -------------------------------------------------------------------- fetch

async def fetch_records(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    topic, partition = request.match_info["topic"], partition_number(request)
    broker.replicas(topic, partition)
    accept = request.headers.get("Accept", "")
    raw = BATCH_TYPE in accept
    fmt = None if raw else fetch_format(accept)
    offset = query_int(request, "offset", None, 0, 2**63 - 1)
    max_bytes = query_int(request, "max_bytes", 1 << 20, 1, MAX_FETCH_BYTES)
    wait_ms = query_int(request, "timeout_ms", 0, 0, MAX_FETCH_WAIT_MS)
    if canary.enabled("follower-reads") and (topic, partition) in broker.partitions:
        target = broker.id
    else:
        target = await leader_or_forward_target(broker, topic, partition)
    if target != broker.id:
        error = broker.not_leader(target, f"partition {topic}/{partition}")
        if target is None:
            raise error
        return await forward(request, broker.session, broker.urls[target], error, timeout=wait_ms / 1000 + 10)
    hosted = broker.local_partition(topic, partition)
    sm = hosted.sm
    if offset >= sm.high_watermark and wait_ms:
        await sm.wait_beyond(offset, wait_ms / 1000)
        hosted = broker.local_partition(topic, partition)  # still the leader after waiting?
    hw, start = sm.high_watermark, sm.log_start_offset
    if offset < start or offset > hw:
        raise OffsetOutOfRange(topic, partition, offset, start, hw)
    try:
        data = sm.log.read(offset, max_bytes, max_offset=hw).data if offset < hw else b""
    except OffsetOutOfRangeError:
        raise OffsetOutOfRange(topic, partition, offset, sm.log_start_offset, sm.high_watermark) from None
    headers = {"X-Raftka-High-Watermark": str(hw), "X-Raftka-Log-Start": str(start)}
    if raw:
        return web.Response(body=data, headers={**headers, "Content-Type": BATCH_TYPE})
    records = iter_records(data, start_offset=offset)
    return web.Response(body=render_records(topic, partition, records, fmt), headers=headers,
                        content_type=fmt.content_type)


async def partition_offsets(request: web.Request) -> web.Response:
    broker: Broker = request.app[BROKER_KEY]
    topic, partition = request.match_info["topic"], partition_number(request)
    target = await leader_or_forward_target(broker, topic, partition)
    if target != broker.id:
        error = broker.not_leader(target, f"partition {topic}/{partition}")
        if target is None:
            raise error
        return await forward(request, broker.session, broker.urls[target], error)
    sm = broker.local_partition(topic, partition).sm
    return json_response({"beginning_offset": sm.log_start_offset, "end_offset": sm.high_watermark})


def add_record_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/topics/{topic}", produce_to_topic)
    r.add_post("/topics/{topic}/partitions/{partition}", produce_to_partition)
    r.add_post("/topics/{topic}/partitions/{partition}/batch", produce_raw_batch)
    r.add_get("/topics/{topic}/partitions/{partition}/records", fetch_records)
    r.add_get("/topics/{topic}/partitions/{partition}/offsets", partition_offsets)


__all__ = ["add_record_routes", "BATCH_TYPE"]
