"""Admin writes reach the metadata leader: a broker relays the client's Kafka request to the leader's Kafka listener.

Metadata writes (CreateTopics, DeleteTopics, CreatePartitions, AlterConfigs,
IncrementalAlterConfigs, InitProducerId) are proposed by the metadata
group's leader. Kafka clients send most of them to the controller named in
Metadata (raftka names the metadata leader), but any broker may get one —
after a leader change, or from a client that picks the least loaded broker
(InitProducerId). Such a broker relays the request frame unchanged to the
leader's Kafka listener and relays the answer back, as Kafka brokers forward
to their controller (KIP-590). Why relay Kafka frames rather than call the
leader's HTTP API: the Kafka request already says everything, in one format
that both ends parse with the same schemas, so no second translation of each
admin API is needed, and the leader answers with Kafka's own per-topic errors.

A relayed request carries `FORWARDED_PREFIX` in its client id; the leader
never relays it again (one hop), so a leader that lost its leadership
meanwhile answers NOT_CONTROLLER and the client refreshes its metadata.
The prefix is followed by the client's principal and address and a signature
over them and the rest of the frame under the cluster secret
(`raftka.node.security.peer`): with authentication on, the leader serves a
relayed request as that client (`relay_caller`) — without any login on the
relay connection, and no client can forge one. Over TLS listeners the relay
connects with TLS too.
Relayed exchanges to one leader go over one connection, one at a time
(admin writes are rare); a failure answers None and the caller answers
NOT_CONTROLLER, which Kafka clients retry.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

from raftka.node.kafka.access import CALLER, Caller
from raftka.node.kafka.frames import Request
from raftka.node.security.peer import PeerSignatureError, PeerSigner

if TYPE_CHECKING:
    from raftka.node.kafka.server import KafkaServer

log = logging.getLogger("raftka.node.kafka.forwarding")

FORWARDED_PREFIX = "raftka-relay:"
RELAY_TIMEOUT_S = 65.0  # CreateTopics waits up to 10 s for leaders; a client's request timeout is 30-60 s
_HEADER_PREFIX = 8  # api key, api version, correlation id
_INT16 = struct.Struct(">h")
_INT32 = struct.Struct(">i")


def is_relayed(request: Request) -> bool:
    return (request.client_id or "").startswith(FORWARDED_PREFIX)


def _split(frame: bytes) -> tuple[bytes, bytes]:
    """(client id, the frame without its client id: what a relay signature covers). Every request header
    version has the nullable int16-length client id right after the first 8 bytes."""
    (length,) = _INT16.unpack_from(frame, _HEADER_PREFIX)
    start = _HEADER_PREFIX + _INT16.size
    client_id = b"" if length < 0 else frame[start:start + length]
    return client_id, frame[:_HEADER_PREFIX] + frame[start + max(length, 0):]


def relayed_frame(frame: bytes, marker: str = "") -> bytes:
    """The frame with `FORWARDED_PREFIX` and `marker` put in front of its client id, size-prefixed."""
    client_id, _ = _split(frame)
    (length,) = _INT16.unpack_from(frame, _HEADER_PREFIX)
    marked = (FORWARDED_PREFIX + marker).encode() + client_id
    rest = frame[_HEADER_PREFIX + _INT16.size + max(length, 0):]
    body = b"".join((frame[:_HEADER_PREFIX], _INT16.pack(len(marked)), marked, rest))
    return _INT32.pack(len(body)) + body


def signed_marker(signer: PeerSigner, caller: Caller, frame: bytes) -> str:
    """``<principal>|<host>|<signature>:`` for `relayed_frame`: who the relayed request is from, signed."""
    principal, host = quote(caller.principal, safe=""), quote(caller.host, safe="")
    return f"{principal}|{host}|{signer.blob_signature(caller.principal, caller.host, _split(frame)[1])}:"


def relay_caller(request: Request, signer: PeerSigner) -> Caller:
    """The client a relayed request is from; PeerSignatureError when the marker is missing, malformed or not
    signed by a broker of this cluster."""
    marker, sep, _ = (request.client_id or "").removeprefix(FORWARDED_PREFIX).partition(":")
    fields = marker.split("|")
    if not sep or len(fields) != 3:
        raise PeerSignatureError("relayed request without a signed caller")
    principal, host = unquote(fields[0]), unquote(fields[1])
    signer.verify_blob(fields[2], principal, host, _split(request.frame)[1])
    return Caller(principal, host)


class _Link:
    """One connection to a peer's Kafka listener, used by one exchange at a time."""

    def __init__(self, address: tuple[str, int], ssl_context=None):
        self.address = address
        self.ssl_context = ssl_context
        self.lock = asyncio.Lock()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def exchange(self, framed: bytes) -> bytes:
        async with self.lock:
            try:
                if self.writer is None or self.writer.is_closing():
                    async with asyncio.timeout(3.0):
                        self.reader, self.writer = await asyncio.open_connection(*self.address, ssl=self.ssl_context)
                self.writer.write(framed)
                async with asyncio.timeout(RELAY_TIMEOUT_S):
                    size_bytes = await self.reader.readexactly(4)
                (size,) = _INT32.unpack(size_bytes)
                async with asyncio.timeout(RELAY_TIMEOUT_S):
                    return size_bytes + await self.reader.readexactly(size)
            except BaseException:
                self.close()
                raise

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class ControllerRelay:
    def __init__(self, server: KafkaServer):
        self.server = server
        self._links: dict[tuple[str, int], _Link] = {}

    async def relay(self, request: Request, leader_id: int | None) -> bytes | None:
        """The leader's framed answer to `request`, or None when it cannot be relayed (the caller answers
        NOT_CONTROLLER)."""
        if leader_id is None or leader_id == self.server.broker.id or is_relayed(request):
            return None
        address = self.server.services.topics.listener_addresses("kafka").get(leader_id)
        if address is None:
            return None
        tls = self.server.broker.tls
        link = self._links.setdefault(address, _Link(address, tls.client if tls is not None else None))
        marker = signed_marker(self.server.broker.peer_signer, CALLER.get(), request.frame)
        try:
            return await link.exchange(relayed_frame(request.frame, marker))
        except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, struct.error) as exc:
            log.info("kafka: relaying %s to broker %d failed: %r", request.api.name, leader_id, exc)
            return None

    async def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()


__all__ = ["FORWARDED_PREFIX", "ControllerRelay", "is_relayed", "relay_caller", "relayed_frame", "signed_marker"]
