"""The producer's buffer_memory bound, waited on from the event loop and from user threads."""

import asyncio
import threading
import time

import pytest

from raftka.client.budget import ByteBudget
from raftka.client.errors import BufferFullError


def test_try_acquire_and_release():
    budget = ByteBudget(100)
    assert budget.try_acquire(60) and budget.try_acquire(40)
    assert not budget.try_acquire(1)
    budget.release(50)
    assert budget.try_acquire(50) and budget.used == 100


def test_an_oversized_record_is_admitted_when_nothing_is_buffered():
    budget = ByteBudget(100)
    assert budget.try_acquire(500)
    assert not budget.try_acquire(1)


def test_async_waiters_are_served_in_order_when_space_frees():
    async def go():
        budget = ByteBudget(100)
        assert budget.try_acquire(100)
        order = []

        async def want(name, size):
            await budget.acquire(size, timeout_s=5)
            order.append(name)

        tasks = [asyncio.create_task(want("a", 60)), asyncio.create_task(want("b", 30))]
        await asyncio.sleep(0.01)
        assert not budget.try_acquire(1)  # waiters queue ahead of newcomers
        budget.release(100)
        await asyncio.gather(*tasks)
        assert order == ["a", "b"] and budget.used == 90

    asyncio.run(go())


def test_async_acquire_times_out_with_buffer_full_error():
    async def go():
        budget = ByteBudget(10)
        budget.try_acquire(10)
        with pytest.raises(BufferFullError, match="10 of 10 bytes"):
            await budget.acquire(5, timeout_s=0.05)
        budget.release(10)
        assert budget.try_acquire(10)  # the timed-out waiter left no trace

    asyncio.run(go())


def test_blocking_acquire_waits_for_a_release_from_the_loop_thread():
    budget = ByteBudget(10)
    budget.try_acquire(10)
    timer = threading.Timer(0.05, budget.release, args=(10,))
    timer.start()
    started = time.monotonic()
    budget.acquire_blocking(8, timeout_s=5)
    assert 0.04 < time.monotonic() - started < 2 and budget.used == 8
    with pytest.raises(BufferFullError):
        budget.acquire_blocking(5, timeout_s=0.05)
