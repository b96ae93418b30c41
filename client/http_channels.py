"""Keep-alive HTTP/1.1 connections to brokers: one request at a time per connection, idle ones reused.

``Channels.take_idle`` gives a live idle connection to a broker, if the pool has one, and
``Channels.connect`` a new TCP (or TLS) connection. ``Channel.exchange`` writes one request and waits for its answer
(``http_answers`` reads it). A connection goes back to the pool only after an answer that lets it
stay open; one whose exchange failed or was cancelled is closed, so a late answer can never be taken
for the next request's. Idle connections are closed after ``IDLE_S``, well before a broker would
close them (aiohttp's server: 75 s). Errors are the socket's own (OSError, ssl.SSLError,
TimeoutError), ``ChannelLost`` and ``MalformedAnswer``; ``connection`` maps them to client errors.
"""

from __future__ import annotations

import asyncio
import ssl
import time

from raftka.client.http_answers import AnswerReader, HttpAnswer, MalformedAnswer

__all__ = ["IDLE_S", "Channel", "ChannelLost", "Channels"]

IDLE_S = 30.0


class ChannelLost(Exception):
    """The connection closed (or was reset) before the answer was complete."""


class Channel(asyncio.Protocol):
    """One connection; at most one request outstanding."""

    def __init__(self) -> None:
        self._transport: asyncio.Transport | None = None
        self._reader = AnswerReader()
        self._waiter: asyncio.Future[HttpAnswer] | None = None
        self.closed = False
        self.idle_since = 0.0

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's transports are not asyncio.Transport

    def data_received(self, data: bytes) -> None:
        try:
            answers = self._reader.feed(data)
        except MalformedAnswer as exc:
            self._fail(exc)
            return
        for answer in answers:
            waiter = self._waiter
            if waiter is None or waiter.done():
                self._fail(MalformedAnswer(f"an answer (status {answer.status}) to no request"))
                return
            self._waiter = None
            waiter.set_result(answer)

    def eof_received(self) -> bool:
        try:
            answer = self._reader.end()
        except MalformedAnswer as exc:
            self._fail(exc)
            return False
        if answer is not None and self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(answer)
            self._waiter = None
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else (str(exc) if exc else "")
            waiter.set_exception(ChannelLost(reason or "the broker closed the connection"))

    # --
    def _fail(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    async def exchange(self, request: bytes) -> HttpAnswer:
        """Write one request (its head and body) and return its answer. The caller closes the channel if
        this raises or is cancelled."""
        if self.closed or self._transport is None:
            raise ChannelLost("the connection is closed")
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        self._transport.write(request)
        return await waiter

    @property
    def reusable(self) -> bool:
        return not self.closed and self._waiter is None and self._reader.idle


class Channels:
    """Per base URL, the idle keep-alive channels; plus every open one, to close them all."""

    def __init__(self, ssl_context: ssl.SSLContext | None) -> None:
        self._ssl = ssl_context  # None: the system's CAs, loaded at the first https connection
        self._idle: dict[tuple[str, int, bool], list[Channel]] = {}
        self._open: set[Channel] = set()

    def take_idle(self, host: str, port: int, tls: bool) -> Channel | None:
        """A live idle channel to the broker, if there is one."""
        idle = self._idle.get((host, port, tls))
        now = time.monotonic()
        while idle:
            channel = idle.pop()
            if channel.reusable and now - channel.idle_since < IDLE_S:
                return channel
            self.discard(channel)
        return None

    async def connect(self, host: str, port: int, tls: bool) -> Channel:
        """A new channel to the broker (raises what connecting raises)."""
        loop = asyncio.get_running_loop()
        if tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()  # the system's CAs
            _, channel = await loop.create_connection(Channel, host, port, ssl=self._ssl, server_hostname=host)
        else:
            _, channel = await loop.create_connection(Channel, host, port)
        self._open.add(channel)
        return channel

    def release(self, channel: Channel, host: str, port: int, tls: bool, answer: HttpAnswer) -> None:
        """After an exchange that returned ``answer``: keep the channel for reuse, or close it."""
        if answer.keep_alive and channel.reusable:
            channel.idle_since = time.monotonic()
            self._idle.setdefault((host, port, tls), []).append(channel)
        else:
            self.discard(channel)

    def discard(self, channel: Channel) -> None:
        """Close the channel: expired, not reusable, or its exchange failed or was cancelled (its state is unknown)."""
        channel.close()
        self._open.discard(channel)

    def close(self) -> None:
        for channel in list(self._open):
            channel.close()
        self._open.clear()
        self._idle.clear()
