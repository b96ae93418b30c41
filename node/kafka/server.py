"""The Kafka listener of a broker: accepts client connections and serves them over the broker's services.

`KafkaServer` binds `--kafka-listen` (with TLS when the broker has a
certificate: the same one as HTTP, re-read on SIGHUP), runs one
`KafkaConnection` per client, and holds what the handlers share: the services, the advertised address,
the cluster id, the per-broker Kafka metrics, and the relay to the metadata
leader for admin writes (`forwarding.ControllerRelay`).
"""

from __future__ import annotations

import asyncio
import logging

from raftka.node.cluster.identity import ensure_identity
from raftka.node.kafka.connection import KafkaConnection
from raftka.node.kafka.forwarding import ControllerRelay
from raftka.node.metrics import MetricsRegistry
from raftka.node.services import BrokerServices

log = logging.getLogger("raftka.node.kafka.server")


class KafkaMetrics:
    def __init__(self, registry: MetricsRegistry):
        self.requests = registry.counter("raftka_kafka_requests_total", "Kafka protocol requests received, by API.",
                                         ("api",))
        self.malformed = registry.counter("raftka_kafka_malformed_frames_total",
                                          "Kafka connections closed for a malformed frame, by reason.", ("reason",))
        self.connections = registry.gauge("raftka_kafka_connections", "Open Kafka client connections.")


class KafkaServer:
    def __init__(self, services: BrokerServices):
        config = services.broker.config
        if config.kafka_listen is None or config.kafka_advertise is None:
            raise ValueError("the Kafka listener needs --kafka-listen")
        self.services = services
        self.broker = services.broker
        self.listen = config.kafka_listen
        self.advertised = config.kafka_advertise
        self.max_request_bytes = config.max_request_bytes
        self.cluster_id = ensure_identity(config).cluster_id
        self.metrics = KafkaMetrics(services.metrics)
        self.relay = ControllerRelay(self)
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        tls = self.broker.tls
        self._server = await asyncio.start_server(self._accept, self.listen.host, self.listen.port,
                                                  reuse_address=True, ssl=tls.server if tls is not None else None)
        log.info("broker %d serving Kafka%s on %s (advertised as %s, auth %s)", self.broker.id,
                 " over TLS" if tls is not None else "", self.listen, self.advertised,
                 self.broker.config.security.auth)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self.relay.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        self.metrics.connections.inc()
        try:
            await KafkaConnection(self, reader, writer).serve()
        except asyncio.CancelledError:
            pass  # the listener is stopping: asyncio's stream callback must not see a cancelled task
        finally:
            self.metrics.connections.dec()
            self._connections.discard(task)


__all__ = ["KafkaServer"]
