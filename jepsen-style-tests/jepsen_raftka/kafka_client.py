"""The workload client speaking the Kafka protocol: confluent-kafka (librdkafka) against the brokers' Kafka listeners.

``KafkaClientProcess`` is a ``ClientProcess`` (same ops, same history records,
same consumer bookkeeping) whose network ops go through a Kafka producer and
consumer of its own instead of HTTP requests: what a Kafka user's application
does. Consumers are in assign mode only (``assign`` picks partitions and
positions; commits go to the group without membership, as Kafka's manual
assignment). Keys and values are stored JSON-encoded, exactly as the HTTP
workload's JSON produce stores them, so the checker, the final polls (HTTP)
and the replica collection read both variants alike.

Outcomes follow the harness's rule that only a definite error is a fail:

* ``send``: one record, then a flush; ok with the delivered (partition,
  offset); fail for a definite refusal (NOT_LEADER_OR_FOLLOWER and the like:
  the broker answers them before anything is proposed); info for anything
  else, including no delivery report in time (librdkafka may still deliver
  it). The plain producer does not retry (``retries=0``); the idempotent one
  lets librdkafka retry under its sequence numbers, as Kafka users run it.
* ``poll``: a consume of what librdkafka fetched from the positions; an
  offset-out-of-range (``auto.offset.reset=error``) resets to the partition's
  end and is reported in ``resets``, as the HTTP client does.
* ``commit``: ok when librdkafka's synchronous commit succeeded, else info.
* ``list_committed``: the group's committed offsets (a read: a failure is a fail).

An info retires the process; its producer and consumer are closed.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from .client import LEADER_WAIT_S, ClientProcess, ClientSettings, scalar_value
from .history import HistoryRecorder

DEFINITE_SEND_ERRORS = frozenset({KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.UNKNOWN_TOPIC_OR_PART,
                                  KafkaError.LEADER_NOT_AVAILABLE, KafkaError.MSG_SIZE_TOO_LARGE,
                                  KafkaError.INVALID_MSG})
MAX_RECORDS_PER_POLL = 500


class KafkaClientProcess(ClientProcess):
    def __init__(self, process: int, bootstrap: str, recorder: HistoryRecorder, settings: ClientSettings,
                 rng: random.Random, security: dict[str, str] | None = None) -> None:
        super().__init__(process, None, recorder, settings, rng)
        self.mode = "assign"
        self.bootstrap = bootstrap
        self.security = security or {}  # a --tls run: SASL_SSL settings
        self._producer: Producer | None = None
        self._consumer: Consumer | None = None

    # ------------------------------------------------------------- clients

    @property
    def _timeout_s(self) -> float:
        return self.settings.request_timeout_ms / 1000 + LEADER_WAIT_S + 1.0

    def _kafka_producer(self) -> Producer:
        if self._producer is None:
            idempotent = self.settings.producer == "idempotent"
            self._producer = Producer({
                "bootstrap.servers": self.bootstrap, "linger.ms": 0, "enable.idempotence": idempotent,
                "retries": 2**31 - 1 if idempotent else 0, "message.timeout.ms": int(self._timeout_s * 1000),
                "request.timeout.ms": self.settings.request_timeout_ms + int(LEADER_WAIT_S * 1000),
                "reconnect.backoff.max.ms": 500, "log_level": 0, **self.security})
        return self._producer

    def _kafka_consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer({
                "bootstrap.servers": self.bootstrap, "group.id": self.settings.group or "jepsen-kafka",
                "enable.auto.commit": False, "enable.auto.offset.store": False, "auto.offset.reset": "error",
                "fetch.wait.max.ms": self.settings.poll_timeout_ms,
                "max.partition.fetch.bytes": self.settings.poll_max_bytes, "reconnect.backoff.max.ms": 500,
                "log_level": 0, **self.security})
            self._kafka_assign()
        return self._consumer

    def _kafka_assign(self) -> None:
        if self._consumer is not None:
            self._consumer.assign([TopicPartition(self.settings.topic, p, self.positions[p])
                                   for p in self.assignment])

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
        if self._producer is not None:
            self._producer.purge()
        self._consumer = self._producer = None

    # ---------------------------------------------------------------- send

    def send(self, value: int) -> bool:
        partition = self.rng.randrange(self.settings.partitions)
        key = self.settings.keys[partition]
        invoke = {"topic": self.settings.topic, "key": key, "value": value}
        self._invoke("send", invoke)
        reports: list[tuple[KafkaError | None, Any]] = []
        producer = self._kafka_producer()
        try:
            producer.produce(self.settings.topic, key=orjson.dumps(key), value=orjson.dumps(value),
                             partition=partition, on_delivery=lambda err, msg: reports.append((err, msg)))
        except (BufferError, KafkaException) as exc:  # refused by the client itself: nothing was sent
            return self._complete("fail", "send", invoke, error=str(exc))
        producer.flush(self._timeout_s + 1.0)
        if not reports:
            return self._complete("info", "send", invoke, error="no delivery report in time")
        err, msg = reports[0]
        if err is None:
            return self._complete("ok", "send", {**invoke, "partition": msg.partition(), "offset": msg.offset()})
        kind = "fail" if err.code() in DEFINITE_SEND_ERRORS and self.settings.producer == "plain" else "info"
        return self._complete(kind, "send", invoke, error=err.str())

    # ------------------------------------------------------------ consumer

    def assign(self) -> bool:
        retired = super().assign()
        self._kafka_assign()
        return retired

    def poll(self) -> bool:
        invoke = {"positions": {self._tp(p): self.positions[p] for p in self.assignment}}
        self._invoke("poll", invoke)
        consumer = self._kafka_consumer()
        try:
            messages = consumer.consume(MAX_RECORDS_PER_POLL, self.settings.poll_timeout_ms / 1000)
        except KafkaException as exc:
            return self._complete("fail", "poll", invoke, error=str(exc))
        records: dict[str, list] = {}
        errors: dict[str, str] = {}
        resets: dict[str, list[int]] = {}
        for msg in messages:
            partition, err = msg.partition(), msg.error()
            tp = self._tp(partition) if partition is not None and partition >= 0 else "consumer"
            if err is not None:
                errors[tp] = err.str()
                if err.code() == KafkaError._AUTO_OFFSET_RESET and partition in self.positions:
                    self._reset_to_end(partition, resets)
                continue
            if partition not in self.positions or tp in resets:
                continue  # data for a partition given up meanwhile
            records.setdefault(tp, []).append([msg.offset(), scalar_value(_json(msg.value()))])
            self.positions[partition] = msg.offset() + 1
        value: dict[str, Any] = {"records": records, "mode": self.mode, "rebalanced": False}
        if errors:
            value["errors"] = errors
        if resets:
            value["resets"] = resets
        return self._complete("ok", "poll", value)

    def _reset_to_end(self, partition: int, resets: dict[str, list[int]]) -> None:
        """auto.offset.reset=latest, done here so that the poll can report it."""
        tp = TopicPartition(self.settings.topic, partition)
        try:
            _, latest = self._consumer.get_watermark_offsets(tp, timeout=self._timeout_s)
        except KafkaException:
            return
        resets[self._tp(partition)] = [self.positions[partition], latest]
        self.positions[partition] = latest
        self._consumer.seek(TopicPartition(self.settings.topic, partition, latest))

    def crash(self) -> bool:
        self.close()
        return super().crash()

    # ---------------------------------------------------- group offsets

    def commit(self) -> bool:
        group = self.settings.group
        offsets = {self._tp(p): self.positions[p] for p in self.assignment}
        invoke = {"group": group, "offsets": offsets}
        self._invoke("commit", invoke)
        try:
            self._kafka_consumer().commit(offsets=[TopicPartition(self.settings.topic, p, self.positions[p])
                                                   for p in self.assignment], asynchronous=False)
        except KafkaException as exc:
            return self._complete("info", "commit", invoke, error=str(exc))
        return self._complete("ok", "commit", invoke)

    def list_committed(self) -> bool:
        group = self.settings.group
        self._invoke("list_committed", {"group": group})
        wanted = [TopicPartition(self.settings.topic, p) for p in range(self.settings.partitions)]
        try:
            committed = self._kafka_consumer().committed(wanted, timeout=self._timeout_s)
        except KafkaException as exc:
            return self._complete("fail", "list_committed", {"group": group}, error=str(exc))
        offsets = {self._tp(tp.partition): tp.offset for tp in committed if tp.offset >= 0}
        return self._complete("ok", "list_committed", {"group": group, "offsets": offsets})


def _json(data: bytes | None) -> Any:
    try:
        return None if data is None else orjson.loads(data)
    except orjson.JSONDecodeError:
        return data.decode("utf-8", "replace")


__all__ = ["KafkaClientProcess"]
