"""The job queue of one connection: its handlers run one after another, in the order their packets
arrived, from a queue whose worker task exists only while there is work.

The queue is bounded (the session stops reading the client past ``max_pending_events`` jobs or
``max_pending_bytes``) and fair (a worker lets the loop serve other connections every
:data:`JOBS_PER_TURN` jobs).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Protocol

from tidings.settings import Settings

logger = logging.getLogger("tidings.socketio")

Job = Callable[[], Awaitable[None]]
#: Jobs a connection's worker runs before it lets the event loop serve the others: a client whose
#: events are handled without waiting (refused, or by async handlers that do not await) must not
#: hold the loop for a whole read's worth of them.
JOBS_PER_TURN = 16


class Reader(Protocol):
    """What a job queue asks of its session: to stop reading the client, and to go on."""

    def hold_reading(self) -> None: ...

    def release_reading(self) -> None: ...


class JobQueue:
    """Runs a connection's jobs in order; holds the reading of ``session`` while too many wait."""

    __slots__ = ("_holding", "_jobs", "_pending_bytes", "_running", "_settings", "_worker", "session")

    def __init__(self, session: Reader, settings: Settings, running: set[asyncio.Task[None]]) -> None:
        """``running``: the worker tasks of every connection of the server, this one's while it has
        one (a stopping server waits for them)."""
        self.session = session
        self._settings = settings
        self._running = running
        # Created when a job comes and dropped when the queue runs dry: an empty deque holds a
        # 64-slot block (~0.7 KiB), too much for each of many idle connections. Each job with the
        # bytes of the client's messages it holds.
        self._jobs: deque[tuple[Job, int]] | None = None
        self._pending_bytes = 0  # of the jobs queued
        self._holding = False  # the session takes no messages until the queue is half as long
        self._worker: asyncio.Task[None] | None = None

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
            self._worker = asyncio.get_running_loop().create_task(self._work(self._jobs))
            self._running.add(self._worker)

    async def _work(self, jobs: deque[tuple[Job, int]]) -> None:
        settings = self._settings
        ran = 0
        try:
            while jobs:
                job, size = jobs.popleft()
                self._pending_bytes -= size
                if (
                    self._holding
                    and len(jobs) <= settings.max_pending_events // 2
                    and self._pending_bytes <= settings.max_pending_bytes // 2
                ):
                    self._holding = False
                    self.session.release_reading()
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
            self._jobs = None  # no await since the queue ran dry: nothing was added meanwhile
