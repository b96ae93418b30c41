"""Kafka message codecs: encode/decode cost of Produce and Fetch with kio and with kafka-python's protocol classes.

Both libraries are generated from Kafka's own message schema files. The
broker's hot path is: decode a ProduceRequest (records stay bytes), encode a
ProduceResponse; decode a FetchRequest, encode a FetchResponse around stored
record batches (bytes, sent unchanged). Each cell is the best of `--rounds`
timed loops of one operation, in microseconds per message, for the same
message in both libraries (Produce v9, Fetch v12: flexible versions that
librdkafka, kafka-python and aiokafka negotiate).

Run `python -m bench.kafka_codecs [--rounds N]` from the repository root.
"""

from __future__ import annotations

import argparse
import datetime
import io
import os
import time
from collections.abc import Callable

from bench.machine import cpu_model

PRODUCE_VERSION = 9
FETCH_VERSION = 12


def _best_us(fn: Callable[[], object], rounds: int, min_seconds: float = 0.2) -> float:
    best = float("inf")
    for _ in range(rounds):
        n, start = 0, time.perf_counter()
        while True:
            fn()
            n += 1
            elapsed = time.perf_counter() - start
            if elapsed >= min_seconds:
                break
        best = min(best, elapsed / n * 1e6)
    return best


class KafkaPythonCodec:
    name = "kafka-python"

    def __init__(self) -> None:
        from kafka.protocol.consumer import FetchRequest, FetchResponse
        from kafka.protocol.producer import ProduceRequest, ProduceResponse
        self.ProduceRequest, self.ProduceResponse = ProduceRequest, ProduceResponse
        self.FetchRequest, self.FetchResponse = FetchRequest, FetchResponse

    def produce_request(self, partitions: dict[int, bytes]) -> bytes:
        t = self.ProduceRequest.TopicProduceData
        req = self.ProduceRequest(version=PRODUCE_VERSION, acks=-1, timeout_ms=30000, topic_data=[
            t(name="bench", partition_data=[t.PartitionProduceData(index=p, records=r) for p, r in partitions.items()])])
        req.with_header(correlation_id=1, client_id="bench")
        return bytes(req.encode(header=True))

    def decode_produce(self, data: bytes) -> object:
        return self.ProduceRequest.decode(data, version=PRODUCE_VERSION, header=True)

    def encode_produce_response(self, partitions: list[int]) -> bytes:
        t = self.ProduceResponse.TopicProduceResponse
        resp = self.ProduceResponse(version=PRODUCE_VERSION, responses=[t(name="bench", partition_responses=[
            t.PartitionProduceResponse(index=p, error_code=0, base_offset=1000 * p, log_append_time_ms=-1,
                                       log_start_offset=0) for p in partitions])], throttle_time_ms=0)
        resp.with_header(correlation_id=1)
        return resp.encode(header=True)

    def fetch_request(self, partitions: list[int]) -> bytes:
        t = self.FetchRequest.FetchTopic
        req = self.FetchRequest(version=FETCH_VERSION, replica_id=-1, max_wait_ms=500, min_bytes=1,
                                max_bytes=50 << 20, isolation_level=0, session_id=0, session_epoch=-1, topics=[
                                    t(topic="bench", partitions=[t.FetchPartition(partition=p, fetch_offset=0,
                                                                                 partition_max_bytes=1 << 20)
                                                                for p in partitions])], forgotten_topics_data=[])
        req.with_header(correlation_id=1, client_id="bench")
        return bytes(req.encode(header=True))

    def decode_fetch(self, data: bytes) -> object:
        return self.FetchRequest.decode(data, version=FETCH_VERSION, header=True)

    def encode_fetch_response(self, partitions: dict[int, bytes]) -> bytes:
        t = self.FetchResponse.FetchableTopicResponse
        resp = self.FetchResponse(version=FETCH_VERSION, throttle_time_ms=0, error_code=0, session_id=0, responses=[
            t(topic="bench", partitions=[t.PartitionData(partition_index=p, error_code=0, high_watermark=10**6,
                                                         last_stable_offset=10**6, log_start_offset=0,
                                                         aborted_transactions=None, preferred_read_replica=-1,
                                                         records=r) for p, r in partitions.items()])])
        resp.with_header(correlation_id=1)
        return resp.encode(header=True)


class KioCodec:
    name = "kio"

    def __init__(self) -> None:
        from kio.schema.fetch.v12 import request as fetch_req
        from kio.schema.fetch.v12 import response as fetch_resp
        from kio.schema.produce.v9 import request as produce_req
        from kio.schema.produce.v9 import response as produce_resp
        from kio.schema.request_header.v2.header import RequestHeader
        from kio.schema.response_header.v1.header import ResponseHeader
        from kio.serial import entity_reader, entity_writer
        self.fetch_req, self.fetch_resp, self.produce_req, self.produce_resp = (fetch_req, fetch_resp, produce_req,
                                                                                produce_resp)
        self.RequestHeader, self.ResponseHeader = RequestHeader, ResponseHeader
        self.read_header = entity_reader(RequestHeader)
        self.read_produce = entity_reader(produce_req.ProduceRequest)
        self.read_fetch = entity_reader(fetch_req.FetchRequest)
        self.write = {cls: entity_writer(cls) for cls in (RequestHeader, ResponseHeader, produce_req.ProduceRequest,
                                                          produce_resp.ProduceResponse, fetch_req.FetchRequest,
                                                          fetch_resp.FetchResponse)}

    def _framed(self, header_cls, header, body_cls, body) -> bytes:
        buf = io.BytesIO()
        self.write[header_cls](buf, header)
        self.write[body_cls](buf, body)
        return buf.getvalue()

    def _request_header(self, api_key: int, version: int):
        from kio.static.primitive import i16, i32
        return self.RequestHeader(request_api_key=i16(api_key), request_api_version=i16(version),
                                  correlation_id=i32(1), client_id="bench")

    def produce_request(self, partitions: dict[int, bytes]) -> bytes:
        from kio.static.primitive import i16, i32, i32Timedelta
        m = self.produce_req
        req = m.ProduceRequest(acks=i16(-1), timeout=i32Timedelta.parse(datetime.timedelta(seconds=30)), topic_data=(
            m.TopicProduceData(name="bench", partition_data=tuple(
                m.PartitionProduceData(index=i32(p), records=r) for p, r in partitions.items())),))
        return self._framed(self.RequestHeader, self._request_header(0, PRODUCE_VERSION), m.ProduceRequest, req)

    def decode_produce(self, data: bytes) -> object:
        header, size = self.read_header(data, 0)
        return self.read_produce(data, size)

    def encode_produce_response(self, partitions: list[int]) -> bytes:
        from kio.schema.errors import ErrorCode
        from kio.static.primitive import i32, i32Timedelta, i64
        m = self.produce_resp
        resp = m.ProduceResponse(throttle_time=i32Timedelta.parse(datetime.timedelta(0)), responses=(
            m.TopicProduceResponse(name="bench", partition_responses=tuple(
                m.PartitionProduceResponse(index=i32(p), error_code=ErrorCode.none, base_offset=i64(1000 * p),
                                           log_append_time=None, log_start_offset=i64(0), record_errors=(),
                                           error_message=None) for p in partitions)),))
        return self._framed(self.ResponseHeader, self.ResponseHeader(correlation_id=i32(1)), m.ProduceResponse, resp)

    def fetch_request(self, partitions: list[int]) -> bytes:
        from kio.static.primitive import i8, i32, i32Timedelta, i64
        m = self.fetch_req
        req = m.FetchRequest(replica_id=i32(-1), max_wait=i32Timedelta.parse(datetime.timedelta(milliseconds=500)),
                             min_bytes=i32(1), max_bytes=i32(50 << 20), isolation_level=i8(0), session_id=i32(0),
                             session_epoch=i32(-1), topics=(m.FetchTopic(topic="bench", partitions=tuple(
                                 m.FetchPartition(partition=i32(p), current_leader_epoch=i32(-1),
                                                  fetch_offset=i64(0), last_fetched_epoch=i32(-1),
                                                  log_start_offset=i64(-1), partition_max_bytes=i32(1 << 20))
                                 for p in partitions)),), forgotten_topics_data=(), rack_id="")
        return self._framed(self.RequestHeader, self._request_header(1, FETCH_VERSION), m.FetchRequest, req)

    def decode_fetch(self, data: bytes) -> object:
        header, size = self.read_header(data, 0)
        return self.read_fetch(data, size)

    def encode_fetch_response(self, partitions: dict[int, bytes]) -> bytes:
        from kio.schema.errors import ErrorCode
        from kio.static.primitive import i32, i32Timedelta, i64
        m = self.fetch_resp
        resp = m.FetchResponse(throttle_time=i32Timedelta.parse(datetime.timedelta(0)), error_code=ErrorCode.none,
                               session_id=i32(0), responses=(m.FetchableTopicResponse(topic="bench", partitions=tuple(
                                   m.PartitionData(partition_index=i32(p), error_code=ErrorCode.none,
                                                   high_watermark=i64(10**6), last_stable_offset=i64(10**6),
                                                   log_start_offset=i64(0), aborted_transactions=None,
                                                   preferred_read_replica=i32(-1), records=r)
                                   for p, r in partitions.items())),))
        return self._framed(self.ResponseHeader, self.ResponseHeader(correlation_id=i32(1)), m.FetchResponse, resp)


def run(rounds: int) -> list[tuple[str, str, float]]:
    cases = []
    for codec in (KafkaPythonCodec(), KioCodec()):
        one = {0: os.urandom(16 << 10)}
        six = {p: os.urandom(64 << 10) for p in range(6)}
        fetched = {p: os.urandom(1 << 20) for p in range(6)}
        produce_one, produce_six = codec.produce_request(one), codec.produce_request(six)
        fetch_six = codec.fetch_request(list(range(6)))
        cases += [
            (codec.name, "decode ProduceRequest, 1 partition x 16 KiB", _best_us(lambda: codec.decode_produce(produce_one), rounds)),
            (codec.name, "decode ProduceRequest, 6 partitions x 64 KiB", _best_us(lambda: codec.decode_produce(produce_six), rounds)),
            (codec.name, "encode ProduceResponse, 1 partition", _best_us(lambda: codec.encode_produce_response([0]), rounds)),
            (codec.name, "decode FetchRequest, 6 partitions", _best_us(lambda: codec.decode_fetch(fetch_six), rounds)),
            (codec.name, "encode FetchResponse, 1 partition x 16 KiB", _best_us(lambda: codec.encode_fetch_response(one), rounds)),
            (codec.name, "encode FetchResponse, 6 partitions x 1 MiB", _best_us(lambda: codec.encode_fetch_response(fetched), rounds)),
        ]
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    results = run(args.rounds)
    print(f"Kafka codecs, µs per message (best of {args.rounds}); CPU: {cpu_model('unknown')}; "
          f"load average {os.getloadavg()[0]:.1f}")
    by_case: dict[str, dict[str, float]] = {}
    for lib, case, us in results:
        by_case.setdefault(case, {})[lib] = us
    print(f"{'operation':48} {'kafka-python':>14} {'kio':>14}")
    for case, libs in by_case.items():
        print(f"{case:48} {libs['kafka-python']:14.1f} {libs['kio']:14.1f}")


if __name__ == "__main__":
    main()
