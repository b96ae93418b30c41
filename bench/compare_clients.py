"""The systems of `bench.compare` behind one small client interface: raftka (its Python client over HTTP, and
confluent-kafka over its Kafka listener) and NATS JetStream.

An *endpoint* (picklable, so producer processes can be spawned with it) names
where one log lives: a raftka topic with one partition (bootstrap URLs, or
Kafka bootstrap servers) or a JetStream stream with one subject (server URLs).
Each is one Raft group with three replicas. From an endpoint a workload opens:

  producer  ``await send(payload)`` -> future resolved on acknowledgement
            (raftka: AIOProducer, acks=all after Raft commit, fsynced;
            Kafka: confluent-kafka Producer, acks=all (the same commit), its
            delivery reports resolving the futures;
            NATS: nats-py ``publish_async``, PubAck from the stream leader);
            ``await deliver(payload)`` waits until one payload is acknowledged,
            retrying like an application would (used across a leader kill);
            a producer may bring its own throughput loop, ``await flood(payload,
            seconds, in_flight)`` (Kafka: librdkafka's produce/poll idiom)
  consumer  ``await poll()`` -> payloads; reads the log from the start or
            from its current end (raftka: AIOConsumer fetch loop, manual
            assignment, no group; Kafka: confluent-kafka Consumer, manual
            assignment, consume() in a worker thread; NATS: pull consumer, ack none, batches of
            1000 - or an ordered push consumer when ``push`` is asked for,
            because nats-py's pull ``fetch`` waits for a full batch or its expiry)

With ``--tls`` an endpoint also carries what a client needs on a cluster with TLS and authentication:
raftka's client keyword arguments (user, password, CA file) or NATS's user, password and CA file.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
import time
from dataclasses import dataclass, field

import confluent_kafka
import nats
import nats.errors
import nats.js.errors
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    StorageType,
    StreamConfig,
)
from raftka.client import TopicPartition
from raftka.client.aio import AIOConsumer, AIOProducer

NATS_FETCH_BATCH = 1000
KAFKA_CONSUME_BATCH = 10_000
RETRY_TIMEOUT_S = 1.0  # one publish attempt's acknowledgement wait in ``deliver``


@dataclass(frozen=True)
class RaftkaEndpoint:
    bootstrap: tuple[str, ...]
    topic: str
    linger_ms: float = 5.0
    partition: int | None = 0  # None: the producer spreads records over every partition (null keys)
    security: tuple[tuple[str, str | None], ...] = ()  # client keyword arguments: username, password, ssl_cafile
    system: str = field(default="raftka", init=False)

    async def open_producer(self) -> RaftkaProducer:
        producer = AIOProducer(list(self.bootstrap), linger_ms=self.linger_ms, buffer_memory=64 << 20,
                               **dict(self.security))
        await producer.start()
        return RaftkaProducer(producer, self.topic, self.partition)

    async def open_consumer(self, from_start: bool, push: bool = False) -> RaftkaConsumer:
        consumer = AIOConsumer(bootstrap_servers=list(self.bootstrap), max_poll_records=10_000,
                               auto_offset_reset="earliest" if from_start else "latest", **dict(self.security))
        tp = TopicPartition(self.topic, 0)
        consumer.assign([tp])
        await consumer.position(tp)  # resolved now, so "latest" means before the workload starts
        return RaftkaConsumer(consumer)


class RaftkaProducer:
    def __init__(self, producer: AIOProducer, topic: str, partition: int | None = 0) -> None:
        self.producer = producer
        self.topic = topic
        self.partition = partition

    async def send(self, payload: bytes) -> asyncio.Future:
        return await self.producer.send(self.topic, payload, partition=self.partition)

    async def deliver(self, payload: bytes) -> None:
        await (await self.send(payload))  # the producer retries retriable errors itself

    async def close(self) -> None:
        await self.producer.close(timeout=30)


class RaftkaConsumer:
    def __init__(self, consumer: AIOConsumer) -> None:
        self.consumer = consumer

    async def poll(self) -> list[bytes]:
        return [r.value for r in await self.consumer.poll(timeout_ms=1000)]

    async def close(self) -> None:
        await self.consumer.close()


@dataclass(frozen=True)
class KafkaEndpoint:
    bootstrap: str  # Kafka bootstrap servers of raftka's Kafka listeners
    topic: str
    linger_ms: float = 5.0
    security: tuple[tuple[str, str], ...] = ()  # confluent-kafka settings: SASL_SSL with SCRAM-SHA-512 (--tls)
    system: str = field(default="kafka", init=False)

    async def open_producer(self) -> KafkaProducer:
        producer = confluent_kafka.Producer({"bootstrap.servers": self.bootstrap, "linger.ms": self.linger_ms,
                                             "acks": "all", "enable.idempotence": True, "log_level": 3,
                                             "socket.nagle.disable": True, **dict(self.security)})
        return KafkaProducer(producer, self.topic)

    async def open_consumer(self, from_start: bool, push: bool = False) -> KafkaConsumer:
        """Two librdkafka timers would otherwise be measured instead of the brokers: assigned a partition whose
        leader it does not know yet, the consumer retries its offset query only after a fixed 500 ms, so the
        topic's metadata is fetched before the assignment (the first record then comes 16-69 ms after the
        consumer is created instead of 513 ms); and a consumer that fetched more than queued.min.messages
        ahead of its application postpones its next fetch by fetch.queue.backoff.ms, 1 s by default, which
        stalled about one backlog read in thirty (10 ms here)."""
        consumer = confluent_kafka.Consumer({"bootstrap.servers": self.bootstrap, "group.id": "bench",
                                             "enable.auto.commit": False, "fetch.wait.max.ms": 100,
                                             "fetch.queue.backoff.ms": 10, "log_level": 3,
                                             "socket.nagle.disable": True, **dict(self.security)})
        loop = asyncio.get_running_loop()
        start = confluent_kafka.OFFSET_BEGINNING
        if from_start:
            await loop.run_in_executor(None, consumer.list_topics, self.topic, 10.0)
        else:  # the current end, resolved now: "latest" means before the workload starts
            start = (await loop.run_in_executor(None, consumer.get_watermark_offsets,
                                                confluent_kafka.TopicPartition(self.topic, 0), 10.0))[1]
        consumer.assign([confluent_kafka.TopicPartition(self.topic, 0, start)])
        return KafkaConsumer(consumer)


class KafkaProducer:
    """confluent-kafka's Producer on the event loop, in Confluent's own asyncio idiom: a thread blocked in
    ``poll()`` serves the delivery reports and hands each to the loop (``call_soon_threadsafe``). A task that
    called ``poll(0)`` and napped 1 ms between empty polls (how this harness began) added about 1 ms to every
    acknowledgement: p50 2.6 ms against 1.2-1.6 ms with the thread, at 2,000 msg/s of 100 B."""

    def __init__(self, producer: confluent_kafka.Producer, topic: str) -> None:
        self.producer = producer
        self.topic = topic
        self._loop = asyncio.get_running_loop()
        self._stop_polling: threading.Event | None = None
        self._poller: threading.Thread | None = None
        self._start_polling()

    def _start_polling(self) -> None:
        stop = self._stop_polling = threading.Event()

        def serve() -> None:
            while not stop.is_set():
                self.producer.poll(0.05)

        self._poller = threading.Thread(target=serve, name="kafka-reports", daemon=True)
        self._poller.start()

    async def _stop_polling_thread(self) -> None:
        if self._poller is not None:
            assert self._stop_polling is not None
            self._stop_polling.set()
            await self._loop.run_in_executor(None, self._poller.join)
            self._poller = None

    async def send(self, payload: bytes) -> asyncio.Future:
        future = self._loop.create_future()

        def settle(err, msg) -> None:
            if future.done():
                return
            if err is not None:
                future.set_exception(confluent_kafka.KafkaException(err))
            else:
                future.set_result(msg)

        def delivered(err, msg) -> None:  # in the poll thread
            try:
                self._loop.call_soon_threadsafe(settle, err, msg)
            except RuntimeError:  # the loop is closed: nobody waits for this report any more
                pass

        while True:
            try:
                self.producer.produce(self.topic, payload, partition=0, on_delivery=delivered)
                return future
            except BufferError:  # librdkafka's queue is full: let reports drain
                await asyncio.sleep(0.001)

    async def deliver(self, payload: bytes) -> None:
        while True:
            try:
                await (await self.send(payload))
                return
            except confluent_kafka.KafkaException:
                await asyncio.sleep(0.05)

    async def flood(self, payload: bytes, seconds: float, in_flight: int) -> tuple[int, int, int, float, float]:
        """The throughput cells in librdkafka's own idiom: produce() with a delivery callback that counts, poll()
        to serve the callbacks, at most `in_flight` unacknowledged. An asyncio future per message (``send``) cost
        this cell about a fifth of its throughput (77-87 k msg/s at 100 B, client and servers both below half a
        core: replies were served late). poll() blocks until a report comes (at most 10 ms): the producer
        process runs nothing else meanwhile, and a poll loop that naps on the event loop instead cost eight
        producers over a core of the machine's two, starving the brokers.
        The report thread is stopped meanwhile: the callbacks count without a lock.
        Returns (acknowledged, sent, failed, start time, end time)."""
        await self._stop_polling_thread()
        try:
            return self._flood(payload, seconds, in_flight)
        finally:
            self._start_polling()

    def _flood(self, payload: bytes, seconds: float, in_flight: int) -> tuple[int, int, int, float, float]:
        counts = {"acked": 0, "failed": 0}

        def delivered(err, msg) -> None:
            counts["failed" if err is not None else "acked"] += 1

        produce, poll = self.producer.produce, self.producer.poll
        started = time.monotonic()
        stop = started + seconds
        sent = 0
        while time.monotonic() < stop:
            while sent - counts["acked"] - counts["failed"] < in_flight:
                try:
                    produce(self.topic, payload, partition=0, on_delivery=delivered)
                except BufferError:  # librdkafka's queue is full: serve reports first
                    break
                sent += 1
            poll(0.01)
        while counts["acked"] + counts["failed"] < sent:
            poll(0.01)
        return counts["acked"], sent, counts["failed"], started, time.monotonic()

    async def close(self) -> None:
        await self._loop.run_in_executor(None, self.producer.flush, 30)
        await self._stop_polling_thread()
        self.producer.poll(0)


class KafkaConsumer:
    def __init__(self, consumer: confluent_kafka.Consumer) -> None:
        self.consumer = consumer

    async def poll(self) -> list[bytes]:
        """Wait for the first message (up to 0.5 s), then take whatever else librdkafka has fetched already:
        consume(n, t) alone would wait for n messages or t, adding latency at low rates."""
        loop = asyncio.get_running_loop()
        messages = await loop.run_in_executor(None, self.consumer.consume, 1, 0.5)
        if messages:
            messages += self.consumer.consume(KAFKA_CONSUME_BATCH, 0)
        return [m.value() for m in messages if m.error() is None]

    async def close(self) -> None:
        await asyncio.get_running_loop().run_in_executor(None, self.consumer.close)


@dataclass(frozen=True)
class NatsEndpoint:
    servers: tuple[str, ...]
    stream: str
    tls_ca: str | None = None  # with TLS: the CA file, and the user and password below
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    system: str = field(default="nats", init=False)

    @property
    def subject(self) -> str:
        return f"bench.{self.stream.lower()}"

    async def _connect(self) -> nats.NATS:
        secured = {} if self.tls_ca is None else {"tls": ssl.create_default_context(cafile=self.tls_ca),
                                                  "user": self.user, "password": self.password}
        return await nats.connect(servers=list(self.servers), max_reconnect_attempts=-1, reconnect_time_wait=0.1,
                                  connect_timeout=2, **secured)

    async def create_stream(self, timeout: float = 30.0) -> None:
        """File storage, 3 replicas; retried while the JetStream meta leader is still being elected."""
        nc = await self._connect()
        try:
            js = nc.jetstream()
            config = StreamConfig(name=self.stream, subjects=[self.subject], num_replicas=3,
                                  storage=StorageType.FILE)
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while True:
                try:
                    await js.add_stream(config)
                    return
                except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
                    if loop.time() > deadline:
                        raise
                    await asyncio.sleep(0.2)
        finally:
            await nc.close()

    async def stream_leader(self) -> str:
        nc = await self._connect()
        try:
            info = await nc.jetstream().stream_info(self.stream)
            return info.cluster.leader
        finally:
            await nc.close()

    async def replica_backlog(self) -> int:
        """Messages the stream's followers still lack (a follower that is not current counts one at least)."""
        nc = await self._connect()
        try:
            info = await nc.jetstream().stream_info(self.stream)
            return sum(max(peer.lag or 0, 0 if peer.current else 1) for peer in info.cluster.replicas or [])
        finally:
            await nc.close()

    async def open_producer(self) -> NatsProducer:
        nc = await self._connect()
        return NatsProducer(nc, self.subject)

    async def open_consumer(self, from_start: bool, push: bool = False) -> NatsConsumer:
        nc = await self._connect()
        js = nc.jetstream()
        policy = DeliverPolicy.ALL if from_start else DeliverPolicy.NEW
        if push:
            queue: asyncio.Queue[bytes] = asyncio.Queue()

            async def on_message(msg) -> None:
                queue.put_nowait(msg.data)

            sub = await js.subscribe(self.subject, stream=self.stream, ordered_consumer=True, cb=on_message,
                                     deliver_policy=policy)
            return NatsConsumer(nc, sub, queue)
        sub = await js.pull_subscribe(self.subject, durable=None, stream=self.stream,
                                      config=ConsumerConfig(ack_policy=AckPolicy.NONE, deliver_policy=policy))
        return NatsConsumer(nc, sub, None)


class NatsProducer:
    def __init__(self, nc: nats.NATS, subject: str) -> None:
        self.nc = nc
        # The workload bounds in-flight messages itself; this cap only has to stay out of its way.
        self.js = nc.jetstream(publish_async_max_pending=1 << 20)
        self.subject = subject

    async def send(self, payload: bytes) -> asyncio.Future:
        return await self.js.publish_async(self.subject, payload)

    async def deliver(self, payload: bytes) -> None:
        # publish_async has no timeout of its own: a message the dead leader swallowed would wait forever.
        while True:
            future = await self.send(payload)
            try:
                await asyncio.wait_for(future, RETRY_TIMEOUT_S)
                return
            except (TimeoutError, nats.errors.Error, nats.js.errors.Error):
                await asyncio.sleep(0.05)

    async def close(self) -> None:
        await self.js.publish_async_completed()
        await self.nc.close()


class NatsConsumer:
    def __init__(self, nc: nats.NATS, sub, queue: asyncio.Queue[bytes] | None) -> None:
        self.nc = nc
        self.sub = sub
        self.queue = queue

    async def poll(self) -> list[bytes]:
        if self.queue is not None:
            try:
                first = await asyncio.wait_for(self.queue.get(), 1.0)
            except TimeoutError:
                return []
            out = [first]
            while not self.queue.empty():
                out.append(self.queue.get_nowait())
            return out
        try:
            return [m.data for m in await self.sub.fetch(NATS_FETCH_BATCH, timeout=1.0)]
        except (TimeoutError, nats.errors.TimeoutError):
            return []

    async def close(self) -> None:
        await self.sub.unsubscribe()
        await self.nc.close()
