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

Authentication (with --auth required): a connection is anonymous only when
authentication is off; a verified client certificate makes it its subject CN's;
otherwise it must log in with SaslHandshake and SaslAuthenticate (`SaslSession`:
PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) before anything but ApiVersions. The SASL
requests are served in order, before the next frame is read; a failed login
answers SASL_AUTHENTICATION_FAILED and closes the connection, and any other
request before a login closes it too (counted as "unauthenticated"), as Kafka
does. A request relayed by another broker carries its client's principal,
signed (`forwarding.relay_caller`); every request runs as its `access.Caller`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

from raftka.node.kafka.access import CALLER, LISTENER, Caller
from raftka.node.kafka.forwarding import is_relayed, relay_caller
from raftka.node.kafka.frames import MalformedFrame, Request, UnsupportedVersion, decode_request, frame_size
from raftka.node.kafka.handlers import RawResponse, handle, unsupported_version_response
from raftka.node.security.peer import PeerSignatureError
from raftka.node.security.sasl import SaslSession
from raftka.node.security.tls import peer_principal_name
from raftka.node.services.security import ANONYMOUS

if TYPE_CHECKING:
    from raftka.node.kafka.server import KafkaServer

log = logging.getLogger("raftka.node.kafka.connection")

MAX_IN_FLIGHT = 64
API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
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
        self.host = str(self.peer[0]) if self.peer else "*"
        self.caller: Caller | None = self._initial_caller()  # None: must log in (SASL) first
        self.sasl: SaslSession | None = None  # the login in progress (SaslHandshake .. SaslAuthenticate)
        self.sasl_logged_in = False
        self.login_failed = False  # answer the failure, then close

    def _initial_caller(self) -> Caller | None:
        if not self.server.services.security.enabled:
            return Caller(ANONYMOUS, self.host)
        name = peer_principal_name(self.writer.get_extra_info("peercert"))
        return Caller(f"User:{name}", self.host) if name else None

    def logged_in(self, principal: str) -> None:
        self.caller, self.sasl_logged_in = Caller(principal, self.host), True

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
                async with asyncio.timeout(5.0):
                    await writer_task
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
            caller = self._caller_for(request)
            if request.api.key in (SASL_HANDSHAKE, SASL_AUTHENTICATE):  # in order, before the next frame
                await self._responses.put(_done(await self._serve(request, caller)))
                if self.login_failed:
                    return
                continue
            if caller is None and request.api.key != API_VERSIONS:
                raise MalformedFrame("unauthenticated", f"{request.api.name} before SASL authentication")
            task = asyncio.create_task(self._serve(request, caller))
            if _expects_response(request):
                await self._responses.put(task)
            else:
                task.add_done_callback(_log_failure)

    def _caller_for(self, request: Request) -> Caller | None:
        """Who the request runs as: the relaying broker's client for a signed relayed request (with
        authentication on), else this connection's login (None: not logged in)."""
        security = self.server.services.security
        if not (security.enabled and is_relayed(request)):
            return self.caller
        try:
            return relay_caller(request, self.server.broker.peer_signer)
        except PeerSignatureError:
            security.login_failed(self.host, LISTENER)
            raise MalformedFrame("bad_relay_signature", "a relayed request without a valid signature") from None

    async def _serve(self, request: Request, caller: Caller | None) -> bytes | None:
        if caller is not None:
            CALLER.set(caller)  # this task's context only
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
