"""Property tests of the Raft wire codecs: frame stream decoding, frame sealing, handshake messages and proofs."""

from __future__ import annotations

import contextlib
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftka.raft.wire_frames import HEADER, TAG_BYTES, FrameError, FrameOpener, FrameReader, FrameSealer
from raftka.raft.wire_handshake import (
    CHALLENGE_BODY,
    HELLO_HEAD,
    NONCE_BYTES,
    VERSION,
    ClusterAuth,
    HandshakeError,
    encode_challenge,
    encode_hello,
    parse_challenge_body,
    parse_hello,
    parse_hello_head,
    proofs_match,
    transcript,
)

KEY = bytes(range(32))
CHUNK = 64  # a tiny read buffer, so that frames larger than it take the separate-buffer path


def feed(reader: FrameReader, stream: bytes, cuts: list[int]) -> list[bytes]:
    """Push the stream through reader.buffer()/filled() in pieces no longer than the cuts, opening each frame."""
    opener = FrameOpener(KEY)
    frames: list[bytes] = []
    position, cut_index = 0, 0
    while position < len(stream):
        space = reader.buffer()
        assert len(space) > 0
        want = cuts[cut_index % len(cuts)] if cuts else len(stream)
        cut_index += 1
        size = min(len(space), want, len(stream) - position)
        space[:size] = stream[position : position + size]
        reader.filled(size)
        position += size
        while (body := reader.next_frame()) is not None:
            frames.append(opener.open(body))
    return frames


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=12),
    cuts=st.lists(st.integers(min_value=1, max_value=200), max_size=8),
)
def test_any_chunking_of_a_frame_stream_yields_the_payloads_in_order(payloads: list[bytes], cuts: list[int]) -> None:
    sealer = FrameSealer(KEY)
    stream = b"".join(header + body for header, body in map(sealer.seal, payloads))
    reader = FrameReader(max_payload_bytes=1000, chunk_bytes=CHUNK)
    assert feed(reader, stream, cuts) == payloads
    assert reader.buffered == 0 and reader.next_frame() is None


@settings(max_examples=300, deadline=None)
@given(stream=st.binary(max_size=600), cuts=st.lists(st.integers(min_value=1, max_value=100), max_size=6))
def test_random_bytes_give_frames_within_bounds_or_a_frame_error(stream: bytes, cuts: list[int]) -> None:
    reader = FrameReader(max_payload_bytes=200, chunk_bytes=CHUNK)
    position, cut_index = 0, 0
    try:
        while position < len(stream):
            space = reader.buffer()
            size = min(len(space), cuts[cut_index % len(cuts)] if cuts else len(stream), len(stream) - position)
            cut_index += 1
            space[:size] = stream[position : position + size]
            reader.filled(size)
            position += size
            while (body := reader.next_frame()) is not None:
                assert TAG_BYTES <= len(body) <= 200 + TAG_BYTES
    except FrameError as exc:
        assert "frame header announces" in str(exc)


def test_header_announcing_more_than_the_maximum_is_rejected_before_the_body_arrives() -> None:
    reader = FrameReader(max_payload_bytes=1 << 20)
    space = reader.buffer()
    space[: HEADER.size] = HEADER.pack((1 << 20) + TAG_BYTES + 1)
    reader.filled(HEADER.size)
    with pytest.raises(FrameError, match="announces 1048593 bytes"):
        reader.next_frame()


def test_take_returns_raw_bytes_and_leaves_the_rest_for_frames() -> None:
    sealer = FrameSealer(KEY)
    header, body = sealer.seal(b"payload")
    reader = FrameReader(max_payload_bytes=100, chunk_bytes=CHUNK)
    arrived = b"HELLO" + header + body[:3]
    reader.buffer()[: len(arrived)] = arrived
    reader.filled(len(arrived))
    assert reader.take(5) == b"HELLO"
    assert reader.next_frame() is None  # header seen, body incomplete
    space = reader.buffer()
    space[: len(body) - 3] = body[3:]
    reader.filled(len(body) - 3)
    assert FrameOpener(KEY).open(reader.next_frame()) == b"payload"
    with pytest.raises(FrameError, match="take"):
        reader.take(1)


@settings(max_examples=100, deadline=None)
@given(payloads=st.lists(st.binary(max_size=64), min_size=2, max_size=5), data=st.data())
def test_opener_rejects_tampered_replayed_reordered_and_foreign_frames(payloads: list[bytes], data) -> None:
    sealer = FrameSealer(KEY)
    bodies = [sealer.seal(payload)[1] for payload in payloads]

    tampered = bytearray(bodies[0])
    tampered[data.draw(st.integers(0, len(tampered) - 1))] ^= 1 << data.draw(st.integers(0, 7))
    with pytest.raises(FrameError, match="failed authentication"):
        FrameOpener(KEY).open(bytes(tampered))

    replaying = FrameOpener(KEY)
    assert replaying.open(bodies[0]) == payloads[0]
    with pytest.raises(FrameError):
        replaying.open(bodies[0])

    with pytest.raises(FrameError):
        FrameOpener(KEY).open(bodies[1])  # frame #1 where #0 is due

    with pytest.raises(FrameError):
        FrameOpener(bytes(32)).open(bodies[0])

    in_order = FrameOpener(KEY)
    assert [in_order.open(body) for body in bodies] == payloads


# -- handshake messages -----------------------------------------------------------------------------------

node_ids = st.integers(min_value=0, max_value=(1 << 32) - 1)


@given(
    dialer=node_ids,
    acceptor=node_ids,
    cluster=st.binary(min_size=1, max_size=255),
    nonce=st.binary(min_size=NONCE_BYTES, max_size=NONCE_BYTES),
)
def test_hello_round_trips(dialer: int, acceptor: int, cluster: bytes, nonce: bytes) -> None:
    encoded = encode_hello(dialer, acceptor, cluster, nonce)
    version, rest = parse_hello_head(encoded[: HELLO_HEAD.size])
    assert (version, HELLO_HEAD.size + rest) == (VERSION, len(encoded))
    hello = parse_hello(encoded)
    assert (hello.dialer_id, hello.acceptor_id, hello.cluster_id, hello.nonce) == (dialer, acceptor, cluster, nonce)


@settings(max_examples=500)
@given(data=st.binary(max_size=400))
def test_handshake_parsers_accept_or_raise_handshake_error_only(data: bytes) -> None:
    for parse in (parse_hello_head, parse_hello, parse_challenge_body):
        with contextlib.suppress(HandshakeError):
            parse(data)


@settings(max_examples=300)
@given(noise=st.binary(max_size=300), cluster=st.binary(min_size=1, max_size=20))
def test_hello_with_valid_magic_and_random_rest_parses_or_raises_handshake_error(noise: bytes, cluster: bytes) -> None:
    for data in (b"RFTK" + noise, encode_hello(1, 2, cluster, bytes(NONCE_BYTES))[: len(noise)] + noise):
        try:
            hello = parse_hello(data)
        except HandshakeError:
            continue
        assert len(hello.nonce) == NONCE_BYTES and len(hello.cluster_id) <= 255


def test_challenge_round_trips() -> None:
    encoded = encode_challenge(7, b"n" * NONCE_BYTES, b"p" * 32)
    assert encoded[0] == 0 and len(encoded) == 1 + CHALLENGE_BODY.size
    assert parse_challenge_body(encoded[1:]) == (7, b"n" * NONCE_BYTES, b"p" * 32)


def test_proofs_bind_secret_role_and_every_transcript_byte() -> None:
    auth = ClusterAuth(b"secret")
    shared = transcript(encode_hello(1, 2, b"raftka", os.urandom(NONCE_BYTES)), 2, os.urandom(NONCE_BYTES))
    dialer, acceptor = auth.dialer_proof(shared), auth.acceptor_proof(shared)
    assert not proofs_match(dialer, acceptor)  # a proof cannot be reflected back as the other role's
    assert not proofs_match(ClusterAuth(b"secreT").dialer_proof(shared), dialer)
    for index in range(len(shared)):
        changed = bytearray(shared)
        changed[index] ^= 1
        assert not proofs_match(auth.dialer_proof(bytes(changed)), dialer)
    assert proofs_match(ClusterAuth(b"secret").dialer_proof(shared), dialer)


def test_session_keys_differ_per_connection_and_match_on_both_ends() -> None:
    auth = ClusterAuth(b"secret")
    first = transcript(encode_hello(1, 2, b"raftka", b"a" * 32), 2, b"b" * 32)
    second = transcript(encode_hello(1, 2, b"raftka", b"c" * 32), 2, b"b" * 32)
    key = auth.session_key(b"a" * 32, b"b" * 32, first)
    assert key == ClusterAuth(b"secret").session_key(b"a" * 32, b"b" * 32, first) and len(key) == 32
    assert key != auth.session_key(b"c" * 32, b"b" * 32, second)
    assert key != ClusterAuth(b"other").session_key(b"a" * 32, b"b" * 32, first)


def test_empty_or_non_bytes_secret_is_refused_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="cluster secret is empty"):
        ClusterAuth(b"")
    with pytest.raises(TypeError, match="cluster secret must be bytes"):
        ClusterAuth("secret")  # type: ignore[arg-type]
