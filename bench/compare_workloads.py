"""The workloads of `bench.compare`, written once against the endpoint interface of `compare_clients`.

  produce     N producer *processes* (spawned; one connection each; at most
              ``in_flight`` unacknowledged messages each) send as fast as that
              allows for a fixed time after a common start signal; the
              aggregate rate is acknowledged messages / (last finish - first start)
  consume     one consumer reads a backlog from the start of the log
  paced       one producer at a fixed rate; send -> acknowledgement latencies
  end_to_end  one producer at a fixed rate and one consumer in the same
              process; send -> consumer-sees-it latencies (send time in the payload)
  failover    one producer at a fixed rate, connected to the survivors only,
              each message delivered with retries; a callback kill -9s the
              leader; result: seconds from the kill until the first message
              *sent after the kill* is acknowledged

Endpoints are picklable, so the same code runs in spawned processes.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import queue
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

STAMP = struct.Struct("<d")


class Endpoint(Protocol):
    system: str

    async def open_producer(self) -> Any: ...

    async def open_consumer(self, from_start: bool, push: bool = False) -> Any: ...


class Meter(Protocol):
    def start(self) -> None: ...

    def stop(self) -> None: ...


@dataclass
class ProduceResult:
    acked: int  # acknowledged during the measured window
    written: int  # everything this run put into the log (with warm-up messages)
    elapsed: float
    failed: int


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# ---------------------------------------------------------------- produce


async def _produce_window(endpoint: Endpoint, size: int, seconds: float, in_flight: int, gate) -> tuple:
    payload = b"p" * size
    producer = await endpoint.open_producer()
    try:
        await producer.deliver(payload)  # connection, metadata and leader known before the clock starts
        await asyncio.get_running_loop().run_in_executor(None, gate)
        flood = getattr(producer, "flood", None)  # a client's own high-throughput idiom, if it has one
        if flood is None:
            acked, sent, failed, started, finished = await _flood_with_futures(producer, payload, seconds, in_flight)
        else:
            acked, sent, failed, started, finished = await flood(payload, seconds, in_flight)
    finally:
        await producer.close()
    return acked, sent + 1, started, finished, failed


async def _flood_with_futures(producer: Any, payload: bytes, seconds: float, in_flight: int) -> tuple:
    """Send for `seconds` with at most `in_flight` unacknowledged, one future per message; then wait for them.

    Returns (acknowledged, sent, failed, start time, end time)."""
    slots = asyncio.Semaphore(in_flight)
    counts = {"acked": 0, "failed": 0}

    def done(future: asyncio.Future) -> None:
        slots.release()
        counts["failed" if future.cancelled() or future.exception() is not None else "acked"] += 1

    started = time.monotonic()
    stop = started + seconds
    sent = 0
    while time.monotonic() < stop:
        await slots.acquire()
        (await producer.send(payload)).add_done_callback(done)
        sent += 1
    for _ in range(in_flight):
        await slots.acquire()
    return counts["acked"], sent, counts["failed"], started, time.monotonic()


def _producer_process(endpoint: Endpoint, size: int, seconds: float, in_flight: int, ready, go, results) -> None:
    def gate() -> None:
        ready.put("ready")
        if not go.wait(180):
            raise TimeoutError("no start signal from the parent")

    try:
        results.put(asyncio.run(_produce_window(endpoint, size, seconds, in_flight, gate)))
    except BaseException as exc:  # noqa: BLE001 - the parent must hear of any failure (as text: not all pickle)
        error = RuntimeError(f"{endpoint.system} producer: {type(exc).__name__}: {exc}")
        ready.put(error)
        results.put(error)


def _gather(procs: list, channel, timeout: float) -> list:
    """One item per process from ``channel``; raises at once when a process reports an error or dies."""
    deadline = time.monotonic() + timeout
    items: list = []
    while len(items) < len(procs):
        try:
            item = channel.get(timeout=0.5)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                raise RuntimeError(f"a producer process exited with code {dead[0]}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(procs) - len(items)} producer processes silent for {timeout} s") from None
            continue
        if isinstance(item, BaseException):
            raise item
        items.append(item)
    return items


def produce(endpoint: Endpoint, size: int, seconds: float, in_flight: int, producers: int, meter: Meter) -> ProduceResult:
    ctx = multiprocessing.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_producer_process, args=(endpoint, size, seconds, in_flight, ready, go, results))
             for _ in range(producers)]
    for proc in procs:
        proc.start()
    try:
        _gather(procs, ready, 120)
        meter.start()
        go.set()
        outcomes = _gather(procs, results, seconds + 180)
        meter.stop()
    except BaseException:
        for proc in procs:
            proc.kill()
        raise
    finally:
        for proc in procs:
            proc.join(30)
            if proc.is_alive():
                proc.kill()
    acked = sum(o[0] for o in outcomes)
    elapsed = max(o[3] for o in outcomes) - min(o[2] for o in outcomes)
    return ProduceResult(acked, sum(o[1] for o in outcomes), elapsed, sum(o[4] for o in outcomes))


# ---------------------------------------------------------------- consume


async def consume(endpoint: Endpoint, expected: int, max_seconds: float) -> tuple[int, int, float]:
    """(messages, payload bytes, seconds) reading from the start until ``expected`` or the time limit."""
    consumer = await endpoint.open_consumer(from_start=True)
    try:
        count = nbytes = 0
        started = time.monotonic()
        while count < expected and time.monotonic() - started < max_seconds:
            for payload in await consumer.poll():
                count += 1
                nbytes += len(payload)
        return count, nbytes, time.monotonic() - started
    finally:
        await consumer.close()


# ---------------------------------------------------------------- fixed rate


async def _paced(rate: int, seconds: float, send_one: Callable[[], Any]) -> int:
    """Call ``await send_one()`` ``rate`` times a second for ``seconds`` (catching up after stalls)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    while (now := loop.time()) - started < seconds:
        due = int((now - started) * rate) + 1
        while sent < due:
            await send_one()
            sent += 1
        await asyncio.sleep(0.001)
    return sent


async def paced_acks(endpoint: Endpoint, size: int, rate: int, seconds: float) -> list[float]:
    """Sorted send -> acknowledgement latencies (seconds) at ``rate`` msg/s."""
    loop = asyncio.get_running_loop()
    payload = b"l" * size
    latencies: list[float] = []
    producer = await endpoint.open_producer()
    try:
        await producer.deliver(payload)

        async def send_one() -> None:
            sent_at = loop.time()
            (await producer.send(payload)).add_done_callback(
                lambda f: f.cancelled() or f.exception() or latencies.append(loop.time() - sent_at))

        sent = await _paced(rate, seconds, send_one)
        deadline = loop.time() + 10
        while len(latencies) < sent and loop.time() < deadline:
            await asyncio.sleep(0.01)
    finally:
        await producer.close()
    return sorted(latencies)


async def end_to_end(endpoint: Endpoint, size: int, rate: int, seconds: float, push: bool) -> list[float]:
    """Sorted send -> consumer-receives latencies (seconds) at ``rate`` msg/s."""
    loop = asyncio.get_running_loop()
    padding = b"e" * max(0, size - STAMP.size)
    latencies: list[float] = []
    consumer = await endpoint.open_consumer(from_start=False, push=push)
    producer = await endpoint.open_producer()
    try:
        await producer.deliver(STAMP.pack(0.0) + padding)

        async def read() -> None:
            while True:
                for payload in await consumer.poll():
                    sent_at = STAMP.unpack_from(payload)[0]
                    if sent_at:
                        latencies.append(loop.time() - sent_at)

        reader = asyncio.create_task(read())

        async def send_one() -> None:
            await producer.send(STAMP.pack(loop.time()) + padding)

        sent = await _paced(rate, seconds, send_one)
        deadline = loop.time() + 10
        while len(latencies) < sent and loop.time() < deadline and not reader.done():
            await asyncio.sleep(0.01)
        if reader.done():
            reader.result()  # re-raises what stopped the reader
        reader.cancel()
    finally:
        await producer.close()
        await consumer.close()
    return sorted(latencies)


# ---------------------------------------------------------------- failover


@dataclass
class FailoverResult:
    recovery_s: float | None  # None: no message sent after the kill was acknowledged in time
    acked_before_kill: int
    acked_after_kill: int
    unfinished: int


async def failover(endpoint: Endpoint, size: int, rate: int, before_s: float, max_wait_s: float,
                   kill: Callable[[], None]) -> FailoverResult:
    loop = asyncio.get_running_loop()
    payload = b"f" * size
    acked_at: list[float] = []
    kill_state: dict[str, float | None] = {"killed_at": None, "recovered_at": None}
    tasks: set[asyncio.Task] = set()
    producer = await endpoint.open_producer()
    try:
        await producer.deliver(payload)

        async def deliver_one() -> None:
            killed_at = kill_state["killed_at"]
            sent_after_kill = killed_at is not None
            await producer.deliver(payload)
            now = loop.time()
            acked_at.append(now)
            if sent_after_kill and kill_state["recovered_at"] is None:
                kill_state["recovered_at"] = now

        async def send_one() -> None:
            task = asyncio.create_task(deliver_one())
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        await _paced(rate, before_s, send_one)
        kill()
        killed_at = kill_state["killed_at"] = loop.time()
        started = loop.time()
        sent = 0
        while kill_state["recovered_at"] is None and loop.time() - killed_at < max_wait_s:
            due = int((loop.time() - started) * rate) + 1
            while sent < due:
                await send_one()
                sent += 1
            await asyncio.sleep(0.001)
        await _paced(rate, 1.0, send_one)  # writes keep flowing
        unfinished = len(tasks)
        for task in list(tasks):
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        await producer.close()
    recovered_at = kill_state["recovered_at"]
    return FailoverResult(None if recovered_at is None else recovered_at - killed_at,
                          sum(1 for a in acked_at if a < killed_at), sum(1 for a in acked_at if a >= killed_at),
                          unfinished)
