"""raftka.client: Python client for raftka over its HTTP API, plus the ``raftka`` CLI.

Blocking API (kafka-python habits)::

    from raftka.client import Producer, Consumer, Admin
    producer = Producer(bootstrap_servers=["http://127.0.0.1:9091"])
    producer.send("orders", b"value", key=b"k").result()   # RecordMetadata(topic, partition, offset)
    consumer = Consumer("orders", group_id="billing", auto_offset_reset="earliest")
    for record in consumer: ...

asyncio API: ``raftka.client.aio`` (AIOProducer, AIOConsumer, AIOAdmin) - the
one implementation; the blocking classes run it on a private loop thread.
Errors: ``raftka.client.errors``. Modules: connection (HTTP), cluster and
metadata (routing), routing and partitioner (partition choice), accumulator,
idempotence, budget, retry and futures (producer internals), fetcher and group
(consumer internals), loop_thread and blocking (the blocking API), cli and
cli_render (the ``raftka`` command), devcluster (local clusters; the lead's).

Close clients (``close()`` or ``with``): a producer still holding records when
the interpreter exits drops them, like Kafka's.
"""

from raftka.client.admin_security import Acl
from raftka.client.admin import (
    AIOAdmin,
    GroupDescription,
    GroupSummary,
    PartitionDescription,
    TopicDescription,
)
from raftka.client.blocking import Admin, Consumer, Producer
from raftka.client.consumer import AIOConsumer
from raftka.client.producer import AIOProducer
from raftka.client.structs import ConsumerRecord, RecordMetadata, TopicPartition

__all__ = [
    "Acl",
    "AIOAdmin",
    "AIOConsumer",
    "AIOProducer",
    "Admin",
    "Consumer",
    "ConsumerRecord",
    "GroupDescription",
    "GroupSummary",
    "PartitionDescription",
    "Producer",
    "RecordMetadata",
    "TopicDescription",
    "TopicPartition",
]
