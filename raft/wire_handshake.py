"""Handshake of the broker-to-broker Raft wire: message codecs, mutual proofs, session key.

Every TCP connection carries frames one way, from the node that dialed it (dialer) to the
node that accepted it (acceptor); the reverse direction is a second connection with its own
handshake, so each direction of a node pair has its own session key. On connect:

    dialer   -> acceptor  HELLO      "RFTK", version, dialer id, acceptor id the dialer meant,
                                     cluster id, dialer nonce (32 random bytes)
    acceptor -> dialer    CHALLENGE  status; if OK: acceptor id, acceptor nonce, acceptor proof
    dialer   -> acceptor  PROOF      dialer proof
    acceptor -> dialer    VERDICT    status

    transcript      = HELLO bytes || acceptor id || acceptor nonce
    proof(role)     = HMAC-SHA256(auth key, role label || transcript), auth key = HKDF(secret)
    session key     = HKDF-SHA256(secret, salt = both nonces, info = label || SHA-256(transcript))

Both proofs bind the cluster id, both node ids, both fresh nonces and the direction, so a
proof can be neither replayed nor reflected; a peer without the secret learns nothing it can
use and gets no frame accepted. Parsers raise HandshakeError on anything malformed. Pure
code, no I/O; nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass
from enum import IntEnum

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"RFTK"
VERSION = 1
NONCE_BYTES = 32
PROOF_BYTES = 32
MAX_NODE_ID = (1 << 32) - 1
MAX_CLUSTER_ID_BYTES = 255

HELLO_HEAD = struct.Struct(">4sBIIB")  # magic, version, dialer id, acceptor id, cluster id length
CHALLENGE_BODY = struct.Struct(f">I{NONCE_BYTES}s{PROOF_BYTES}s")  # follows an OK status byte
MAX_HANDSHAKE_BYTES = HELLO_HEAD.size + MAX_CLUSTER_ID_BYTES + NONCE_BYTES + PROOF_BYTES

_ACCEPTOR_ROLE = b"raftka transport v1 acceptor proof\x00"
_DIALER_ROLE = b"raftka transport v1 dialer proof\x00"
_AUTH_KEY_INFO = b"raftka transport v1 auth key"
_SESSION_KEY_INFO = b"raftka transport v1 dialer-to-acceptor frame key\x00"


class HandshakeError(Exception):
    """The handshake failed; the message says why in operator terms."""


class Status(IntEnum):
    """First byte of CHALLENGE and the VERDICT byte."""

    OK = 0
    UNSUPPORTED_VERSION = 1
    CLUSTER_MISMATCH = 2
    UNKNOWN_DIALER = 3
    WRONG_ACCEPTOR = 4
    BAD_PROOF = 5


STATUS_MEANING = {
    Status.UNSUPPORTED_VERSION: "peer speaks another transport version",
    Status.CLUSTER_MISMATCH: "peer belongs to another cluster id",
    Status.UNKNOWN_DIALER: "peer does not list our node id among its peers",
    Status.WRONG_ACCEPTOR: "that address is not the node we meant (peer address list out of date?)",
    Status.BAD_PROOF: "peer rejected our proof: wrong cluster secret?",
}


def describe_status(code: int) -> str:
    try:
        return STATUS_MEANING[Status(code)]
    except (ValueError, KeyError):
        return f"peer answered with unknown status {code}"


def check_node_id(node_id: object) -> int:
    if not isinstance(node_id, int) or isinstance(node_id, bool) or not 0 <= node_id <= MAX_NODE_ID:
        raise ValueError(f"node id must be an int in 0..{MAX_NODE_ID}, got {node_id!r}")
    return node_id


def encode_cluster_id(cluster_id: str) -> bytes:
    if not isinstance(cluster_id, str) or not cluster_id:
        raise ValueError(f"cluster_id must be a non-empty str, got {cluster_id!r}")
    encoded = cluster_id.encode()
    if len(encoded) > MAX_CLUSTER_ID_BYTES:
        raise ValueError(f"cluster_id is {len(encoded)} bytes in UTF-8; at most {MAX_CLUSTER_ID_BYTES} allowed")
    return encoded


@dataclass(frozen=True)
class Hello:
    version: int
    dialer_id: int
    acceptor_id: int
    cluster_id: bytes
    nonce: bytes


def encode_hello(dialer_id: int, acceptor_id: int, cluster_id: bytes, nonce: bytes) -> bytes:
    return HELLO_HEAD.pack(MAGIC, VERSION, dialer_id, acceptor_id, len(cluster_id)) + cluster_id + nonce


def parse_hello_head(head: bytes) -> tuple[int, int]:
    """Check magic and return (version, bytes of HELLO still to read after the head)."""
    if len(head) != HELLO_HEAD.size:
        raise HandshakeError(f"HELLO head must be {HELLO_HEAD.size} bytes, got {len(head)}")
    magic, version, _dialer, _acceptor, cluster_id_len = HELLO_HEAD.unpack(head)
    if magic != MAGIC:
        raise HandshakeError("not a raftka peer (bad magic)")
    return version, cluster_id_len + NONCE_BYTES


def parse_hello(data: bytes) -> Hello:
    """Parse a complete HELLO of our version."""
    version, rest = parse_hello_head(data[: HELLO_HEAD.size])
    if version != VERSION:
        raise HandshakeError(f"unsupported transport version {version} (we speak {VERSION})")
    if len(data) != HELLO_HEAD.size + rest:
        raise HandshakeError(f"HELLO must be {HELLO_HEAD.size + rest} bytes, got {len(data)}")
    _magic, _version, dialer_id, acceptor_id, cluster_id_len = HELLO_HEAD.unpack_from(data)
    cluster_id = data[HELLO_HEAD.size : HELLO_HEAD.size + cluster_id_len]
    return Hello(version, dialer_id, acceptor_id, cluster_id, data[HELLO_HEAD.size + cluster_id_len :])


def encode_challenge(acceptor_id: int, nonce: bytes, proof: bytes) -> bytes:
    return bytes([Status.OK]) + CHALLENGE_BODY.pack(acceptor_id, nonce, proof)


def parse_challenge_body(body: bytes) -> tuple[int, bytes, bytes]:
    """(acceptor id, acceptor nonce, acceptor proof) from the bytes after an OK status."""
    if len(body) != CHALLENGE_BODY.size:
        raise HandshakeError(f"CHALLENGE body must be {CHALLENGE_BODY.size} bytes, got {len(body)}")
    return CHALLENGE_BODY.unpack(body)


def transcript(hello: bytes, acceptor_id: int, acceptor_nonce: bytes) -> bytes:
    return hello + struct.pack(">I", acceptor_id) + acceptor_nonce


def _hkdf(secret: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(secret)


class ClusterAuth:
    """Proofs and session keys derived from the cluster secret."""

    __slots__ = ("_secret", "_auth_key")

    def __init__(self, secret: bytes) -> None:
        if not isinstance(secret, (bytes, bytearray)):
            raise TypeError(f"cluster secret must be bytes, got {type(secret).__name__}")
        if not secret:
            raise ValueError(
                "cluster secret is empty: every broker must be started with the same non-empty "
                "cluster secret (it authenticates and encrypts Raft traffic between brokers)"
            )
        self._secret = bytes(secret)
        self._auth_key = _hkdf(self._secret, None, _AUTH_KEY_INFO)

    def acceptor_proof(self, transcript_bytes: bytes) -> bytes:
        return hmac.new(self._auth_key, _ACCEPTOR_ROLE + transcript_bytes, hashlib.sha256).digest()

    def dialer_proof(self, transcript_bytes: bytes) -> bytes:
        return hmac.new(self._auth_key, _DIALER_ROLE + transcript_bytes, hashlib.sha256).digest()

    def session_key(self, dialer_nonce: bytes, acceptor_nonce: bytes, transcript_bytes: bytes) -> bytes:
        """Key of the frames this connection carries (dialer to acceptor)."""
        info = _SESSION_KEY_INFO + hashlib.sha256(transcript_bytes).digest()
        return _hkdf(self._secret, dialer_nonce + acceptor_nonce, info)


def proofs_match(expected: bytes, received: bytes) -> bool:
    return hmac.compare_digest(expected, received)
