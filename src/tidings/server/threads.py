"""The threads ``def`` handlers run in: a pool fed by one queue, that answers the event loop in
batches.

A call costs a put on a :class:`queue.SimpleQueue` and, on the way back, an append to a deque: the
loop is woken once (one ``call_soon_threadsafe``) for every result that came back while it was not
looking, not once per call. ``concurrent.futures.ThreadPoolExecutor`` under ``run_in_executor``
cost two futures, their callbacks and a wake-up of the loop per call: most of an echo by a ``def``
handler.

Threads are started as calls come, up to ``size``, when no thread is idle (as the executor did),
and are daemons: a handler that never returns does not hold the process at exit.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger("tidings.socketio")

T = TypeVar("T")
#: Called on the event loop with what a call returned, or the exception it raised.
Done = Callable[[Any, BaseException | None], None]


class HandlerThreads:
    """Runs calls in up to ``size`` threads and hands each result to its ``done`` on ``loop``."""

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop, name: str = "tidings-handler") -> None:
        self.loop = loop
        self._size = size
        self._name = name
        self._calls: queue.SimpleQueue[tuple[contextvars.Context, Callable[[], Any], Done] | None] = (
            queue.SimpleQueue()
        )
        self._threads: list[threading.Thread] = []
        self._idle = 0  # threads waiting for a call and not promised one yet
        self._idle_lock = threading.Lock()
        self._finished: deque[tuple[Done, Any, BaseException | None]] = deque()
        self._waking = False  # a delivery is scheduled on the loop: no need to wake it again

    def submit(self, call: Callable[[], Any], done: Done) -> None:
        """Run ``call()`` in a thread, in a copy of the caller's context; then ``done(result,
        error)`` on the loop (event loop thread)."""
        with self._idle_lock:
            idle = self._idle > 0
            if idle:
                self._idle -= 1
        if not idle and len(self._threads) < self._size:
            thread = threading.Thread(
                target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()
        self._calls.put((contextvars.copy_context(), call, done))

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a thread, awaited (event loop thread)."""
        future: asyncio.Future[T] = self.loop.create_future()
        self.submit(lambda: func(*args), lambda result, error: _settle(future, result, error))
        return await future

    def queued(self) -> int:
        """Calls waiting for a thread."""
        return self._calls.qsize()

    def shutdown(self) -> None:
        """Let the threads end after their current call; calls not started are dropped, and
        their ``done`` gets :class:`asyncio.CancelledError` (event loop thread)."""
        while True:
            try:
                item = self._calls.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                item[2](None, asyncio.CancelledError())
        for _ in self._threads:
            self._calls.put(None)

    def _work(self) -> None:
        get, finished = self._calls.get, self._finished
        while True:
            item = get()
            if item is None:
                return
            context, call, done = item
            try:
                result, error = context.run(call), None
            except BaseException as raised:  # handed to done, as a future would hold it
                result, error = None, raised
            finished.append((done, result, error))
            if not self._waking:
                self._waking = True
                try:
                    self.loop.call_soon_threadsafe(self._deliver)
                except RuntimeError:  # the loop is closed: nobody is waiting any more
                    return
            with self._idle_lock:
                self._idle += 1

    def _deliver(self) -> None:
        # Cleared before the results are taken: a thread that appends after this sees it clear
        # and wakes the loop again; one that appended before is served by this delivery.
        self._waking = False
        finished = self._finished
        while finished:
            done, result, error = finished.popleft()
            try:
                done(result, error)
            except Exception:  # a done callback's bug must not lose the other results
                logger.exception("handler thread result could not be delivered")


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the awaiting task was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)
