"""Produce, fetch and delete-records routes: REST Proxy v2 JSON, and raftka's binary RecordBatch fast path.

Thin adapters over `ProduceService`, `FetchService` and `DeleteRecordsService`:
parse the request, call the service, render the answer. When the service says
the partition is served elsewhere (`ServedElsewhere`), the request goes to that
broker: a produce as one raw RecordBatch per partition to the leader's fast
path, a fetch, offsets or delete-records request replayed as it is.
"""

from __future__ import annotations

import asyncio

import orjson
from aiohttp import web

from raftka.node.errors import ApiError, InvalidRequest, error_body
from raftka.node.http.codecs import (fetch_format, parse_produce_request, produce_format, render_produce_response,
                                     render_records)
from raftka.node.http.common import SERVICES_KEY, json_response, partition_number, query_int, read_json
from raftka.node.http.forwarding import BROKER_HEADER, forward_elsewhere, forwarded_elsewhere
from raftka.node.services import BrokerServices
from raftka.node.services.produce import ProduceRejected, encode_records
from raftka.node.services.routing import ServedElsewhere
from raftka.storage import Record, iter_records

BATCH_TYPE = "application/vnd.raftka.batch"
DEFAULT_TIMEOUT_MS = 10_000
MAX_FETCH_BYTES = 64 << 20
MAX_FETCH_WAIT_MS = 30_000


# ------------------------------------------------------------------ produce

async def produce_batch(request: web.Request, services: BrokerServices, topic: str, partition: int, batch: bytes,
                        timeout_s: float, *, validate: bool = False) -> tuple[dict, str]:
    """Commit one batch to a partition: locally when leading, else via the leader's fast path.

    Returns the batch endpoint's answer and the id of the broker that served it (for X-Raftka-Broker)."""
    try:
        ack = await services.produce.append(topic, partition, batch, timeout_s, validate=validate)
        return ack.as_dict(), str(services.broker.id)
    except ServedElsewhere as elsewhere:
        path = f"/topics/{topic}/partitions/{partition}/batch?timeout_ms={int(timeout_s * 1000)}"
        resp = await forward_elsewhere(request, elsewhere, body=batch, path=path, content_type=BATCH_TYPE,
                                       timeout=timeout_s + 2)  # a paused leader must not stall us
        doc = orjson.loads(resp.body)
        if resp.status != 200:
            raise ProduceRejected(doc.get("error_code", 50002), doc.get("message", "forwarded produce failed"))
        return doc, resp.headers.get(BROKER_HEADER, str(elsewhere.leader_id))


def batch_of(records, producer=(None, None, None)) -> bytes:
    """One RecordBatch of the REST request's records."""
    return encode_records((Record(r.key, r.value, r.headers, r.timestamp) for r in records), *producer)


def produce_timeout_s(request: web.Request) -> float:
    return query_int(request, "timeout_ms", DEFAULT_TIMEOUT_MS, 1, 300_000) / 1000


async def produce_to_topic(request: web.Request) -> web.Response:
    services: BrokerServices = request.app[SERVICES_KEY]
    topic = request.match_info["topic"]
    services.topics.check_topic(topic)
    fmt = produce_format(request.headers.get("Content-Type"))
    req = parse_produce_request(await request.read(), fmt)
    timeout_s = produce_timeout_s(request)
    by_partition = services.produce.partition_records(topic, [(r.partition, r.key) for r in req.records])
    outcomes: dict[int, int | ApiError] = {}
    servers: set[str] = set()

    async def one(p: int, indexes: list[int]) -> None:
        try:
            batch = batch_of([req.records[i] for i in indexes])
            doc, served_by = await produce_batch(request, services, topic, p, batch, timeout_s)
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
    services: BrokerServices = request.app[SERVICES_KEY]
    topic, partition = request.match_info["topic"], partition_number(request)
    services.topics.check_partition(topic, partition)
    fmt = produce_format(request.headers.get("Content-Type"))
    req = parse_produce_request(await request.read(), fmt, partition=partition)
    timeout_s = produce_timeout_s(request)
    batch = batch_of(req.records, (req.producer_id, req.producer_epoch, req.base_sequence))
    doc, served_by = await produce_batch(request, services, topic, partition, batch, timeout_s)
    body = render_produce_response((partition, doc["base_offset"] + k) for k in range(len(req.records)))
    return web.Response(body=body, content_type="application/vnd.kafka.v2+json", headers={BROKER_HEADER: served_by})


async def produce_raw_batch(request: web.Request) -> web.Response:
    services: BrokerServices = request.app[SERVICES_KEY]
    topic, partition = request.match_info["topic"], partition_number(request)
    services.topics.check_partition(topic, partition)
    if request.headers.get("Content-Type", "").split(";")[0].strip() != BATCH_TYPE:
        raise InvalidRequest(f"The batch endpoint takes Content-Type {BATCH_TYPE}.")
    batch = await request.read()
    doc, served_by = await produce_batch(request, services, topic, partition, batch, produce_timeout_s(request),
                                         validate=True)
    response = json_response(doc)
    response.headers[BROKER_HEADER] = served_by
    return response


# -------------------------------------------------------------------- fetch

async def fetch_records(request: web.Request) -> web.Response:
    services: BrokerServices = request.app[SERVICES_KEY]
    topic, partition = request.match_info["topic"], partition_number(request)
    services.topics.check_partition(topic, partition)
    accept = request.headers.get("Accept", "")
    raw = BATCH_TYPE in accept
    fmt = None if raw else fetch_format(accept)
    offset = query_int(request, "offset", None, 0, 2**63 - 1)
    max_bytes = query_int(request, "max_bytes", 1 << 20, 1, MAX_FETCH_BYTES)
    wait_ms = query_int(request, "timeout_ms", 0, 0, MAX_FETCH_WAIT_MS)
    try:
        result = await services.fetch.read(topic, partition, offset, max_bytes, wait_ms)
    except ServedElsewhere as elsewhere:
        return await forward_elsewhere(request, elsewhere, timeout=wait_ms / 1000 + 10)
    headers = {"X-Raftka-High-Watermark": str(result.high_watermark),
               "X-Raftka-Log-Start": str(result.log_start_offset)}
    if raw:
        return web.Response(body=result.data, headers={**headers, "Content-Type": BATCH_TYPE})
    records = iter_records(result.data, start_offset=offset)
    return web.Response(body=render_records(topic, partition, records, fmt), headers=headers,
                        content_type=fmt.content_type)


@forwarded_elsewhere
async def partition_offsets(request: web.Request) -> web.Response:
    services: BrokerServices = request.app[SERVICES_KEY]
    topic, partition = request.match_info["topic"], partition_number(request)
    start, end = await services.fetch.offsets(topic, partition)
    doc = {"beginning_offset": start, "end_offset": end}
    if "timestamp" in request.query:  # Kafka's ListOffsets by time: the first offset at or after it, else the end
        timestamp = query_int(request, "timestamp", None, 0, 2**63 - 1)
        found = await services.fetch.offset_for_timestamp(topic, partition, timestamp)
        doc["timestamp_offset"] = end if found is None else found.offset
    return json_response(doc)


@forwarded_elsewhere
async def delete_records(request: web.Request) -> web.Response:
    """Kafka's DeleteRecords: the records before `before_offset` (-1: the high watermark) are gone; answers the
    partition's new log start offset."""
    services: BrokerServices = request.app[SERVICES_KEY]
    topic, partition = request.match_info["topic"], partition_number(request)
    services.topics.check_partition(topic, partition)
    doc = await read_json(request)
    if set(doc) != {"before_offset"}:
        raise InvalidRequest(f"Expected {{\"before_offset\": N}}, got fields {sorted(doc)}.")
    start = await services.delete_records.delete_before(topic, partition, doc["before_offset"],
                                                        produce_timeout_s(request))
    return json_response({"topic": topic, "partition": partition, "log_start_offset": start})


def add_record_routes(app: web.Application) -> None:
    r = app.router
    r.add_post("/topics/{topic}", produce_to_topic)
    r.add_post("/topics/{topic}/partitions/{partition}", produce_to_partition)
    r.add_post("/topics/{topic}/partitions/{partition}/batch", produce_raw_batch)
    r.add_get("/topics/{topic}/partitions/{partition}/records", fetch_records)
    r.add_get("/topics/{topic}/partitions/{partition}/offsets", partition_offsets)
    r.add_post("/topics/{topic}/partitions/{partition}/delete-records", delete_records)


__all__ = ["add_record_routes", "BATCH_TYPE"]
