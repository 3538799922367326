"""The threads ``def`` handlers run in: a pool that wakes as few threads as it can, and answers the
event loop in batches.

``concurrent.futures.ThreadPoolExecutor`` under ``run_in_executor`` cost two futures, their
callbacks, a wake-up of a thread and one of the loop per call: most of an echo by a ``def``
handler. Here:

- A call is appended to a deque. A sleeping thread is woken, at the end of the loop's turn, only
  when no thread is awake to look for it; a thread that takes a call while more wait wakes one more
  (so that a handler that blocks does not hold up the calls behind it, as with the executor). Calls
  that arrive together (one read of many clients' events) are run by one or two threads, not by as
  many as there are calls, each fighting for the GIL.
- Results are appended to another deque, and the loop is woken (one ``call_soon_threadsafe``) once
  for every batch of results that came back while it was not looking.

Threads are started as calls come, up to ``size``, when no thread is awake or asleep to take them,
and are daemons: a handler that never returns does not hold the process at exit.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

logger = logging.getLogger("tidings.socketio")

T = TypeVar("T")
#: Called on the event loop with what a call returned, or the exception it raised.
Done = Callable[[Any, BaseException | None], None]
_Call = tuple[contextvars.Context, Callable[[], Any], Done]


class HandlerThreads:
    """Runs calls in up to ``size`` threads and hands each result to its ``done`` on ``loop``."""

    def __init__(self, size: int, loop: asyncio.AbstractEventLoop, name: str = "tidings-handler") -> None:
        self.loop = loop
        self._size = size
        self._name = name
        self._started = 0
        # Under _lock: the calls waiting, the sleeping threads' locks (released to wake one), and
        # how many threads are awake and looking for a call (woken or between two calls).
        self._lock = threading.Lock()
        self._calls: deque[_Call] = deque()
        self._asleep: list[threading.Lock] = []
        self._looking = 0
        self._wake_scheduled = False  # a _wake is due at the end of the loop's turn
        self._stopping = False
        self._finished: deque[tuple[Done, Any, BaseException | None]] = deque()
        self._waking = False  # a delivery is scheduled on the loop: no need to wake it again

    def submit(self, call: Callable[[], Any], done: Done) -> None:
        """Run ``call()`` in a thread, in a copy of the caller's context; then ``done(result,
        error)`` on the loop (event loop thread)."""
        item = (contextvars.copy_context(), call, done)
        with self._lock:
            self._calls.append(item)
            wake = self._looking == 0 and not self._wake_scheduled
            if wake:
                self._wake_scheduled = True
        if wake:
            # At the end of this turn of the loop, not now: a thread woken now would only wait for
            # the GIL, which the loop holds until it has nothing left to do (a context switch more
            # per call), and the calls of this turn are then all queued for it.
            self.loop.call_soon(self._wake)

    def _wake(self) -> None:
        with self._lock:
            self._wake_scheduled = False
            start = bool(self._calls) and self._looking == 0 and not self._wake_one()
        if start:
            self._start()

    async def call(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a thread, awaited (event loop thread)."""
        future: asyncio.Future[T] = self.loop.create_future()
        self.submit(lambda: func(*args), lambda result, error: _settle(future, result, error))
        return await future

    def queued(self) -> int:
        """Calls waiting for a thread."""
        return len(self._calls)

    def shutdown(self) -> None:
        """Let the threads end after their current call; calls not started are dropped, and
        their ``done`` gets :class:`asyncio.CancelledError` (event loop thread)."""
        with self._lock:
            self._stopping = True
            dropped = list(self._calls)
            self._calls.clear()
            while self._wake_one():
                pass
        for _, _, done in dropped:
            done(None, asyncio.CancelledError())

    def _wake_one(self) -> bool:
        """Wake a sleeping thread to look for calls (under _lock); False if none sleeps."""
        if not self._asleep:
            return False
        self._looking += 1
        self._asleep.pop().release()
        return True

    def _start(self) -> None:
        with self._lock:
            if self._started >= self._size:
                return  # every thread is busy: the call waits for one
            self._started += 1
            self._looking += 1
        name = f"{self._name}_{self._started - 1}"
        threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        lock, calls, finished = self._lock, self._calls, self._finished
        alarm = threading.Lock()  # this thread's: released by whoever wakes it
        while True:
            with lock:
                if self._stopping:
                    self._looking -= 1
                    return
                if not calls:
                    self._looking -= 1
                    alarm.acquire()  # held: the next acquire below sleeps until a release
                    self._asleep.append(alarm)
                    item = None
                else:
                    item = calls.popleft()
                    self._looking -= 1
                    if calls and self._looking == 0:  # more wait, and nobody looks for them
                        more = not self._wake_one() and self._started < self._size
                    else:
                        more = False
            if item is None:
                alarm.acquire()  # asleep until _wake_one releases it (and counts this thread looking)
                alarm.release()
                continue
            if more:
                self._start()
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
            with lock:
                self._looking += 1

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
    elif isinstance(error, asyncio.CancelledError):  # dropped by shutdown: as the executor did
        future.cancel()
    else:
        future.set_exception(error)
