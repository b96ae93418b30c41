"""The blocking bridge: a private loop thread, results and errors, callbacks on the calling thread."""

import asyncio
import threading

import pytest

from raftka.client.loop_thread import LoopThread, call_user


@pytest.fixture
def thread():
    t = LoopThread("test-loop")
    yield t
    t.close()


def test_run_returns_results_and_raises_errors(thread):
    async def add(a, b):
        await asyncio.sleep(0)
        return a + b

    async def fail():
        raise KeyError("nope")

    assert thread.run(add(2, 3)) == 5
    with pytest.raises(KeyError):
        thread.run(fail())
    assert thread.call(lambda: threading.current_thread().name) == "test-loop"


def test_user_callbacks_run_in_the_calling_thread_and_may_reenter_the_client(thread):
    seen = []

    def callback(value):
        seen.append((threading.current_thread() is threading.main_thread(), value))
        return thread.run(asyncio.sleep(0, result=value * 10))  # a blocking client call inside the callback

    async def core():
        return await call_user(callback, 4)

    assert thread.run(core()) == 40
    assert seen == [(True, 4)]


def test_callback_errors_propagate_to_the_core_and_the_caller(thread):
    def callback():
        raise ValueError("bad callback")

    async def core():
        await call_user(callback)

    with pytest.raises(ValueError, match="bad callback"):
        thread.run(core())


def test_without_a_blocked_caller_callbacks_run_inline_and_may_be_async():
    async def async_callback(x):
        return x + 1

    async def go():
        return await call_user(async_callback, 1), await call_user(lambda x: x * 2, 3)

    assert asyncio.run(go()) == (2, 6)


def test_tasks_spawned_during_a_call_do_not_post_callbacks_after_it(thread):
    done = threading.Event()

    async def later():
        await asyncio.sleep(0.05)
        await call_user(done.set)  # the caller has returned: runs inline on the loop

    async def core():
        asyncio.get_running_loop().create_task(later())

    thread.run(core())
    assert done.wait(2)


def test_blocking_calls_from_the_loop_thread_are_refused(thread):
    async def inner():
        return 1

    def reenter():
        return thread.run(inner())

    with pytest.raises(RuntimeError, match="own event loop thread"):
        thread.call(reenter)


def test_close_cancels_pending_work_and_is_idempotent():
    t = LoopThread("closing")
    future = t.submit(asyncio.sleep(3600))
    t.close()
    t.close()
    assert future.cancelled()
    with pytest.raises(RuntimeError, match="closed"):
        t.run(asyncio.sleep(0))
