"""Broker-to-broker Raft transport: one TCP port per broker carries the messages of all its Raft groups.

Each node dials one outbound connection to every peer and only sends on it; connections it
accepts are only read (two TCP connections per node pair, no tie-breaking). Every connection
starts with the mutual challenge-response handshake of wire_handshake.py (cluster secret,
node ids, fresh nonces) and then carries AES-GCM sealed, length-prefixed frames
(wire_frames.py); payloads are opaque bytes, nothing is unpickled.

Runs inside the broker's single asyncio event loop (plain asyncio or uvloop); ``send`` never
blocks and never waits: it seals the payload into the peer's queue, and once per loop iteration
the queue is handed to the socket (small frames joined into ~64 KiB writes) for as long as the
loop's write buffer stays under 1 MiB. A payload is dropped (``send`` returns False) while the
peer is not connected or its queue holds ``max_queue_bytes`` or more -- Raft retransmits.
Dialing retries with jittered exponential backoff (50 ms to 1 s); a newer authenticated inbound
connection from a peer replaces its older one. Failures never escape into the loop: they are
counted in ``stats()`` and logged, handshake failures as warnings rate limited per address
("handshake with 10.0.0.3:9000 (node 3) failed: wrong cluster secret? ..."). Dead peers are
detected by TCP keepalive and TCP_USER_TIMEOUT where the OS offers them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from raftka.raft.warning_throttle import WarningThrottle
from raftka.raft.wire_frames import (
    HEADER,
    FrameError,
    FrameOpener,
    FrameReader,
    FrameSealer,
    check_max_frame_bytes,
)
from raftka.raft.wire_handshake import (
    CHALLENGE_BODY,
    HELLO_HEAD,
    MAX_HANDSHAKE_BYTES,
    NONCE_BYTES,
    PROOF_BYTES,
    VERSION,
    ClusterAuth,
    HandshakeError,
    Status,
    check_node_id,
    describe_status,
    encode_challenge,
    encode_cluster_id,
    encode_hello,
    parse_challenge_body,
    parse_hello,
    parse_hello_head,
    proofs_match,
    transcript,
)

log = logging.getLogger(__name__)

Address = tuple[str, int]
OnMessage = Callable[[int, bytes], None]

BACKOFF_MIN_S = 0.05
BACKOFF_MAX_S = 1.0
CONNECT_TIMEOUT_S = 3.0
HANDSHAKE_TIMEOUT_S = 5.0
MAX_PENDING_HANDSHAKES = 64
WARNING_INTERVAL_S = 30.0
DEFAULT_MAX_QUEUE_BYTES = 16 << 20
COPY_LIMIT_BYTES = 64 << 10  # consecutive frames are joined into writes of about this size; larger bodies go alone
WRITE_HIGH_WATER_BYTES = 1 << 20  # above this the event loop's own write buffer is not fed more...
WRITE_LOW_WATER_BYTES = 256 << 10  # ...until it has drained below this; frames wait in the peer's queue

_SOCKET_OPTIONS = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1), (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)] + [
    (socket.IPPROTO_TCP, getattr(socket, name), value)
    for name, value in (
        ("TCP_KEEPIDLE", 5),  # seconds idle before probing
        ("TCP_KEEPINTVL", 2),
        ("TCP_KEEPCNT", 3),
        ("TCP_USER_TIMEOUT", 15_000),  # ms of unacknowledged data before the kernel gives up
    )
    if hasattr(socket, name)
]


def _tune_socket(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    for level, option, value in _SOCKET_OPTIONS:
        with contextlib.suppress(OSError):  # an option this OS or socket does not support
            sock.setsockopt(level, option, value)


def _format_address(address: Any) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host = address[0]
        return f"[{host}]:{address[1]}" if ":" in str(host) else f"{host}:{address[1]}"
    return str(address)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Link(asyncio.BufferedProtocol):
    """One TCP connection: raw reads while handshaking, then either frames in (accepted) or nothing in (dialed)."""

    def __init__(self, max_payload_bytes: int, on_made: Callable[[_Link], None]) -> None:
        self._reader = FrameReader(max_payload_bytes)
        self._on_made = on_made
        self._waiter: asyncio.Future[None] | None = None
        self._opener: FrameOpener | None = None
        self._deliver: Callable[[bytes], None] | None = None
        self._send_only = False
        self.transport: asyncio.Transport | None = None
        self.label = "?"
        self.claimed_id: int | None = None
        self.on_lost: Callable[[_Link], None] | None = None
        self.on_writable: Callable[[], None] | None = None
        self.paused = False
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.is_closed = False
        self.error: str | None = None
        self.fault: str | None = None  # set when we drop the connection because the peer broke the protocol

    # -- asyncio.BufferedProtocol --------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport subclasses
        self.label = _format_address(transport.get_extra_info("peername"))
        _tune_socket(transport)
        self._on_made(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        try:
            return self._reader.buffer()
        except FrameError as exc:  # unreachable while the handshake phase stays bounded
            self.abort(str(exc))
            return memoryview(bytearray(1))

    def buffer_updated(self, nbytes: int) -> None:
        self._reader.filled(nbytes)
        if self.is_closed:
            return
        if self._opener is not None:
            self._read_frames()
        elif self._send_only:
            self.drop_for_fault("acceptor sent data on a send-only connection")
        elif self._reader.buffered > MAX_HANDSHAKE_BYTES:
            self.drop_for_fault("peer sent more than a handshake")
        else:
            self._wake()

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        if self.on_writable is not None:
            self.on_writable()

    def eof_received(self) -> None:
        if self.error is None:
            self.error = "connection closed by peer"

    def connection_lost(self, exc: Exception | None) -> None:
        self.is_closed = True
        if self.error is None:
            self.error = _describe(exc) if exc is not None else "connection closed"
        self._wake()
        if not self.closed.done():
            self.closed.set_result(None)
        if self.on_lost is not None:
            self.on_lost(self)

    # -- handshake phase ----------------------------------------------------------------------
    async def read_exactly(self, nbytes: int) -> bytes:
        while self._reader.buffered < nbytes:
            if self.fault is not None:
                raise HandshakeError(self.fault)
            if self.is_closed:
                raise ConnectionError(f"connection lost during handshake ({self.error})")
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        return self._reader.take(nbytes)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def refuse(self, status: Status, reason: str) -> None:
        """Tell the dialer why (one status byte), then close once it is written."""
        assert self.transport is not None
        self.error = reason
        self.transport.write(bytes([status]))
        self.is_closed = True
        self.transport.close()

    # -- after the handshake ------------------------------------------------------------------
    def become_send_only(self) -> None:
        self._send_only = True
        assert self.transport is not None
        self.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER_BYTES, low=WRITE_LOW_WATER_BYTES)
        if self._reader.buffered:
            self.drop_for_fault("acceptor sent data after its verdict")

    def receive_frames(self, opener: FrameOpener, deliver: Callable[[bytes], None]) -> None:
        self._opener, self._deliver = opener, deliver
        self._read_frames()  # frames may have arrived together with the handshake's last bytes

    def _read_frames(self) -> None:
        reader, opener, deliver = self._reader, self._opener, self._deliver
        assert opener is not None and deliver is not None
        try:
            while not self.is_closed:
                body = reader.next_frame()
                if body is None:
                    return
                deliver(opener.open(body))
        except FrameError as exc:
            self.drop_for_fault(str(exc))
        except Exception:  # a bug; must not reach the event loop's handler with the link half-read
            log.exception("failed to process a frame from %s", self.label)
            self.abort("internal error while reading frames")

    def drop_for_fault(self, fault: str) -> None:
        if not self.is_closed:
            self.fault = fault
        self.abort(fault)

    def abort(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        self.is_closed = True
        if self.transport is not None:
            self.transport.abort()

    def queued_bytes(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0


class _Peer:
    """What this node knows about one peer: address, outbound link and its send queue, counters."""

    def __init__(self, node_id: int, address: Address) -> None:
        self.node_id = node_id
        self.address = address
        self.dialer: asyncio.Task[None] | None = None
        self.link: _Link | None = None
        self.sealer: FrameSealer | None = None
        self.inbound: _Link | None = None
        self.queue: deque[tuple[bytes, bytes, int]] = deque()  # (header, sealed body, payload size)
        self.queue_bytes = 0
        self.flush_scheduled = False
        self.frames_sent = 0
        self.bytes_sent = 0
        self.frames_received = 0
        self.bytes_received = 0
        self.drops = 0
        self.handshake_failures = 0
        self.connects = 0
        self.last_error: str | None = None  # of our outbound connection
        self.last_inbound_error: str | None = None  # of connections the peer made to us

    @property
    def label(self) -> str:
        return f"{_format_address(self.address)} (node {self.node_id})"

    def drop_queue(self) -> None:
        self.drops += len(self.queue)
        self.queue.clear()
        self.queue_bytes = 0


def _check_address(address: object, what: str, *, allow_port_zero: bool) -> Address:
    if not (isinstance(address, (tuple, list)) and len(address) == 2):
        raise ValueError(f"{what} must be a (host, port) pair, got {address!r}")
    host, port = address
    low = 0 if allow_port_zero else 1
    if not isinstance(host, str) or not isinstance(port, int) or isinstance(port, bool) or not low <= port <= 65535:
        raise ValueError(f"{what} must be (host: str, port: int {low}..65535), got {address!r}")
    return host, port


def _check_peers(peers: Mapping[int, Address], own_id: int) -> dict[int, Address]:
    """Validated peer map without our own entry (passing the whole cluster map is fine)."""
    return {
        check_node_id(peer_id): _check_address(address, f"address of peer {peer_id}", allow_port_zero=False)
        for peer_id, address in peers.items()
        if peer_id != own_id
    }


class PeerTransport:
    """Authenticated, encrypted message transport between the brokers of one cluster."""

    def __init__(
        self,
        node_id: int,
        listen: Address,
        peers: Mapping[int, Address],
        secret: bytes,
        on_message: OnMessage,
        *,
        max_frame_bytes: int = 64 << 20,
        cluster_id: str = "raftka",
        max_queue_bytes: int = DEFAULT_MAX_QUEUE_BYTES,
    ) -> None:
        self.node_id = check_node_id(node_id)
        self._auth = ClusterAuth(secret)
        self._cluster_id = encode_cluster_id(cluster_id)
        self._max_frame_bytes = check_max_frame_bytes(max_frame_bytes)
        if not isinstance(max_queue_bytes, int) or max_queue_bytes <= 0:
            raise ValueError(f"max_queue_bytes must be a positive int, got {max_queue_bytes!r}")
        self._max_queue_bytes = max_queue_bytes
        self._listen = _check_address(listen, "listen", allow_port_zero=True)
        self._on_message = on_message
        self._peers = {peer_id: _Peer(peer_id, address) for peer_id, address in _check_peers(peers, node_id).items()}
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._handshakes: set[asyncio.Task[None]] = set()
        self._closed = False
        self._unattributed_handshake_failures = 0
        self._unknown_peer_drops = 0
        self._throttle = WarningThrottle(log, WARNING_INTERVAL_S)

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Bind the listening port (``.port`` tells which when 0 was asked) and start dialing peers."""
        if self._server is not None or self._closed:
            raise RuntimeError("PeerTransport.start() may be called once, before close()")
        self._loop = asyncio.get_running_loop()
        host, port = self._listen
        self._server = await self._loop.create_server(self._new_inbound_link, host, port)
        self.port = self._server.sockets[0].getsockname()[1]
        for peer in self._peers.values():
            self._start_dialing(peer)
        log.info("node %d: raft transport listening on %s", self.node_id, _format_address((host, self.port)))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        tasks = [peer.dialer for peer in self._peers.values() if peer.dialer is not None]
        tasks += self._handshakes
        for task in tasks:
            task.cancel()
        for link in list(self._links):
            link.abort("transport closed")
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0)  # let the aborted connections report connection_lost

    def set_cluster_id(self, cluster_id: str) -> None:
        """Speak for another cluster id from now on (a broker that learned its cluster's id after starting);
        links that exist were authenticated under the old one and are kept."""
        self._cluster_id = encode_cluster_id(cluster_id)

    def set_peers(self, peers: Mapping[int, Address]) -> None:
        """Adopt a new peer map: dial new peers, redial moved ones, forget removed ones."""
        wanted = _check_peers(peers, self.node_id)
        for peer_id in [peer_id for peer_id in self._peers if peer_id not in wanted]:
            self._stop_dialing(self._peers.pop(peer_id), "peer removed", also_inbound=True)
        for peer_id, address in wanted.items():
            peer = self._peers.get(peer_id)
            if peer is None:
                peer = self._peers[peer_id] = _Peer(peer_id, address)
            elif peer.address != address:
                self._stop_dialing(peer, "peer moved", also_inbound=False)
                peer.address = address
            else:
                continue
            if self._loop is not None and not self._closed:
                self._start_dialing(peer)

    # -- sending ---------------------------------------------------------------------------------
    @property
    def max_frame_bytes(self) -> int:
        return self._max_frame_bytes

    def send(self, peer_id: int, payload: bytes | bytearray | memoryview) -> bool:
        """Queue one payload for peer_id; False if dropped (not connected, or queue full). Never blocks.

        Call it from the event loop's thread. The payload is encrypted at once, so the caller may
        reuse its buffer after the call. Raises ValueError for a payload over max_frame_bytes. A
        peer_id not in the peer map (membership changing, or our own id) is dropped too, counted
        as ``unknown_peer_drops`` and logged as a warning.
        """
        size = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        if size > self._max_frame_bytes:
            raise ValueError(f"payload of {size} bytes exceeds max_frame_bytes={self._max_frame_bytes}")
        peer = self._peers.get(peer_id)
        if peer is None:
            self._unknown_peer_drops += 1
            self._throttle.warn(("unknown peer", peer_id), "node %d: dropped a message to %r, which is not a peer %s",
                                self.node_id, peer_id, sorted(self._peers))
            return False
        link = peer.link
        if link is None or link.is_closed or peer.queue_bytes + link.queued_bytes() >= self._max_queue_bytes:
            peer.drops += 1
            return False
        assert peer.sealer is not None
        header, body = peer.sealer.seal(payload)
        peer.queue.append((header, body, size))
        peer.queue_bytes += HEADER.size + len(body)
        if not peer.flush_scheduled and not link.paused:
            self._schedule_flush(peer)
        return True

    def _schedule_flush(self, peer: _Peer) -> None:
        assert self._loop is not None
        peer.flush_scheduled = True
        self._loop.call_soon(self._flush, peer)

    def _writable_again(self, peer: _Peer) -> None:
        if peer.queue and not peer.flush_scheduled:
            self._schedule_flush(peer)

    def _flush(self, peer: _Peer) -> None:
        """Hand queued frames to the event loop until its write buffer is above the high-water mark."""
        peer.flush_scheduled = False
        link = peer.link
        if link is None or link.is_closed or link.transport is None:
            peer.drop_queue()
            return
        write, queue = link.transport.write, peer.queue
        batch: list[bytes] = []
        batch_bytes = 0
        while queue and not link.paused:
            header, body, size = queue.popleft()
            peer.queue_bytes -= HEADER.size + len(body)
            peer.frames_sent += 1
            peer.bytes_sent += size
            if len(body) >= COPY_LIMIT_BYTES:
                batch.append(header)
                write(b"".join(batch))
                write(body)
                batch, batch_bytes = [], 0
                continue
            batch += (header, body)
            batch_bytes += HEADER.size + len(body)
            if batch_bytes >= COPY_LIMIT_BYTES:
                write(b"".join(batch))
                batch, batch_bytes = [], 0
        if batch:
            write(b"".join(batch))

    # -- introspection ---------------------------------------------------------------------------
    def is_connected(self, peer_id: int) -> bool:
        peer = self._peers.get(peer_id)
        return peer is not None and peer.link is not None and not peer.link.is_closed

    def stats(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "port": self.port,
            "unattributed_handshake_failures": self._unattributed_handshake_failures,
            "unknown_peer_drops": self._unknown_peer_drops,
            "peers": {
                peer.node_id: {
                    "address": _format_address(peer.address),
                    "connected": self.is_connected(peer.node_id),
                    "inbound_connected": peer.inbound is not None and not peer.inbound.is_closed,
                    "queued_bytes": peer.queue_bytes + (peer.link.queued_bytes() if peer.link else 0),
                    "frames_sent": peer.frames_sent,
                    "bytes_sent": peer.bytes_sent,
                    "frames_received": peer.frames_received,
                    "bytes_received": peer.bytes_received,
                    "drops": peer.drops,
                    "connects": peer.connects,
                    "handshake_failures": peer.handshake_failures,
                    "last_error": peer.last_error,
                    "last_inbound_error": peer.last_inbound_error,
                }
                for peer in self._peers.values()
            },
        }

    # -- dialing ---------------------------------------------------------------------------------
    def _start_dialing(self, peer: _Peer) -> None:
        assert self._loop is not None
        peer.dialer = self._loop.create_task(self._dial_forever(peer), name=f"raft-dial-{self.node_id}-{peer.node_id}")

    def _stop_dialing(self, peer: _Peer, reason: str, *, also_inbound: bool) -> None:
        if peer.dialer is not None:
            peer.dialer.cancel()
            peer.dialer = None
        for link in (peer.link, peer.inbound if also_inbound else None):
            if link is not None:
                link.abort(reason)

    async def _dial_forever(self, peer: _Peer) -> None:
        delay = BACKOFF_MIN_S
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                link, sealer = await self._connect(peer)
            except HandshakeError as exc:
                self._handshake_failed(peer, peer.label, str(exc), inbound=False, origin=peer.node_id)
            except (OSError, TimeoutError) as exc:  # refused, reset, unreachable, DNS, timeouts
                peer.last_error = _describe(exc)
                log.debug("node %d: dialing %s failed: %s", self.node_id, peer.label, peer.last_error)
            except Exception:  # a bug; keep dialing rather than leave the peer unreachable
                peer.last_error = "internal error while dialing"
                log.exception("node %d: dialing %s failed unexpectedly", self.node_id, peer.label)
            else:
                self._attach(peer, link, sealer)
                await link.closed
                if loop.time() - began > BACKOFF_MAX_S:
                    delay = BACKOFF_MIN_S
            await asyncio.sleep(random.uniform(delay / 2, delay))
            delay = min(delay * 2, BACKOFF_MAX_S)

    async def _connect(self, peer: _Peer) -> tuple[_Link, FrameSealer]:
        assert self._loop is not None
        host, port = peer.address
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            _, link = await self._loop.create_connection(
                lambda: _Link(self._max_frame_bytes, self._track), host, port
            )
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                sealer = await self._dial_handshake(link, peer.node_id)
        except BaseException:
            link.abort("handshake failed")
            raise
        link.become_send_only()
        return link, sealer

    async def _dial_handshake(self, link: _Link, peer_id: int) -> FrameSealer:
        nonce = os.urandom(NONCE_BYTES)
        hello = encode_hello(self.node_id, peer_id, self._cluster_id, nonce)
        link.write(hello)
        status = (await link.read_exactly(1))[0]
        if status != Status.OK:
            raise HandshakeError(describe_status(status))
        acceptor_id, acceptor_nonce, proof = parse_challenge_body(await link.read_exactly(CHALLENGE_BODY.size))
        if acceptor_id != peer_id:
            raise HandshakeError(f"that address answers as node {acceptor_id}, not node {peer_id}")
        shared = transcript(hello, acceptor_id, acceptor_nonce)
        if not proofs_match(self._auth.acceptor_proof(shared), proof):
            raise HandshakeError("wrong cluster secret? (the peer's proof does not match ours)")
        link.write(self._auth.dialer_proof(shared))
        verdict = (await link.read_exactly(1))[0]
        if verdict != Status.OK:
            raise HandshakeError(describe_status(verdict))
        return FrameSealer(self._auth.session_key(nonce, acceptor_nonce, shared))

    def _attach(self, peer: _Peer, link: _Link, sealer: FrameSealer) -> None:
        peer.link, peer.sealer = link, sealer
        peer.connects += 1
        link.on_lost = lambda lost: self._outbound_lost(peer, lost)
        link.on_writable = lambda: self._writable_again(peer)
        if link.is_closed:  # lost between the handshake and now
            self._outbound_lost(peer, link)
            return
        log.info("node %d: connected to peer %s", self.node_id, peer.label)

    def _outbound_lost(self, peer: _Peer, link: _Link) -> None:
        self._links.discard(link)
        if peer.link is not link:
            return
        peer.link = peer.sealer = None
        peer.drop_queue()
        peer.last_error = link.error
        if not self._closed:
            log.warning("node %d: lost connection to peer %s: %s", self.node_id, peer.label, link.error)

    # -- accepting -------------------------------------------------------------------------------
    def _track(self, link: _Link) -> None:
        self._links.add(link)
        link.on_lost = self._links.discard

    def _new_inbound_link(self) -> _Link:
        return _Link(self._max_frame_bytes, self._inbound_made)

    def _inbound_made(self, link: _Link) -> None:
        self._track(link)
        if self._closed:
            link.abort("transport closed")
            return
        if len(self._handshakes) >= MAX_PENDING_HANDSHAKES:
            link.abort("too many handshakes in progress")
            self._throttle.warn("busy", "node %d: refused connection from %s: too many handshakes in progress",
                                self.node_id, link.label)
            return
        assert self._loop is not None
        task = self._loop.create_task(self._serve_inbound(link), name=f"raft-accept-{self.node_id}")
        self._handshakes.add(task)
        task.add_done_callback(self._handshakes.discard)

    async def _serve_inbound(self, link: _Link) -> None:
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT_S):
                peer_id, opener = await self._accept_handshake(link)
        except HandshakeError as exc:
            if not link.is_closed:  # a refused link is already closing, its status byte on the way
                link.abort(str(exc))
            claimed = f" (claims node {link.claimed_id})" if link.claimed_id is not None else ""
            host = link.label.rsplit(":", 1)[0]
            self._handshake_failed(self._claimed_peer(link), link.label + claimed, str(exc),
                                   inbound=True, origin=(host, link.claimed_id))
            return
        except (OSError, TimeoutError) as exc:  # went silent or away mid-handshake: a port probe, or a crash
            link.abort(_describe(exc))
            self._count_handshake_failure(self._claimed_peer(link), f"handshake failed: {_describe(exc)}",
                                          inbound=True)
            log.debug("node %d: inbound handshake from %s failed: %s", self.node_id, link.label, _describe(exc))
            return
        except Exception:
            link.abort("internal error")
            log.exception("node %d: inbound handshake from %s failed unexpectedly", self.node_id, link.label)
            return
        peer = self._peers.get(peer_id)
        if peer is None or link.is_closed:  # peer removed meanwhile, or connection already gone
            link.abort("peer removed")
            return
        if peer.inbound is not None:
            peer.inbound.abort("superseded by a newer connection from the same peer")
        peer.inbound = link
        link.on_lost = lambda lost: self._inbound_lost(peer, lost)
        link.receive_frames(opener, lambda payload: self._deliver(peer, payload))

    async def _accept_handshake(self, link: _Link) -> tuple[int, FrameOpener]:
        head = await link.read_exactly(HELLO_HEAD.size)
        version, rest = parse_hello_head(head)
        if version != VERSION:
            reason = f"peer speaks transport version {version}, we speak {VERSION}"
            link.refuse(Status.UNSUPPORTED_VERSION, reason)
            raise HandshakeError(reason)
        hello_bytes = head + await link.read_exactly(rest)
        hello = parse_hello(hello_bytes)
        link.claimed_id = hello.dialer_id
        refusal = self._refusal(hello.dialer_id, hello.acceptor_id, hello.cluster_id)
        if refusal is not None:
            link.refuse(*refusal)
            raise HandshakeError(refusal[1])
        nonce = os.urandom(NONCE_BYTES)
        shared = transcript(hello_bytes, self.node_id, nonce)
        link.write(encode_challenge(self.node_id, nonce, self._auth.acceptor_proof(shared)))
        proof = await link.read_exactly(PROOF_BYTES)
        if not proofs_match(self._auth.dialer_proof(shared), proof):
            reason = "wrong cluster secret? (the peer's proof does not match ours)"
            link.refuse(Status.BAD_PROOF, reason)
            raise HandshakeError(reason)
        link.write(bytes([Status.OK]))
        return hello.dialer_id, FrameOpener(self._auth.session_key(hello.nonce, nonce, shared))

    def _refusal(self, dialer_id: int, acceptor_id: int, cluster_id: bytes) -> tuple[Status, str] | None:
        if cluster_id != self._cluster_id:
            return Status.CLUSTER_MISMATCH, (
                f"peer belongs to cluster {cluster_id[:64].decode(errors='replace')!r}, "
                f"we are {self._cluster_id.decode()!r}"
            )
        if acceptor_id != self.node_id:
            return Status.WRONG_ACCEPTOR, f"peer dialed node {acceptor_id}, but this is node {self.node_id}"
        if dialer_id not in self._peers:
            return Status.UNKNOWN_DIALER, f"node {dialer_id} is not among our peers {sorted(self._peers)}"
        return None

    def _inbound_lost(self, peer: _Peer, link: _Link) -> None:
        self._links.discard(link)
        if peer.inbound is link:
            peer.inbound = None
        if link.fault is not None:
            peer.last_inbound_error = f"dropped inbound connection: {link.fault}"
            self._throttle.warn(("inbound fault", peer.node_id, link.fault),
                                "node %d: dropped the connection from peer %s: %s",
                                self.node_id, f"{link.label} (node {peer.node_id})", link.fault)
        else:
            log.debug("node %d: connection from peer %d closed: %s", self.node_id, peer.node_id, link.error)

    def _deliver(self, peer: _Peer, payload: bytes) -> None:
        peer.frames_received += 1
        peer.bytes_received += len(payload)
        try:
            self._on_message(peer.node_id, payload)
        except Exception:
            self._throttle.warn(("on_message", peer.node_id), "node %d: on_message raised for a message from node %d",
                                self.node_id, peer.node_id, exc_info=True)

    def _claimed_peer(self, link: _Link) -> _Peer | None:
        return self._peers.get(link.claimed_id) if link.claimed_id is not None else None

    def _count_handshake_failure(self, peer: _Peer | None, error: str, *, inbound: bool) -> None:
        if peer is None:
            self._unattributed_handshake_failures += 1
            return
        peer.handshake_failures += 1
        if inbound:
            peer.last_inbound_error = error
        else:
            peer.last_error = error

    def _handshake_failed(self, peer: _Peer | None, where: str, reason: str, *, inbound: bool, origin: object) -> None:
        """Count and log (rate limited per origin and reason) a handshake that failed for a stated reason."""
        self._count_handshake_failure(peer, f"handshake failed: {reason}", inbound=inbound)
        self._throttle.warn((inbound, origin, reason),
                            "node %d: handshake with %s failed: %s", self.node_id, where, reason)
