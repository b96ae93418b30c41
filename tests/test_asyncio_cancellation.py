"""raftka waits under a deadline with `asyncio.timeout`, never with `asyncio.wait_for`.

On Python 3.11, `wait_for` loses a cancellation that arrives just as the awaited work completes: it returns
the result instead of raising CancelledError, so a task being stopped runs on. That is how a broker's
shutdown hung for an hour: its Kafka-listener registrar was cancelled as its metadata proposal committed
(`Broker.propose_metadata` waited with `wait_for`), kept looping, and `stop()` waited for it forever.
`asyncio.timeout` keeps every cancellation.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import uvloop

ROOT = Path(__file__).resolve().parent.parent
SOURCES = [ROOT / name for name in ("node", "raft", "client", "storage")]


async def cancellations_lost(wait_with: str) -> int:
    """Cancel a task over and over as the future it waits for completes; how many cancellations it ignored."""
    loop = asyncio.get_running_loop()
    lost = 0
    for attempt in range(200):
        done = loop.create_future()

        async def work() -> int:
            return await done

        async def waiter() -> int:
            if wait_with == "wait_for":
                return await asyncio.wait_for(work(), 10)
            async with asyncio.timeout(10):
                return await work()

        task = asyncio.create_task(waiter())
        for _ in range(attempt % 4):
            await asyncio.sleep(0)
        done.set_result(1)
        for _ in range(attempt // 4 % 3):
            await asyncio.sleep(0)
        requested = task.cancel()  # False when the task had already finished
        try:
            await task
            lost += requested
        except asyncio.CancelledError:
            pass
    return lost


def test_timeout_keeps_every_cancellation_where_wait_for_loses_some():
    assert uvloop.run(cancellations_lost("timeout")) == 0
    if sys.version_info < (3, 12):  # wait_for is built on timeout from 3.12 on
        assert uvloop.run(cancellations_lost("wait_for")) > 0


def test_no_module_waits_with_wait_for():
    found = [f"{path.relative_to(ROOT)}:{number}"
             for source in SOURCES for path in sorted(source.rglob("*.py"))
             for number, line in enumerate(path.read_text().splitlines(), 1) if "asyncio.wait_for(" in line]
    assert not found, f"use asyncio.timeout / timeout_at (see this module's docstring): {found}"
