"""Frames of the broker-to-broker Raft wire after the handshake: sealing, opening and stream decoding.

A frame is ``u32 big-endian length`` followed by that many bytes of AES-256-GCM output
(ciphertext + 16-byte tag) of one payload. The GCM nonce is the frame's sequence number on
its connection (0, 1, 2, ...), never sent: a replayed, reordered, dropped, truncated or
tampered frame fails authentication at the receiver. The session key is fresh per
connection (see wire_handshake.py), so frames captured from one connection are useless on
another. Pure code, no I/O.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HEADER = struct.Struct(">I")
TAG_BYTES = 16
MAX_FRAME_LIMIT = (1 << 32) - 1 - TAG_BYTES  # what a u32 length can carry
READ_CHUNK_BYTES = 256 << 10
SPARE_LIMIT_BYTES = 4 << 20  # a large-frame buffer up to this size is kept for the next large frame


class FrameError(Exception):
    """The byte stream is not a valid frame sequence; the connection must be dropped."""


def check_max_frame_bytes(max_frame_bytes: int) -> int:
    if not isinstance(max_frame_bytes, int) or not 0 < max_frame_bytes <= MAX_FRAME_LIMIT:
        raise ValueError(f"max_frame_bytes must be an int in 1..{MAX_FRAME_LIMIT}, got {max_frame_bytes!r}")
    return max_frame_bytes


class FrameSealer:
    """Encrypts the payloads one connection sends, numbering them 0, 1, 2, ..."""

    __slots__ = ("_aead", "_sequence")

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._sequence = 0

    def seal(self, payload: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
        """Return (header, sealed body) of the next frame."""
        body = self._aead.encrypt(self._sequence.to_bytes(12, "big"), payload, None)
        self._sequence += 1
        return HEADER.pack(len(body)), body


class FrameOpener:
    """Decrypts the frames one connection receives, expecting them numbered 0, 1, 2, ..."""

    __slots__ = ("_aead", "_sequence")

    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)
        self._sequence = 0

    def open(self, body: bytes | bytearray | memoryview) -> bytes:
        try:
            payload = self._aead.decrypt(self._sequence.to_bytes(12, "big"), body, None)
        except InvalidTag:
            raise FrameError(
                f"frame #{self._sequence} failed authentication (tampered, replayed, reordered or foreign)"
            ) from None
        self._sequence += 1
        return payload


class FrameReader:
    """Incremental decoder of length-prefixed frames, shaped for asyncio.BufferedProtocol.

    ``buffer()`` hands out writable space (the socket reads straight into it), ``filled(n)``
    records what arrived, ``take(n)`` removes raw bytes (handshake phase) and ``next_frame()``
    removes one complete frame body (frame phase). Frames that fit the read chunk are decoded
    in place; a larger frame is read straight into a buffer of its size (kept for the next large
    frame up to SPARE_LIMIT_BYTES), so a 16 MiB frame is neither re-copied per read nor split.

    The internal bytearrays are never resized (the event loop may still hold a view of them).
    """

    __slots__ = ("_max_body", "_buf", "_start", "_end", "_big", "_big_filled", "_spare")

    def __init__(self, max_payload_bytes: int, chunk_bytes: int = READ_CHUNK_BYTES) -> None:
        if chunk_bytes < 2 * HEADER.size:
            raise ValueError("chunk_bytes too small")
        self._max_body = check_max_frame_bytes(max_payload_bytes) + TAG_BYTES
        self._buf = bytearray(chunk_bytes)
        self._start = 0
        self._end = 0
        self._big: memoryview | None = None
        self._big_filled = 0
        self._spare = bytearray()

    @property
    def buffered(self) -> int:
        """Bytes received but not yet taken (those of a large frame in progress included)."""
        return self._end - self._start + self._big_filled

    def buffer(self) -> memoryview:
        """Writable space for the next read; never empty."""
        if self._big is not None:
            return self._big[self._big_filled :]
        if self._end == len(self._buf):
            pending = self._end - self._start
            if pending == len(self._buf):
                # Only possible in the raw (handshake) phase; callers bound that phase far lower.
                raise FrameError("receive buffer full before the handshake completed")
            self._buf[:pending] = self._buf[self._start : self._end]
            self._start, self._end = 0, pending
        return memoryview(self._buf)[self._end :]

    def filled(self, nbytes: int) -> None:
        if self._big is not None:
            self._big_filled += nbytes
        else:
            self._end += nbytes

    def take(self, nbytes: int) -> bytes:
        """Remove and return exactly nbytes raw bytes (the caller checked ``buffered``)."""
        if self._big is not None or nbytes > self._end - self._start:
            raise FrameError(f"take({nbytes}) with only {self.buffered} bytes buffered")
        data = bytes(self._buf[self._start : self._start + nbytes])
        self._start += nbytes
        return data

    def next_frame(self) -> memoryview | None:
        """Remove and return the next complete frame body, or None until one has fully arrived.

        The returned view points into a reused buffer: use it before the next ``buffer()``.
        Raises FrameError as soon as a header announces an impossible length.
        """
        big = self._big
        if big is not None:
            if self._big_filled < len(big):
                return None
            self._big, self._big_filled = None, 0
            return big
        available = self._end - self._start
        if available < HEADER.size:
            return None
        (length,) = HEADER.unpack_from(self._buf, self._start)
        if length < TAG_BYTES or length > self._max_body:
            raise FrameError(
                f"frame header announces {length} bytes; allowed {TAG_BYTES}..{self._max_body} "
                "(is max_frame_bytes the same on every broker?)"
            )
        body_start = self._start + HEADER.size
        if HEADER.size + length <= len(self._buf):
            if available - HEADER.size < length:
                return None
            self._start = body_start + length
            return memoryview(self._buf)[body_start : self._start]
        if length > len(self._spare):
            storage = bytearray(length)
            if length <= SPARE_LIMIT_BYTES:
                self._spare = storage
        else:
            storage = self._spare
        big = memoryview(storage)[:length]
        present = available - HEADER.size  # < length: the frame is larger than the whole buffer
        big[:present] = self._buf[body_start : self._end]
        self._start = self._end = 0
        self._big, self._big_filled = big, present
        return None
