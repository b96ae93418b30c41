"""Every broker's Kafka address in the metadata group, so that any broker's Metadata answer names them all.

`ListenerRegistrar` runs on every broker and acts only while this broker
leads the metadata group: every `REGISTER_INTERVAL_S` while a broker has no
registered address, else every `RECHECK_INTERVAL_S` (a broker restarted with
another address), it reads each broker's advertised Kafka address (its own from its configuration, the others' from
their `GET /health`, which reports it) and proposes `register_listener` for
those the metadata lacks or holds differently. Reading, not writing, over
HTTP keeps the registration out of reach of HTTP clients: only a broker's
own configuration decides its advertised address.
"""

from __future__ import annotations

import asyncio
import logging

import aiohttp
import orjson

from raftka.node.errors import ApiError
from raftka.node.services import BrokerServices
from raftka.raft.wake_grid import sleep_on_grid

log = logging.getLogger("raftka.node.kafka.registration")

REGISTER_INTERVAL_S = 1.0
RECHECK_INTERVAL_S = 10.0
LISTENER = "kafka"


class ListenerRegistrar:
    def __init__(self, services: BrokerServices):
        self.services = services
        self.broker = services.broker
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kafka-listener-registrar")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        last_round = -RECHECK_INTERVAL_S
        loop = asyncio.get_running_loop()
        while True:
            await sleep_on_grid(REGISTER_INTERVAL_S)
            complete = all(self.broker.metadata.listener(b, LISTENER) is not None for b in self.broker.urls)
            if not self.broker.is_metadata_leader() or (complete and loop.time() - last_round < RECHECK_INTERVAL_S):
                continue
            last_round = loop.time()
            try:
                await self.register_all()
            except Exception:  # noqa: BLE001 - keep registering whatever one round hit
                log.exception("broker %d: registering Kafka listeners failed", self.broker.id)

    async def register_all(self) -> None:
        """Propose the Kafka address of every broker whose advertised one the metadata does not hold yet."""
        advertised = await asyncio.gather(*(self._advertised(b) for b in sorted(self.broker.urls)))
        for broker_id, address in zip(sorted(self.broker.urls), advertised):
            if address is not None and self.broker.metadata.listener(broker_id, LISTENER) != address:
                try:
                    await self.services.topics.register_listener(broker_id, LISTENER, address)
                    log.info("broker %d: registered broker %d's Kafka listener %s", self.broker.id, broker_id, address)
                except ApiError as exc:
                    log.info("broker %d: registering broker %d's Kafka listener: %s", self.broker.id, broker_id, exc)
                    return

    async def _advertised(self, broker_id: int) -> str | None:
        if broker_id == self.broker.id:
            own = self.broker.config.kafka_advertise
            return None if own is None else str(own)
        try:
            async with self.broker.session.get(self.broker.urls[broker_id] + "/health",
                                               timeout=aiohttp.ClientTimeout(total=1)) as resp:
                doc = orjson.loads(await resp.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError, orjson.JSONDecodeError):
            return None
        listeners = doc.get("listeners") if isinstance(doc, dict) else None
        address = listeners.get(LISTENER) if isinstance(listeners, dict) else None
        return address if isinstance(address, str) else None


__all__ = ["ListenerRegistrar"]
