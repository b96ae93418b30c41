"""Blocking Producer, Consumer and Admin: thin shells over the asyncio cores, one private loop thread each.

Every method runs the corresponding ``AIOProducer``/``AIOConsumer``/``AIOAdmin``
coroutine on the client's own event loop (``LoopThread``) and waits for it;
there is no second implementation. Two shortcuts avoid a thread hop per
record: ``Producer.send`` validates in the calling thread and hands records
to the loop in bulk (``AIOProducer.send_threadsafe``), and iterating a
Consumer takes already-fetched records directly. Consumer callbacks
(``on_assign``/``on_revoke``) run in the thread that called ``poll`` or is
iterating, as with Kafka's clients, and may call the consumer.

A client is not meant to be shared between threads, except ``Producer.send``,
which any number of threads may call at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from raftka.client.admin import AIOAdmin
from raftka.client.consumer import AIOConsumer, PartitionsCallback
from raftka.client.loop_thread import LoopThread
from raftka.client.producer import AIOProducer, HeadersArg
from raftka.client.structs import ConsumerRecord, RecordMetadata, TopicPartition

__all__ = ["Admin", "Consumer", "Producer"]


def _start(thread: LoopThread, core: AIOProducer) -> None:
    """Run a core's start-up on the loop; on failure release it and stop the thread before re-raising."""
    try:
        thread.run(core.start())
    except BaseException:
        try:
            thread.run(core.close())
        finally:
            thread.close()
        raise


class Producer:
    """Blocking producer: ``send`` returns a concurrent.futures.Future of RecordMetadata.

    Takes the same keyword settings as ``AIOProducer`` (linger_ms, batch_size, ...).
    Raises NoBrokersAvailable at construction when no bootstrap broker answers.
    """

    def __init__(self, bootstrap_servers: str | Sequence[str] | None = None, **config: Any) -> None:
        self._core = AIOProducer(bootstrap_servers, **config)
        self._thread = LoopThread("raftka-producer")
        _start(self._thread, self._core)

    def send(
        self,
        topic: str,
        value: Any = None,
        key: Any = None,
        headers: HeadersArg = None,
        partition: int | None = None,
        timestamp_ms: int | None = None,
    ) -> concurrent.futures.Future[RecordMetadata]:
        """Queue a record; ``.result()`` of the returned future is RecordMetadata(topic, partition, offset)
        or raises the record's delivery error."""
        return self._core.send_threadsafe(topic, value, key, headers, partition, timestamp_ms)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every record sent so far is acknowledged or failed."""
        self._thread.run(self._core.flush(timeout))

    def partitions_for(self, topic: str) -> list[int]:
        return self._thread.run(self._core.partitions_for(topic))

    def close(self, timeout: float | None = None) -> None:
        """Flush (up to ``timeout`` seconds) and stop. Idempotent."""
        if self._thread.closed:
            return
        try:
            self._thread.run(self._core.close(timeout))
        finally:
            self._thread.close()

    def __enter__(self) -> Producer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Consumer:
    """Blocking consumer; same settings as ``AIOConsumer``. ``for record in consumer`` iterates
    (ending after ``consumer_timeout_ms`` without records, if set)."""

    def __init__(self, *topics: str, **config: Any) -> None:
        self._core = AIOConsumer(*topics, **config)
        self._thread = LoopThread("raftka-consumer")

    @property
    def group_id(self) -> str | None:
        return self._core.group_id

    def subscribe(
        self,
        topics: Sequence[str],
        on_assign: PartitionsCallback | None = None,
        on_revoke: PartitionsCallback | None = None,
    ) -> None:
        self._thread.call(self._core.subscribe, topics, on_assign, on_revoke)

    def assign(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> None:
        self._thread.call(self._core.assign, list(partitions))

    def unsubscribe(self) -> None:
        self._thread.run(self._core.unsubscribe())

    def assignment(self) -> set[TopicPartition]:
        return self._thread.call(self._core.assignment)

    def poll(self, timeout_ms: int = 1000, max_records: int | None = None) -> list[ConsumerRecord]:
        return self._thread.run(self._core.poll(timeout_ms, max_records))

    def __iter__(self) -> Consumer:
        return self

    def __next__(self) -> ConsumerRecord:
        record = self._core.take_pending()
        if record is not None:
            return record
        try:
            return self._thread.run(self._core.__anext__())
        except StopAsyncIteration:
            raise StopIteration from None

    def commit(
        self, offsets: Mapping[TopicPartition | tuple[str, int], int] | None = None, asynchronous: bool = False
    ) -> concurrent.futures.Future[None] | None:
        """Commit (see AIOConsumer.commit); with ``asynchronous=True`` returns a future instead of waiting."""
        if not asynchronous:
            self._thread.run(self._core.commit(offsets))
            return None
        task = self._thread.run(self._core.commit(offsets, asynchronous=True))
        result: concurrent.futures.Future[None] = concurrent.futures.Future()

        def copy(done: asyncio.Task[None]) -> None:
            if done.cancelled():
                result.cancel()
            elif done.exception() is not None:
                result.set_exception(done.exception())  # type: ignore[arg-type]
            else:
                result.set_result(None)

        assert task is not None
        self._thread.loop.call_soon_threadsafe(task.add_done_callback, copy)
        return result

    def seek(self, partition: TopicPartition | tuple[str, int], offset: int) -> None:
        self._thread.call(self._core.seek, partition, offset)

    def seek_to_beginning(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        self._thread.call(self._core.seek_to_beginning, *partitions)

    def seek_to_end(self, *partitions: TopicPartition | tuple[str, int]) -> None:
        self._thread.call(self._core.seek_to_end, *partitions)

    def position(self, partition: TopicPartition | tuple[str, int]) -> int:
        return self._thread.run(self._core.position(partition))

    def committed(self, partition: TopicPartition | tuple[str, int]) -> int | None:
        return self._thread.run(self._core.committed(partition))

    def beginning_offsets(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> dict[TopicPartition, int]:
        return self._thread.run(self._core.beginning_offsets(list(partitions)))

    def end_offsets(self, partitions: Iterable[TopicPartition | tuple[str, int]]) -> dict[TopicPartition, int]:
        return self._thread.run(self._core.end_offsets(list(partitions)))

    def lag(self, partition: TopicPartition | tuple[str, int]) -> int:
        return self._thread.run(self._core.lag(partition))

    def lags(self) -> dict[TopicPartition, int]:
        return self._thread.run(self._core.lags())

    def close(self) -> None:
        """Commit consumed positions (if auto-commit), leave the group and stop. Idempotent."""
        if self._thread.closed:
            return
        try:
            self._thread.run(self._core.close())
        finally:
            self._thread.close()

    def __enter__(self) -> Consumer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _blocking(name: str) -> Callable[..., Any]:
    coroutine_function = getattr(AIOAdmin, name)

    @functools.wraps(coroutine_function)
    def method(self: Admin, *args: Any, **kwargs: Any) -> Any:
        return self._thread.run(getattr(self._core, name)(*args, **kwargs))

    return method


class Admin:
    """Blocking admin client: the methods of ``AIOAdmin``, waiting for their results."""

    def __init__(self, bootstrap_servers: str | Sequence[str] | None = None, **config: Any) -> None:
        self._core = AIOAdmin(bootstrap_servers, **config)
        self._thread = LoopThread("raftka-admin")

    @property
    def bootstrap(self) -> list[str]:
        return self._core.bootstrap

    topics_overview = _blocking("topics_overview")
    list_topics = _blocking("list_topics")
    create_topic = _blocking("create_topic")
    delete_topic = _blocking("delete_topic")
    describe_topic = _blocking("describe_topic")
    add_partitions = _blocking("add_partitions")
    alter_configs = _blocking("alter_configs")
    partition_offsets = _blocking("partition_offsets")
    delete_records = _blocking("delete_records")
    list_groups = _blocking("list_groups")
    describe_group = _blocking("describe_group")
    describe_cluster = _blocking("describe_cluster")
    raft_status = _blocking("raft_status")
    replace_broker_disk = _blocking("replace_broker_disk")
    describe_brokers = _blocking("describe_brokers")
    reassign_partition = _blocking("reassign_partition")
    cancel_reassignment = _blocking("cancel_reassignment")
    list_reassignments = _blocking("list_reassignments")
    alter_replication_factor = _blocking("alter_replication_factor")
    decommission_broker = _blocking("decommission_broker")
    decommission_status = _blocking("decommission_status")
    recommission_broker = _blocking("recommission_broker")
    rebalance = _blocking("rebalance")
    balance_leaders = _blocking("balance_leaders")
    wait_reassignments = _blocking("wait_reassignments")
    wait_decommission = _blocking("wait_decommission")
    whoami = _blocking("whoami")
    list_users = _blocking("list_users")
    create_user = _blocking("create_user")
    delete_user = _blocking("delete_user")
    list_acls = _blocking("list_acls")
    create_acls = _blocking("create_acls")
    delete_acls = _blocking("delete_acls")

    def close(self) -> None:
        if self._thread.closed:
            return
        try:
            self._thread.run(self._core.close())
        finally:
            self._thread.close()

    def __enter__(self) -> Admin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
