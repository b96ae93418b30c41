"""One Kafka client connection: read frames, run their handlers, write the responses in request order.

Kafka clients pipeline requests on a connection and match responses by
order (and correlation id), so responses leave in the order the requests
came. Requests run concurrently (a long-polling Fetch does not hold up the
Produce behind it in the broker, only its response); produce requests for
the same partition on one connection are proposed to Raft in the order they
came, pipelined (`ProduceLanes`: the next batch goes as soon as the previous
one has been handed to Raft, whose log keeps the order), so an idempotent
producer's in-flight batches arrive in sequence order.
acks=0 produce requests get no response. At most `MAX_IN_FLIGHT` requests
per connection are being served; reading pauses beyond that.

A malformed frame (size above --max-request-bytes, truncated, unknown API,
undecodable) is counted by reason in /metrics and closes this connection
only: a client that sent garbage cannot be resynchronised.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from raftka.node.kafka.frames import MalformedFrame, Request, UnsupportedVersion, decode_request, frame_size
from raftka.node.kafka.handlers import RawResponse, handle, unsupported_version_response

if TYPE_CHECKING:
    from raftka.node.kafka.server import KafkaServer

log = logging.getLogger("raftka.node.kafka.connection")

MAX_IN_FLIGHT = 64
T = TypeVar("T")
_SIZE = struct.Struct(">i")


class ProduceLanes:
    """Per connection and partition: each append starts once the previous one has been proposed (or failed)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, int], asyncio.Future] = {}

    async def in_order(self, topic: str, partition: int, append: Callable[[Callable[[], None]], Awaitable[T]]) -> T:
        """``await append(proposing)``, where the append calls ``proposing()`` when it hands its batch to Raft."""
        key = (topic, partition)
        previous = self._last.get(key)
        turn = asyncio.get_running_loop().create_future()
        self._last[key] = turn

        def proposing() -> None:  # the next append to this partition may go now
            if not turn.done():
                turn.set_result(None)
            if self._last.get(key) is turn:
                del self._last[key]

        try:
            if previous is not None:
                await asyncio.shield(previous)
            return await append(proposing)
        finally:
            proposing()


class KafkaConnection:
    def __init__(self, server: KafkaServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.reader, self.writer = reader, writer
        self.peer = writer.get_extra_info("peername")
        self.lanes = ProduceLanes()
        self._responses: asyncio.Queue[asyncio.Task | None] = asyncio.Queue(MAX_IN_FLIGHT)

    async def serve(self) -> None:
        writer_task = asyncio.create_task(self._write_responses(), name=f"kafka-writer-{self.peer}")
        try:
            await self._read_requests()
        except MalformedFrame as exc:
            self.server.metrics.malformed.labels(exc.reason).inc()
            log.info("kafka: closing connection from %s: malformed frame (%s)", self.peer, exc)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client went away
        finally:
            await self._responses.put(None)
            try:
                await asyncio.wait_for(writer_task, 5.0)
            except (asyncio.TimeoutError, ConnectionError):
                writer_task.cancel()
            self.writer.close()

    async def _read_requests(self) -> None:
        limit = self.server.max_request_bytes
        while True:
            try:
                prefix = await self.reader.readexactly(_SIZE.size)
                size = frame_size(prefix, limit)
                frame = await self.reader.readexactly(size)
            except asyncio.IncompleteReadError as exc:
                if exc.partial or exc.expected != _SIZE.size:  # the connection ended inside a frame
                    raise MalformedFrame("truncated", f"{len(exc.partial)} of {exc.expected} bytes") from None
                raise
            try:
                request = decode_request(frame)
            except UnsupportedVersion as unsupported:
                response = unsupported_version_response(unsupported)
                if response is None:
                    raise MalformedFrame("unsupported_api", f"api key {unsupported.api_key} "
                                                           f"v{unsupported.api_version}") from None
                await self._responses.put(_done(response))
                continue
            self.server.metrics.requests.labels(request.api.name).inc()
            task = asyncio.create_task(self._serve(request))
            if _expects_response(request):
                await self._responses.put(task)
            else:
                task.add_done_callback(_log_failure)

    async def _serve(self, request: Request) -> bytes | None:
        response = await handle(self, request)
        if response is None:
            return None
        if isinstance(response, RawResponse):
            return response.framed
        response.with_header(correlation_id=request.correlation_id)
        return bytes(response.encode(header=True, framed=True))  # handlers build responses at the request version

    async def _write_responses(self) -> None:
        while (task := await self._responses.get()) is not None:
            try:
                data = await task
            except Exception:  # noqa: BLE001 - a handler bug must not leave the client waiting forever
                log.exception("kafka: handler failed; closing the connection from %s", self.peer)
                self.writer.close()
                return
            if data is not None:
                self.writer.write(data)
                if self.writer.transport.get_write_buffer_size() > 1 << 20:
                    await self.writer.drain()


def _expects_response(request: Request) -> bool:
    return not (request.api.key == 0 and request.body.acks == 0)


def _done(data: bytes) -> asyncio.Future:
    future = asyncio.get_running_loop().create_future()
    future.set_result(data)
    return future


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("kafka: acks=0 produce failed", exc_info=task.exception())


__all__ = ["KafkaConnection", "ProduceLanes"]
