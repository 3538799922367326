"""A connection's job queue, without sockets: bounded (the session stops reading past
``max_pending_events``) and fair (a worker lets the loop serve other connections between jobs)."""

from __future__ import annotations

import asyncio

from tidings.server.jobs import JOBS_PER_TURN, JobQueue
from tidings.settings import Settings


class Session:
    """What a job queue asks of its Engine.IO session."""

    def __init__(self) -> None:
        self.held: list[bool] = []

    def hold_reading(self) -> None:
        self.held.append(True)

    def release_reading(self) -> None:
        self.held.append(False)


async def test_jobs_that_never_wait_let_other_connections_run() -> None:
    connection = JobQueue(Session(), Settings(), set())
    order: list[str] = []

    def job(n: int):
        async def run() -> None:
            order.append(f"job {n}")

        return run

    for n in range(3 * JOBS_PER_TURN):
        connection.schedule(job(n))

    async def other_connection() -> None:
        order.append("other")

    await asyncio.gather(asyncio.sleep(0), other_connection())  # both queued behind the worker's start
    while connection._worker is not None:
        await asyncio.sleep(0)
    assert order.index("other") <= JOBS_PER_TURN, order[: JOBS_PER_TURN + 2]
    assert [item for item in order if item != "other"] == [f"job {n}" for n in range(3 * JOBS_PER_TURN)]


async def test_past_max_pending_events_the_session_is_held_until_half_have_run() -> None:
    session = Session()
    connection = JobQueue(session, Settings(max_pending_events=10), set())

    async def nothing() -> None:
        pass

    for _ in range(25):
        connection.schedule(nothing)
    assert session.held == [True]  # once, at the 10th
    while connection._worker is not None:
        await asyncio.sleep(0)
    assert session.held == [True, False]  # released once 5 or fewer were left


async def test_max_pending_bytes_holds_too() -> None:
    session = Session()
    connection = JobQueue(session, Settings(max_pending_bytes=1000), set())

    async def nothing() -> None:
        pass

    connection.schedule(nothing, 600)
    assert session.held == []
    connection.schedule(nothing, 600)
    assert session.held == [True]
    while connection._worker is not None:
        await asyncio.sleep(0)
    assert session.held == [True, False]
