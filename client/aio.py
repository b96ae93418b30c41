"""The asyncio API: ``from raftka.client.aio import AIOProducer, AIOConsumer, AIOAdmin``."""

from raftka.client.admin import AIOAdmin
from raftka.client.consumer import AIOConsumer
from raftka.client.producer import AIOProducer

__all__ = ["AIOAdmin", "AIOConsumer", "AIOProducer"]
