"""RecordFuture: a concurrent.futures.Future with lazily created internals, and completion helpers."""

import asyncio
import concurrent.futures
import threading

import pytest

from raftka.client.futures import RecordFuture, fail_future, resolve_future


def test_completion_without_waiters_creates_no_condition():
    future = RecordFuture()
    future.set_result(7)
    assert future.done() and not future.cancelled() and not future.running()
    assert "_condition" not in future.__dict__ and "_waiters" not in future.__dict__
    assert future.result() == 7  # reading the result afterwards works


def test_result_waits_for_completion_from_another_thread():
    future = RecordFuture()
    timer = threading.Timer(0.05, future.set_result, args=("done",))
    timer.start()
    assert future.result(timeout=5) == "done"
    with pytest.raises(concurrent.futures.TimeoutError):
        RecordFuture().result(timeout=0.01)


def test_exceptions_and_callbacks():
    future, seen = RecordFuture(), []
    future.add_done_callback(lambda f: seen.append(("before", f.exception())))
    error = ValueError("boom")
    future.set_exception(error)
    future.add_done_callback(lambda f: seen.append(("after", f.exception())))
    assert seen == [("before", error), ("after", error)]
    with pytest.raises(ValueError, match="boom"):
        future.result()


def test_wait_as_completed_and_asyncio_interop():
    futures = [RecordFuture() for _ in range(3)]
    futures[0].set_result(0)
    threading.Timer(0.05, futures[1].set_result, args=(1,)).start()
    threading.Timer(0.05, futures[2].set_exception, args=(KeyError("x"),)).start()
    done, not_done = concurrent.futures.wait(futures, timeout=5)
    assert done == set(futures) and not not_done
    assert sorted(f.result() for f in concurrent.futures.as_completed(futures[:2])) == [0, 1]

    async def awaited():
        late = RecordFuture()
        threading.Timer(0.02, late.set_result, args=("async",)).start()
        return await asyncio.wrap_future(late)

    assert asyncio.run(awaited()) == "async"


def test_cancelled_futures_are_left_alone_by_the_producer():
    future = RecordFuture()
    assert future.cancel() and future.cancelled()
    with pytest.raises(concurrent.futures.InvalidStateError):
        future.set_result(1)
    resolve_future(future, 1)
    fail_future(future, RuntimeError("late"))
    assert future.cancelled()
    done = RecordFuture()
    done.set_result(1)
    with pytest.raises(concurrent.futures.InvalidStateError):
        done.set_result(2)


def test_no_lost_wakeups_when_waiting_races_with_completion():
    for _ in range(300):
        future = RecordFuture()
        results = []
        waiters = [threading.Thread(target=lambda: results.append(future.result(timeout=5))) for _ in range(3)]
        for w in waiters:
            w.start()
        future.set_result("x")
        for w in waiters:
            w.join()
        assert results == ["x", "x", "x"]
