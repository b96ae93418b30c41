"""An asyncio TCP relay with per-direction gates: network partitions without root.

Each link (src, dst, upstream) is a listening port on 127.0.0.1 that src
uses to reach dst; connections are relayed to dst's real port. A gate per
directed pair (a, b) says whether bytes from a reach b. A closed gate behaves
like an iptables DROP of that direction: nothing is delivered and nothing is
reset; bytes wait in order and flow again when the gate opens (as TCP
retransmissions do after a partition heals). A new connection reaches the
upstream only once both directions are open (a handshake needs both), and
is aborted (RST) if the upstream refuses it. Connect itself always succeeds
at the proxy, so reachability must be judged by an exchange, not a connect.

The event loop runs in its own daemon thread; the public methods are
thread-safe and return once the change is in effect.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Collection, Hashable
from concurrent.futures import Future
from functools import partial
from typing import Any

_CHUNK = 64 * 1024


class FaultProxy:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fault-proxy", daemon=True)
        self._thread.start()
        self._servers: list[asyncio.Server] = []
        self._gates: dict[tuple[Hashable, Hashable], asyncio.Event] = {}
        self._blocked: frozenset[tuple[Hashable, Hashable]] = frozenset()
        self._connections: set[asyncio.Task] = set()
        self._closed = False

    def _call(self, coro: Any) -> Any:
        if self._closed:
            raise RuntimeError("the fault proxy is closed")
        future: Future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout=10)

    def add_link(self, src: Hashable, dst: Hashable, upstream: tuple[str, int]) -> int:
        """A new listening port through which src reaches upstream (dst's server)."""
        return self._call(self._add_link(src, dst, upstream))

    def set_blocked(self, pairs: Collection[tuple[Hashable, Hashable]]) -> None:
        """Close exactly these directed (from, to) gates; open all others."""
        self._call(self._set_blocked(frozenset(pairs)))

    @property
    def blocked(self) -> frozenset[tuple[Hashable, Hashable]]:
        return self._blocked

    def close(self) -> None:
        if self._closed:
            return
        self._call(self._shutdown())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    # ------------------------------------------------------------- loop side

    def _gate(self, a: Hashable, b: Hashable) -> asyncio.Event:
        gate = self._gates.get((a, b))
        if gate is None:
            gate = self._gates[(a, b)] = asyncio.Event()
            if (a, b) not in self._blocked:
                gate.set()
        return gate

    async def _add_link(self, src: Hashable, dst: Hashable, upstream: tuple[str, int]) -> int:
        server = await asyncio.start_server(partial(self._accept, src, dst, upstream), self.host, 0)
        self._servers.append(server)
        return server.sockets[0].getsockname()[1]

    async def _set_blocked(self, pairs: frozenset[tuple[Hashable, Hashable]]) -> None:
        self._blocked = pairs
        for pair, gate in self._gates.items():
            if pair in pairs:
                gate.clear()
            else:
                gate.set()

    async def _shutdown(self) -> None:
        for server in self._servers:
            server.close()
        for task in list(self._connections):
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()

    async def _accept(self, src: Hashable, dst: Hashable, upstream: tuple[str, int],
                      reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            await self._relay(src, dst, upstream, reader, writer)
        finally:
            self._connections.discard(task)

    async def _relay(self, src: Hashable, dst: Hashable, upstream: tuple[str, int],
                     reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        forward, backward = self._gate(src, dst), self._gate(dst, src)
        up_writer = None
        pumps: list[asyncio.Task] = []
        try:
            await forward.wait()
            await backward.wait()
            try:
                up_reader, up_writer = await asyncio.open_connection(*upstream)
            except OSError:
                writer.transport.abort()  # like a RST from a host with nothing listening
                return
            pumps = [asyncio.create_task(_pump(reader, up_writer, forward)),
                     asyncio.create_task(_pump(up_reader, writer, backward))]
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_EXCEPTION)
            if any(task.exception() is not None for task in done):
                writer.transport.abort()  # a reset on one side resets the other
                up_writer.transport.abort()
        except asyncio.CancelledError:
            writer.transport.abort()
            if up_writer is not None:
                up_writer.transport.abort()
            raise
        finally:
            for task in pumps:
                task.cancel()
            writer.close()
            if up_writer is not None:
                up_writer.close()


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, gate: asyncio.Event) -> None:
    """Copy reader to writer, holding bytes while the gate is closed; half-close at EOF."""
    while data := await reader.read(_CHUNK):
        await gate.wait()
        writer.write(data)
        await writer.drain()
    await gate.wait()
    if writer.can_write_eof():
        writer.write_eof()
