"""Raft messages between replicas of one group, and their compact binary wire form.

A message is a plain `Message` object; `encode_message` / `decode_message` turn it
into bytes and back with `struct` only (no pickle: peers never reach an
unpickler).  Wire layout, all integers big-endian:

    u8  type            (MessageType)
    u16 group-id length, group-id bytes (utf-8)
    i64 src, i64 dst    (replica ids, see `replica`)
    u64 term
    u64 index           (prev_index for APPEND, last_index for votes, match for responses)
    u64 log_term        (prev_term for APPEND, last_term for votes)
    u64 commit
    u64 context         (heartbeat tick, snapshot cursor length, ...)
    u8  flags           (bit0 reject, bit1 transfer, bit2 final)
    u32 entry count, then per entry: u64 term, u8 kind, u32 length, data
    u32 payload length, payload  (snapshot chunk / cursor)
    u32 config length, config    (the group's membership at a snapshot's index)

Several messages for the same peer are packed into one transport frame with
`encode_frame` (u32 count, then u32 length + message each), so heartbeats of
many groups cost one frame.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass, field


class MessageType(enum.IntEnum):
    PREVOTE = 1
    PREVOTE_RESP = 2
    VOTE = 3
    VOTE_RESP = 4
    APPEND = 5
    APPEND_RESP = 6
    HEARTBEAT = 7
    HEARTBEAT_RESP = 8
    SNAPSHOT = 9
    SNAPSHOT_RESP = 10
    TIMEOUT_NOW = 11
    READ_INDEX = 12  # host level: a follower asks the leader for its commit index (see host.read_index)
    READ_INDEX_RESP = 13


class MessageDecodeError(ValueError):
    """Bytes from a peer that are not a well-formed Raft message."""


ENTRY_NORMAL = 0
ENTRY_CONFIG = 1  # data is an encoded `membership.Membership`


@dataclass(slots=True)
class Entry:
    term: int
    data: bytes
    kind: int = ENTRY_NORMAL


@dataclass(slots=True)
class Message:
    type: MessageType
    group: str
    src: int
    dst: int
    term: int
    index: int = 0
    log_term: int = 0
    commit: int = 0
    context: int = 0
    reject: bool = False
    transfer: bool = False
    final: bool = False
    entries: list[Entry] = field(default_factory=list)
    payload: bytes = b""
    config: bytes = b""


_HEAD = struct.Struct(">B H")
_BODY = struct.Struct(">q q Q Q Q Q Q B I")
_ENTRY = struct.Struct(">Q B I")
_U32 = struct.Struct(">I")

_FLAG_REJECT = 1
_FLAG_TRANSFER = 2
_FLAG_FINAL = 4


def encode_message(msg: Message) -> bytes:
    group = msg.group.encode()
    flags = (_FLAG_REJECT if msg.reject else 0) | (_FLAG_TRANSFER if msg.transfer else 0) | (
        _FLAG_FINAL if msg.final else 0
    )
    parts = [
        _HEAD.pack(msg.type, len(group)),
        group,
        _BODY.pack(msg.src, msg.dst, msg.term, msg.index, msg.log_term, msg.commit, msg.context, flags,
                   len(msg.entries)),
    ]
    for entry in msg.entries:
        parts.append(_ENTRY.pack(entry.term, entry.kind, len(entry.data)))
        parts.append(entry.data)
    parts.append(_U32.pack(len(msg.payload)))
    parts.append(msg.payload)
    parts.append(_U32.pack(len(msg.config)))
    parts.append(msg.config)
    return b"".join(parts)


_TYPES = {t.value: t for t in MessageType}
_GROUPS: dict[bytes, str] = {}  # group ids seen (decoded once; bounded by the groups a broker hosts)


def decode_message(buf: bytes | memoryview) -> Message:
    view = memoryview(buf)
    try:
        mtype, glen = _HEAD.unpack_from(view, 0)
        pos = _HEAD.size
        if pos + glen > len(view):
            raise MessageDecodeError("truncated group id")
        raw = bytes(view[pos:pos + glen])
        group = _GROUPS.get(raw)
        if group is None:
            group = raw.decode()
            if len(_GROUPS) < 1 << 17:
                _GROUPS[raw] = group
        pos += glen
        src, dst, term, index, log_term, commit, context, flags, count = _BODY.unpack_from(view, pos)
        pos += _BODY.size
        message_type = _TYPES.get(mtype)
        if message_type is None:
            raise MessageDecodeError(f"unknown message type {mtype}")
        if count > len(view):
            raise MessageDecodeError(f"entry count {count} exceeds message size")
        entries = []
        for _ in range(count):
            eterm, ekind, elen = _ENTRY.unpack_from(view, pos)
            pos += _ENTRY.size
            if pos + elen > len(view):
                raise MessageDecodeError("truncated entry")
            if ekind not in (ENTRY_NORMAL, ENTRY_CONFIG):
                raise MessageDecodeError(f"unknown entry kind {ekind}")
            entries.append(Entry(eterm, bytes(view[pos:pos + elen]), ekind))
            pos += elen
        (plen,) = _U32.unpack_from(view, pos)
        pos += _U32.size
        if pos + plen > len(view):
            raise MessageDecodeError("truncated payload")
        payload = bytes(view[pos:pos + plen])
        pos += plen
        (clen,) = _U32.unpack_from(view, pos)
        pos += _U32.size
        if pos + clen != len(view):
            raise MessageDecodeError("config length does not match message size")
        config = bytes(view[pos:pos + clen])
        return Message(message_type, group, src, dst, term, index, log_term, commit, context,
                       bool(flags & _FLAG_REJECT), bool(flags & _FLAG_TRANSFER), bool(flags & _FLAG_FINAL),
                       entries, payload, config)
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, MessageDecodeError):
            raise
        raise MessageDecodeError(f"malformed raft message: {exc}") from None


def encode_frame(messages: list[bytes]) -> bytes:
    """Pack already-encoded messages for one peer into one transport frame."""
    parts = [_U32.pack(len(messages))]
    for m in messages:
        parts.append(_U32.pack(len(m)))
        parts.append(m)
    return b"".join(parts)


def encode_frames(messages: list[bytes], max_frame_bytes: int) -> list[bytes]:
    """Pack already-encoded messages for one peer into frames of at most `max_frame_bytes` each, in order
    (a catching-up peer may be owed more appends from all its groups than one frame carries)."""
    frames: list[bytes] = []
    start, size = 0, 4
    for i, m in enumerate(messages):
        need = 4 + len(m)
        if i > start and size + need > max_frame_bytes:
            frames.append(encode_frame(messages[start:i]))
            start, size = i, 4
        size += need
    if start < len(messages):
        frames.append(encode_frame(messages[start:]))
    return frames


def decode_frame(frame: bytes | memoryview) -> list[Message]:
    view = memoryview(frame)
    try:
        (count,) = _U32.unpack_from(view, 0)
        pos = 4
        if count > len(view):
            raise MessageDecodeError("message count exceeds frame size")
        out = []
        for _ in range(count):
            (length,) = _U32.unpack_from(view, pos)
            pos += 4
            if pos + length > len(view):
                raise MessageDecodeError("truncated message in frame")
            out.append(decode_message(view[pos:pos + length]))
            pos += length
        if pos != len(view):
            raise MessageDecodeError("trailing bytes after last message")
        return out
    except struct.error as exc:
        raise MessageDecodeError(f"malformed raft frame: {exc}") from None
