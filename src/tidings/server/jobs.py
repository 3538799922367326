"""The job queue of one connection: its handlers run one after another, in the order their packets
arrived, from a queue whose worker task exists only while there is work.

A job is a coroutine function, run by the worker task, or a :class:`ThreadJob`, run in a handler
thread with no task at all: the queue hands it to the thread when its turn comes and goes on with
the next job once it is done.

The queue is bounded (the session stops reading the client past ``max_pending_events`` jobs or
``max_pending_bytes``) and fair (a worker lets the loop serve other connections every
:data:`JOBS_PER_TURN` jobs).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from tidings.server.threads import HandlerThreads
from tidings.settings import Settings

logger = logging.getLogger("tidings.socketio")


class ThreadJob:
    """A job that runs in a handler thread: :meth:`start` on the loop when its turn comes,
    :meth:`run` in a thread, then :meth:`finish` on the loop with what ``run`` returned."""

    __slots__ = ()

    def start(self) -> None:
        """On the event loop, before the thread runs it."""

    def run(self) -> Any:
        """In a handler thread; must catch what the handlers raise."""

    def finish(self, result: Any) -> None:
        """On the event loop, with what :meth:`run` returned; not called if ``run`` raised."""

    def cancel(self) -> None:
        """The job is its connection's :class:`Running` entry while it is in a thread, which cannot be
        stopped: the job ends when its handlers return."""


AsyncJob = Callable[[], Awaitable[None]]
Job = AsyncJob | ThreadJob
#: Jobs a connection's worker runs before it lets the event loop serve the others: a client whose
#: events are handled without waiting (refused, or by async handlers that do not await) must not
#: hold the loop for a whole read's worth of them. Not fewer: a connection's publishes of one turn
#: make one burst (one write per recipient), and a turn of 16 made four times the writes of 64 (the
#: suite's fan-out to 1,000: 1.6-1.7M deliveries/s against 2.4-3.2M).
JOBS_PER_TURN = 64


class Reader(Protocol):
    """What a job queue asks of its session: to stop reading the client, and to go on."""

    def hold_reading(self) -> None: ...

    def release_reading(self) -> None: ...


class Pool(Protocol):
    """Where a job queue finds the handler threads (the server's handler runner)."""

    @property
    def threads(self) -> HandlerThreads: ...


class Running(Protocol):
    """A connection's work in progress, as a stopping server sees it: it waits for it, then
    cancels it (a thread's work runs on, unwaited)."""

    def cancel(self) -> Any: ...


class JobQueue:
    """Runs a connection's jobs in order; holds the reading of ``session`` while too many wait."""

    __slots__ = (
        "_holding",
        "_jobs",
        "_pending_bytes",
        "_pool",
        "_running",
        "_settings",
        "_worker",
        "session",
    )

    def __init__(
        self,
        session: Reader,
        settings: Settings,
        running: set[Running],
        pool: Pool | None = None,
    ) -> None:
        """``running``: the work in progress of every connection of the server, this one's while
        it has some (a stopping server waits for it); ``pool``: where the threads that run
        :class:`ThreadJob` s are (none: the queue takes no such job)."""
        self.session = session
        self._settings = settings
        self._running = running
        self._pool = pool
        # Created when a job comes and dropped when the queue runs dry: an empty deque holds a
        # 64-slot block (~0.7 KiB), too much for each of many idle connections. Each job with the
        # bytes of the client's messages it holds.
        self._jobs: deque[tuple[Job, int]] | None = None
        self._pending_bytes = 0  # of the jobs queued
        self._holding = False  # the session takes no messages until the queue is half as long
        # The worker task, or the job in a handler thread; None: idle.
        self._worker: asyncio.Task[None] | ThreadJob | None = None

    @property
    def idle(self) -> bool:
        """No job is queued or running: one run now comes after every job scheduled before."""
        return self._worker is None

    def schedule(self, job: Job, size: int = 0) -> None:
        """Run ``job`` after every job scheduled before it on this connection; ``size``: the bytes
        of the client's messages it holds.

        Once ``max_pending_events`` jobs or ``max_pending_bytes`` wait, the session stops taking
        the client's messages until the queue is half as long, so a client that sends faster than
        its handlers run is slowed down instead of growing the queue without end.
        """
        if self._jobs is None:
            self._jobs = deque()
        self._jobs.append((job, size))
        self._pending_bytes += size
        settings = self._settings
        if not self._holding and (
            len(self._jobs) >= settings.max_pending_events
            or self._pending_bytes >= settings.max_pending_bytes
        ):
            self._holding = True
            self.session.hold_reading()
        if self._worker is None:
            self._next()

    def _next(self) -> None:
        """Start the next job (the queue is idle): hand it to a thread, or start a worker task for
        it and the coroutine jobs after it; go idle if there is none."""
        jobs = self._jobs
        if not jobs:
            self._jobs = None  # see __init__
            return
        job = jobs[0][0]
        if isinstance(job, ThreadJob):
            self._take(jobs)
            self._worker = job
            self._running.add(job)
            job.start()
            assert self._pool is not None, "a ThreadJob on a queue without threads"
            # A partial, not a lambda: the closure's cells would be made at every call of _next.
            self._pool.threads.submit(job.run, functools.partial(self._ran, job))
        else:
            self._worker = asyncio.get_running_loop().create_task(self._work(jobs))
            self._running.add(self._worker)

    def _ran(self, job: ThreadJob, result: Any, error: BaseException | None) -> None:
        self._running.discard(job)
        self._worker = None
        if isinstance(error, asyncio.CancelledError):  # the pool was shut down: so is the server
            self._jobs = None  # the jobs left are dropped, as a cancelled worker task drops them
            return
        try:
            if error is not None:
                raise error
            job.finish(result)
        except Exception:  # handlers' own errors are caught inside jobs; this is a bug
            logger.exception("connection job failed")
        if self._worker is None:  # finish may have scheduled a job and started it
            self._next()

    def _take(self, jobs: deque[tuple[Job, int]]) -> None:
        """Take the next job off the queue; let the session read again once it is short enough."""
        _, size = jobs.popleft()
        self._pending_bytes -= size
        settings = self._settings
        if (
            self._holding
            and len(jobs) <= settings.max_pending_events // 2
            and self._pending_bytes <= settings.max_pending_bytes // 2
        ):
            self._holding = False
            self.session.release_reading()

    async def _work(self, jobs: deque[tuple[Job, int]]) -> None:
        ran = 0
        try:
            while jobs:
                job = jobs[0][0]
                if isinstance(job, ThreadJob):
                    break
                self._take(jobs)
                try:
                    await job()
                except Exception:  # handlers' own errors are caught inside jobs; this is a bug
                    logger.exception("connection job failed")
                ran += 1
                if ran % JOBS_PER_TURN == 0 and jobs:
                    await asyncio.sleep(0)  # let the loop serve the other connections
        finally:
            if self._worker is not None:
                self._running.discard(self._worker)
            self._worker = None
        # No await since the loop's test: nothing was added meanwhile. Next: a ThreadJob, or none.
        if jobs:
            self._next()
        else:
            self._jobs = None  # see __init__
