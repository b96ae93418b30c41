"""A private event loop in a background thread: how the blocking API runs the one asyncio implementation.

``LoopThread.run(coro)`` runs a coroutine on the loop and blocks the calling
thread until it finishes. While it waits, the calling thread also serves
*user callbacks*: core code that must call application code (a consumer's
``on_assign``/``on_revoke``) does so through ``call_user``, which runs the
callback in the thread blocked in ``run`` - the application's own thread, as
with Kafka's clients. The callback may therefore call the blocking client
again (``consumer.commit()`` inside ``on_revoke``) without deadlocking the
loop. Without a waiting caller (async API) ``call_user`` calls the function
directly and awaits its result if it is awaitable.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import inspect
import queue
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread", "call_user"]

T = TypeVar("T")

_DONE = object()
_CALL = object()


class _Caller:
    """A thread blocked in ``LoopThread.run``; ``active`` only while it waits (tasks spawned during the
    call inherit the context variable but must not post callbacks after the caller left)."""

    def __init__(self) -> None:
        self.queue: queue.SimpleQueue[tuple[object, Any]] = queue.SimpleQueue()
        self.active = True


_caller: contextvars.ContextVar[_Caller | None] = contextvars.ContextVar("raftka_blocking_caller", default=None)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def call_user(fn: Callable[..., Any], *args: Any) -> Any:
    """Run application code ``fn(*args)``: in the blocked caller's thread if there is one (blocking API),
    else right here (awaiting the result if it is awaitable). Exceptions propagate to the caller."""
    caller = _caller.get()
    if caller is None or not caller.active:
        result = fn(*args)
        if inspect.isawaitable(result):
            result = await result
        return result
    reply: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    caller.queue.put((_CALL, (fn, args, reply)))
    return await reply


class LoopThread:
    """Owns one event loop running forever in a daemon thread until ``close()``."""

    def __init__(self, name: str) -> None:
        self.loop = _new_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    @property
    def closed(self) -> bool:
        return self.loop.is_closed()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop; block until done, serving ``call_user`` callbacks meanwhile."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("blocking raftka call made from the client's own event loop thread")
        if self.loop.is_closed():
            coro.close()
            raise RuntimeError("the client's event loop is closed")
        caller = _Caller()
        task_box: list[asyncio.Task[T]] = []

        def start() -> None:
            context = contextvars.copy_context()
            context.run(_caller.set, caller)
            task = self.loop.create_task(coro, context=context)
            task.add_done_callback(lambda t: caller.queue.put((_DONE, t)))
            task_box.append(task)

        self.loop.call_soon_threadsafe(start)
        try:
            while True:
                kind, item = caller.queue.get()
                if kind is _DONE:
                    return item.result()
                self._serve(item)
        except BaseException:
            if task_box and not task_box[0].done():  # interrupted (e.g. Ctrl-C): stop the work too
                self.loop.call_soon_threadsafe(task_box[0].cancel)
            raise
        finally:
            caller.active = False

    def _serve(self, item: tuple[Callable[..., Any], tuple[Any, ...], asyncio.Future[Any]]) -> None:
        fn, args, reply = item
        try:
            result = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine, which re-raises
            self.loop.call_soon_threadsafe(_settle, reply, None, exc)
        else:
            self.loop.call_soon_threadsafe(_settle, reply, result, None)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop without waiting (callbacks then run on the loop thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a plain function on the loop thread and return its result."""

        async def invoke() -> T:
            return fn(*args)

        return self.run(invoke())

    def close(self) -> None:
        """Cancel what is left on the loop, stop it and join the thread. Idempotent."""
        if self.loop.is_closed():
            return

        async def shutdown() -> None:
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result()
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
        self.loop.close()


def _settle(reply: asyncio.Future[Any], result: Any, exc: BaseException | None) -> None:
    if reply.done():
        return
    if exc is not None:
        reply.set_exception(exc)
    else:
        reply.set_result(result)
