"""PeerTransport over real loopback sockets: delivery, large frames, authentication, hostile clients, restarts.

Every test runs its own event loop (plain asyncio, some also uvloop) under a timeout and fails
if any exception reached the loop's exception handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import uvloop

import raftka.raft.transport as transport_module
from raftka.raft.transport import PeerTransport
from raftka.raft.wire_frames import HEADER, FrameSealer
from raftka.raft.wire_handshake import (
    CHALLENGE_BODY,
    HELLO_HEAD,
    NONCE_BYTES,
    PROOF_BYTES,
    ClusterAuth,
    Status,
    encode_challenge,
    encode_hello,
    parse_challenge_body,
    parse_hello,
    parse_hello_head,
    transcript,
)

pytestmark = pytest.mark.timeout(60)

SECRET = b"correct horse battery staple"
HOST = "127.0.0.1"
LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}
both_loops = pytest.mark.parametrize("loop_name", sorted(LOOPS))


def run(scenario: Callable[[], Awaitable[None]], loop_name: str = "asyncio", timeout_s: float = 20.0) -> None:
    loop_errors: list[dict] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda _loop, context: loop_errors.append(context))
        async with asyncio.timeout(timeout_s):
            await scenario()

    with asyncio.Runner(loop_factory=LOOPS[loop_name]) as runner:
        runner.run(main())
    assert loop_errors == [], f"exceptions reached the event loop: {loop_errors}"


async def wait_until(condition: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.005)


class Inbox:
    """on_message callback that records (sender, payload); raises instead for the payload ``explode_on``."""

    def __init__(self) -> None:
        self.messages: list[tuple[int, bytes]] = []
        self.explode_on: bytes | None = None

    def __call__(self, sender: int, payload: bytes) -> None:
        if payload == self.explode_on:
            raise RuntimeError("handler bug")
        self.messages.append((sender, payload))

    def from_(self, sender: int) -> list[bytes]:
        return [payload for origin, payload in self.messages if origin == sender]


@contextlib.asynccontextmanager
async def cluster(
    secrets: dict[int, bytes], **options: object
) -> AsyncIterator[tuple[dict[int, PeerTransport], dict[int, Inbox]]]:
    """Transports for the given node ids, listening on free ports, all peers of each other."""
    inboxes = {node_id: Inbox() for node_id in secrets}
    nodes = {
        node_id: PeerTransport(node_id, (HOST, 0), {}, secret, inboxes[node_id], **options)  # type: ignore[arg-type]
        for node_id, secret in secrets.items()
    }
    try:
        for node in nodes.values():
            await node.start()
        addresses = {node_id: (HOST, node.port) for node_id, node in nodes.items()}
        for node in nodes.values():
            node.set_peers(addresses)
        yield nodes, inboxes
    finally:
        for node in nodes.values():
            await node.close()


def all_connected(nodes: dict[int, PeerTransport]) -> bool:
    return all(a.is_connected(b) for a_id, a in nodes.items() for b in nodes if b != a_id)


def free_port() -> int:
    """A port nobody listens on (bound then released)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


async def dial_raw(port: int, dialer_id: int, acceptor_id: int, secret: bytes = SECRET, cluster_id: bytes = b"raftka"):
    """Handshake as a peer written from the protocol description; returns (reader, writer, sealer or None, status)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    nonce = os.urandom(NONCE_BYTES)
    hello = encode_hello(dialer_id, acceptor_id, cluster_id, nonce)
    writer.write(hello)
    status = (await reader.readexactly(1))[0]
    if status != Status.OK:
        return reader, writer, None, Status(status)
    challenge = await reader.readexactly(CHALLENGE_BODY.size)
    found_id, acceptor_nonce, _proof = parse_challenge_body(challenge)
    shared = transcript(hello, found_id, acceptor_nonce)
    auth = ClusterAuth(secret)
    writer.write(auth.dialer_proof(shared))
    verdict = Status((await reader.readexactly(1))[0])
    sealer = FrameSealer(auth.session_key(nonce, acceptor_nonce, shared)) if verdict == Status.OK else None
    return reader, writer, sealer, verdict


def sealed(sealer: FrameSealer, payload: bytes) -> bytes:
    header, body = sealer.seal(payload)
    return header + body


async def closed_by_server(reader: asyncio.StreamReader, timeout_s: float = 2.0) -> bool:
    """True once the server has closed (or reset) the connection, False if it is still open after timeout_s."""
    try:
        async with asyncio.timeout(timeout_s):
            await reader.read()  # until EOF
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return True


# -- delivery ---------------------------------------------------------------------------------------


@both_loops
def test_three_nodes_deliver_every_message_in_order_per_sender(loop_name: str) -> None:
    async def scenario() -> None:
        async with cluster({1: SECRET, 2: SECRET, 3: SECRET}) as (nodes, inboxes):
            await wait_until(lambda: all_connected(nodes), what="full mesh")
            rng = random.Random(7)
            expected: dict[tuple[int, int], list[bytes]] = {}
            for index in range(300):
                for sender, node in nodes.items():
                    for receiver in nodes:
                        if receiver != sender:
                            payload = f"{sender}->{receiver} #{index} ".encode() + rng.randbytes(rng.randrange(0, 3000))
                            as_type = (bytes, bytearray, memoryview)[index % 3]
                            assert node.send(receiver, as_type(payload))
                            expected.setdefault((sender, receiver), []).append(payload)
                if index % 50 == 0:
                    await asyncio.sleep(0)
            await wait_until(lambda: all(len(inbox.messages) == 600 for inbox in inboxes.values()), what="600 each")
            for (sender, receiver), payloads in expected.items():
                assert inboxes[receiver].from_(sender) == payloads
            stats = nodes[1].stats()["peers"][2]
            assert stats["frames_sent"] == 300 and stats["frames_received"] == 300 and stats["drops"] == 0

    run(scenario, loop_name)


@both_loops
def test_1_mib_and_16_mib_payloads_arrive_intact_at_every_peer(loop_name: str) -> None:
    async def scenario() -> None:
        async with cluster({1: SECRET, 2: SECRET, 3: SECRET}) as (nodes, inboxes):
            await wait_until(lambda: all_connected(nodes), what="full mesh")
            small, large = os.urandom(1 << 20), os.urandom(16 << 20)
            for receiver in (2, 3):
                assert nodes[1].send(receiver, small)
                assert nodes[1].send(receiver, memoryview(large))
            assert nodes[2].send(1, large)
            await wait_until(lambda: len(inboxes[2].messages) == 2 and len(inboxes[3].messages) == 2
                             and len(inboxes[1].messages) == 1, timeout_s=10, what="large payloads")
            digest = lambda data: hashlib.sha256(data).hexdigest()  # noqa: E731 - readable failure output
            for receiver in (2, 3):
                assert [digest(p) for p in inboxes[receiver].from_(1)] == [digest(small), digest(large)]
            assert digest(inboxes[1].from_(2)[0]) == digest(large)

    run(scenario, loop_name)


@both_loops
def test_burst_far_beyond_the_socket_buffers_waits_in_the_queue_and_arrives_in_order(loop_name: str) -> None:
    async def scenario() -> None:
        async with cluster({1: SECRET, 2: SECRET}) as (nodes, inboxes):
            await wait_until(lambda: all_connected(nodes), what="connected")
            burst = [bytes([index]) * (1 << 20) for index in range(14)]  # 14 MiB in one loop iteration
            assert all(nodes[1].send(2, payload) for payload in burst)
            assert nodes[1].stats()["peers"][2]["queued_bytes"] >= 14 << 20
            await wait_until(lambda: len(inboxes[2].messages) == len(burst), timeout_s=10, what="whole burst")
            assert inboxes[2].from_(1) == burst
            assert nodes[1].stats()["peers"][2]["queued_bytes"] == 0

    run(scenario, loop_name)


def test_payload_of_exactly_max_frame_bytes_arrives_and_one_more_byte_is_refused() -> None:
    async def scenario() -> None:
        async with cluster({1: SECRET, 2: SECRET}, max_frame_bytes=1 << 20) as (nodes, inboxes):
            await wait_until(lambda: all_connected(nodes), what="connected")
            exact = os.urandom(1 << 20)
            assert nodes[1].send(2, exact)
            with pytest.raises(ValueError, match="exceeds max_frame_bytes=1048576"):
                nodes[1].send(2, exact + b"x")
            assert nodes[1].send(2, b"")
            await wait_until(lambda: len(inboxes[2].messages) == 2, what="delivery")
            assert inboxes[2].from_(1) == [exact, b""]

    run(scenario)


def test_constructor_rejects_missing_secret_and_bad_arguments() -> None:
    with pytest.raises(ValueError, match="cluster secret is empty"):
        PeerTransport(1, (HOST, 0), {}, b"", Inbox())
    with pytest.raises(TypeError, match="must be bytes"):
        PeerTransport(1, (HOST, 0), {}, "text", Inbox())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="node id"):
        PeerTransport(-1, (HOST, 0), {}, SECRET, Inbox())
    with pytest.raises(ValueError, match="address of peer 2"):
        PeerTransport(1, (HOST, 0), {2: (HOST, 0)}, SECRET, Inbox())
    with pytest.raises(ValueError, match="max_frame_bytes"):
        PeerTransport(1, (HOST, 0), {}, SECRET, Inbox(), max_frame_bytes=0)
    with pytest.raises(ValueError, match="cluster_id"):
        PeerTransport(1, (HOST, 0), {}, SECRET, Inbox(), cluster_id="x" * 256)


def test_send_to_unknown_peer_or_self_is_dropped_counted_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with cluster({1: SECRET}) as (nodes, _inboxes):
            assert nodes[1].send(7, b"x") is False
            assert nodes[1].send(1, b"x") is False
            assert nodes[1].stats()["unknown_peer_drops"] == 2

    with caplog.at_level(logging.WARNING, logger="raftka.raft.transport"):
        run(scenario)
    assert "node 1: dropped a message to 7, which is not a peer []" in caplog.text


def test_on_message_raising_is_logged_and_later_messages_still_arrive(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with cluster({1: SECRET, 2: SECRET}) as (nodes, inboxes):
            inboxes[2].explode_on = b"boom"
            await wait_until(lambda: all_connected(nodes), what="connected")
            for payload in (b"a", b"boom", b"b"):
                assert nodes[1].send(2, payload)
            await wait_until(lambda: inboxes[2].from_(1) == [b"a", b"b"], what="messages after the failing one")
            assert nodes[1].is_connected(2)

    with caplog.at_level(logging.WARNING, logger="raftka.raft.transport"):
        run(scenario)
    assert any("on_message raised" in record.getMessage() for record in caplog.records)


# -- authentication and hostile input ----------------------------------------------------------------


def test_peer_with_wrong_secret_never_delivers_and_honest_nodes_keep_working(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with cluster({1: SECRET, 2: SECRET, 3: b"guessed wrong"}) as (nodes, inboxes):
            await wait_until(lambda: nodes[1].is_connected(2) and nodes[2].is_connected(1), what="honest pair")
            await wait_until(lambda: nodes[3].stats()["peers"][1]["handshake_failures"] >= 2
                             and nodes[1].stats()["peers"][3]["handshake_failures"] >= 2, what="repeated failures")
            for _ in range(20):
                assert nodes[3].send(1, b"forged") is False
                assert nodes[1].send(3, b"secret data") is False
                assert nodes[1].send(2, b"hello")
                await asyncio.sleep(0.01)
            await wait_until(lambda: len(inboxes[2].messages) == 20, what="honest traffic")
            assert not nodes[3].is_connected(1) and not nodes[1].is_connected(3)
            assert inboxes[1].messages == [] and inboxes[3].messages == []
            assert nodes[3].stats()["peers"][1]["drops"] == 20

    with caplog.at_level(logging.WARNING, logger="raftka.raft.transport"):
        run(scenario)
    failures = [r.getMessage() for r in caplog.records if "handshake with" in r.getMessage()]
    assert any("failed: wrong cluster secret?" in message for message in failures), failures


def test_raw_clients_sending_garbage_or_huge_headers_are_dropped_without_effect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(transport_module, "HANDSHAKE_TIMEOUT_S", 0.3)

    async def scenario() -> None:
        async with cluster({1: SECRET, 2: SECRET}) as (nodes, inboxes):
            port = nodes[1].port
            rng = random.Random(1)
            attacks = [rng.randbytes(rng.randrange(1, 600)) for _ in range(20)]
            attacks += [b"\xff" * 8, HEADER.pack(0xFFFFFFFF) + b"\x00" * 64, b"\x00" * (1 << 20)]
            attacks += [b"RFTK\x01" + rng.randbytes(300), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]
            failures_before = nodes[1].stats()["unattributed_handshake_failures"]
            for attack in attacks:
                reader, writer = await asyncio.open_connection(HOST, port)
                with contextlib.suppress(ConnectionError):
                    writer.write(attack)
                    await writer.drain()
                assert await closed_by_server(reader)
                writer.close()
            # a client that connects and then says nothing is cut off by the handshake timeout
            reader, writer = await asyncio.open_connection(HOST, port)
            assert await closed_by_server(reader, timeout_s=3)
            writer.close()
            # every attack counts as a failed handshake (some may still be in progress: wait)
            await wait_until(lambda: nodes[1].stats()["unattributed_handshake_failures"]
                             + nodes[1].stats()["peers"][2]["handshake_failures"] >= failures_before + len(attacks),
                             what="all attacks counted")
            assert nodes[1].send(2, b"still alive") and nodes[2].send(1, b"me too")
            await wait_until(lambda: inboxes[2].messages == [(1, b"still alive")]
                             and inboxes[1].messages == [(2, b"me too")], what="honest traffic")

    run(scenario)


def test_handshake_refusals_name_the_problem(caplog: pytest.LogCaptureFixture) -> None:
    async def scenario() -> None:
        async with cluster({1: SECRET}) as (nodes, inboxes):
            port = nodes[1].port
            nodes[1].set_peers({2: (HOST, free_port())})
            cases = [
                (dict(dialer_id=2, acceptor_id=1, cluster_id=b"other"), Status.CLUSTER_MISMATCH),
                (dict(dialer_id=9, acceptor_id=1), Status.UNKNOWN_DIALER),
                (dict(dialer_id=2, acceptor_id=5), Status.WRONG_ACCEPTOR),
                (dict(dialer_id=2, acceptor_id=1, secret=b"nope"), Status.BAD_PROOF),
            ]
            for arguments, expected in cases:
                _reader, writer, sealer, status = await dial_raw(port, **arguments)  # type: ignore[arg-type]
                assert (status, sealer) == (expected, None)
                writer.close()
            assert inboxes[1].messages == []
            assert nodes[1].stats()["peers"][2]["handshake_failures"] == 3  # the unknown node 9 is not a peer
            assert nodes[1].stats()["unattributed_handshake_failures"] == 1

    with caplog.at_level(logging.WARNING, logger="raftka.raft.transport"):
        run(scenario)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "peer belongs to cluster 'other', we are 'raftka'" in text
    assert "node 9 is not among our peers" in text
    assert "peer dialed node 5, but this is node 1" in text
    assert "(claims node 2) failed: wrong cluster secret?" in text


def test_authenticated_peer_is_dropped_on_oversize_header_replay_tamper_or_reorder(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def scenario() -> None:
        async with cluster({1: SECRET}, max_frame_bytes=4096) as (nodes, inboxes):
            port = nodes[1].port
            nodes[1].set_peers({2: (HOST, free_port())})  # node 2 is played by this test

            async def session() -> tuple[asyncio.StreamReader, asyncio.StreamWriter, FrameSealer]:
                reader, writer, sealer, status = await dial_raw(port, dialer_id=2, acceptor_id=1)
                assert status == Status.OK and sealer is not None
                return reader, writer, sealer

            reader, writer, sealer = await session()
            writer.write(sealed(sealer, b"first") + HEADER.pack(4096 + 17) + b"\x00" * 100)
            assert await closed_by_server(reader)
            await wait_until(lambda: inboxes[1].messages == [(2, b"first")], what="first")

            reader, writer, sealer = await session()
            frame = sealed(sealer, b"once")
            writer.write(frame + frame)  # replay within the session
            assert await closed_by_server(reader)

            reader, writer, sealer = await session()
            tampered = bytearray(sealed(sealer, b"tampered"))
            tampered[-20] ^= 1
            writer.write(bytes(tampered))
            assert await closed_by_server(reader)

            reader, writer, sealer = await session()
            zeroth, first = sealed(sealer, b"zeroth"), sealed(sealer, b"first again")
            writer.write(first + zeroth)
            assert await closed_by_server(reader)

            reader, writer, sealer = await session()
            writer.write(frame)  # a frame of an earlier session
            assert await closed_by_server(reader)

            await asyncio.sleep(0.05)
            assert inboxes[1].messages == [(2, b"first"), (2, b"once")]
            assert "failed authentication" in (nodes[1].stats()["peers"][2]["last_inbound_error"] or "")

    with caplog.at_level(logging.WARNING, logger="raftka.raft.transport"):
        run(scenario)
    drops = [r.getMessage() for r in caplog.records if "dropped the connection from peer" in r.getMessage()]
    assert any("frame header announces 4113 bytes" in message for message in drops), drops
    assert any("frame #1 failed authentication" in message for message in drops), drops  # the replay
    assert any("frame #0 failed authentication" in message for message in drops), drops


class RecordingProxy:
    """TCP relay that records what the client side sends."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.upstream = bytearray()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, HOST, 0)
        return self.server.sockets[0].getsockname()[1]

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection(HOST, self.target_port)

        async def pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bool) -> None:
            with contextlib.suppress(ConnectionError):
                while data := await reader.read(65536):
                    if record:
                        self.upstream += data
                    writer.write(data)
            writer.close()

        await asyncio.gather(pump(client_reader, server_writer, True), pump(server_reader, client_writer, False))

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()


def test_replayed_capture_of_a_whole_session_is_refused() -> None:
    async def scenario() -> None:
        async with cluster({1: SECRET, 2: SECRET}) as (nodes, inboxes):
            proxy = RecordingProxy(nodes[2].port)  # type: ignore[arg-type]
            proxy_port = await proxy.start()
            nodes[1].set_peers({2: (HOST, proxy_port)})  # node 1 now reaches node 2 through the recorder
            await wait_until(lambda: nodes[1].is_connected(2) and proxy.upstream, what="connection via proxy")
            for index in range(5):
                assert nodes[1].send(2, b"captured %d" % index)
            await wait_until(lambda: len(inboxes[2].messages) == 5, what="captured traffic")
            capture = bytes(proxy.upstream)
            assert b"captured" not in capture  # frames are encrypted on the wire

            reader, writer = await asyncio.open_connection(HOST, nodes[2].port)
            writer.write(capture)
            assert (await reader.readexactly(1))[0] == Status.OK  # the HELLO itself is well formed...
            await reader.readexactly(CHALLENGE_BODY.size)
            assert (await reader.readexactly(1))[0] == Status.BAD_PROOF  # ...but the old proof misses the new nonce
            assert await closed_by_server(reader)
            await asyncio.sleep(0.05)
            assert len(inboxes[2].messages) == 5
            assert nodes[1].send(2, b"live") and nodes[2].send(1, b"back")
            await wait_until(lambda: inboxes[2].messages[-1] == (1, b"live") and inboxes[1].messages == [(2, b"back")],
                             what="honest traffic")
            await proxy.close()

    run(scenario)


# -- failures of peers -----------------------------------------------------------------------------------


@both_loops
def test_restarted_peer_on_the_same_port_gets_traffic_again(loop_name: str) -> None:
    async def scenario() -> None:
        async with cluster({1: SECRET, 2: SECRET}) as (nodes, inboxes):
            await wait_until(lambda: all_connected(nodes), what="connected")
            assert nodes[1].send(2, b"before")
            await wait_until(lambda: inboxes[2].messages == [(1, b"before")], what="first delivery")
            port = nodes[2].port
            await nodes[2].close()
            await wait_until(lambda: not nodes[1].is_connected(2), what="loss noticed")
            assert nodes[1].send(2, b"while down") is False

            inbox = Inbox()
            restarted = PeerTransport(2, (HOST, port), {1: (HOST, nodes[1].port)}, SECRET, inbox)
            await restarted.start()
            try:
                await wait_until(lambda: nodes[1].is_connected(2) and restarted.is_connected(1), what="reconnect")
                assert nodes[1].send(2, b"after") and restarted.send(1, b"hello again")
                await wait_until(lambda: inbox.messages == [(1, b"after")]
                                 and inboxes[1].messages[-1:] == [(2, b"hello again")], what="traffic resumed")
                assert nodes[1].stats()["peers"][2]["connects"] == 2
            finally:
                await restarted.close()

    run(scenario, loop_name)


def test_sending_to_a_down_peer_drops_at_once_and_never_stalls_the_loop() -> None:
    async def scenario() -> None:
        inbox = Inbox()
        node = PeerTransport(1, (HOST, 0), {2: (HOST, free_port())}, SECRET, inbox)
        await node.start()
        lags: list[float] = []

        async def measure_loop_lag() -> None:
            while True:
                before = time.perf_counter()
                await asyncio.sleep(0.01)
                lags.append(time.perf_counter() - before - 0.01)

        ticker = asyncio.create_task(measure_loop_lag())
        try:
            payload = os.urandom(1024)
            began = time.perf_counter()
            results = [node.send(2, payload) for _ in range(10_000)]
            assert time.perf_counter() - began < 0.5
            assert not any(results)
            await asyncio.sleep(0.6)  # several dial attempts, each refused
            peer = node.stats()["peers"][2]
            assert peer["drops"] == 10_000 and not peer["connected"]
            assert "refused" in (peer["last_error"] or "").lower()
            assert max(lags) < 0.2
        finally:
            ticker.cancel()
            await node.close()

    run(scenario)


def test_peer_that_stops_reading_fills_a_bounded_queue_then_sends_drop() -> None:
    async def scenario() -> None:
        auth = ClusterAuth(SECRET)
        release = asyncio.Event()

        async def stuck_acceptor(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            head = await reader.readexactly(HELLO_HEAD.size)
            _version, rest = parse_hello_head(head)
            hello_bytes = head + await reader.readexactly(rest)
            parse_hello(hello_bytes)
            nonce = os.urandom(NONCE_BYTES)
            shared = transcript(hello_bytes, 2, nonce)
            writer.write(encode_challenge(2, nonce, auth.acceptor_proof(shared)))
            await reader.readexactly(PROOF_BYTES)
            writer.write(bytes([Status.OK]))
            await release.wait()  # and never read again
            writer.close()

        server = await asyncio.start_server(stuck_acceptor, HOST, 0)
        node = PeerTransport(1, (HOST, 0), {2: (HOST, server.sockets[0].getsockname()[1])}, SECRET, Inbox(),
                             max_queue_bytes=1 << 20)
        await node.start()
        try:
            await wait_until(lambda: node.is_connected(2), what="handshake with the stuck peer")
            payload = os.urandom(64 << 10)
            accepted = dropped = 0
            slowest = 0.0
            for _ in range(2000):
                began = time.perf_counter()
                if node.send(2, payload):
                    accepted += 1
                else:
                    dropped += 1
                slowest = max(slowest, time.perf_counter() - began)
                await asyncio.sleep(0)
                if dropped >= 50:
                    break
            assert accepted > 0 and dropped >= 50
            assert node.stats()["peers"][2]["queued_bytes"] <= (1 << 20) + len(payload) + 64
            assert slowest < 0.05
        finally:
            release.set()
            await node.close()
            server.close()

    run(scenario)


def test_set_peers_redials_moved_peers_and_forgets_removed_ones() -> None:
    async def scenario() -> None:
        async with cluster({1: SECRET, 2: SECRET}) as (nodes, inboxes):
            real = (HOST, nodes[2].port)
            nodes[1].set_peers({2: (HOST, free_port())})
            await asyncio.sleep(0.1)
            assert not nodes[1].is_connected(2)
            nodes[1].set_peers({1: (HOST, nodes[1].port), 2: real})  # our own entry is ignored
            await wait_until(lambda: nodes[1].is_connected(2), what="redial at the new address")
            assert nodes[1].send(2, b"found you")
            await wait_until(lambda: inboxes[2].messages == [(1, b"found you")], what="delivery")
            nodes[1].set_peers({})
            assert not nodes[1].is_connected(2)
            assert nodes[1].send(2, b"gone") is False
            await wait_until(lambda: not nodes[2].stats()["peers"][1]["inbound_connected"], what="inbound closed")

    run(scenario)
