"""A connection's job queue, without sockets: bounded (the session stops reading past
``max_pending_events``), fair (a worker lets the loop serve other connections between jobs), in
order across coroutine jobs and jobs in handler threads; and the handler threads' pool."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from tidings.server.jobs import JOBS_PER_TURN, JobQueue, ThreadJob
from tidings.server.threads import HandlerThreads
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


class Pool:
    def __init__(self, threads: HandlerThreads) -> None:
        self.threads = threads


class Recorded(ThreadJob):
    """A job that records where each of its steps ran."""

    def __init__(self, name: str, order: list[str], release: threading.Event | None = None) -> None:
        self.name, self.order, self.release = name, order, release

    def start(self) -> None:
        self.order.append(f"start {self.name}")

    def run(self) -> str:
        if self.release is not None:
            self.release.wait(5)
        self.order.append(f"run {self.name} in {threading.current_thread().name}")
        return self.name

    def finish(self, result: str) -> None:
        self.order.append(f"finish {result}")


async def test_thread_jobs_and_coroutine_jobs_run_one_after_another_in_order() -> None:
    loop = asyncio.get_running_loop()
    threads = HandlerThreads(4, loop)
    connection = JobQueue(Session(), Settings(), set(), Pool(threads))
    order: list[str] = []
    release = threading.Event()

    async def coroutine_job() -> None:
        order.append("coroutine")

    connection.schedule(Recorded("a", order, release))
    connection.schedule(coroutine_job)
    connection.schedule(Recorded("b", order))
    assert order == ["start a"]  # started at once; the others wait for it
    await asyncio.sleep(0.05)
    assert order == ["start a"] and not connection.idle
    release.set()
    while not connection.idle:
        await asyncio.sleep(0.01)
    assert [step.split(" in ")[0] for step in order] == [
        "start a",
        "run a",
        "finish a",
        "coroutine",
        "start b",
        "run b",
        "finish b",
    ]
    assert order[1].endswith("in tidings-handler_0")
    threads.shutdown()


async def test_handler_threads_answer_in_the_callers_context_and_pass_exceptions() -> None:
    threads = HandlerThreads(2, asyncio.get_running_loop())
    variable: contextvars.ContextVar[str] = contextvars.ContextVar("variable")
    variable.set("caller's")
    assert await threads.call(variable.get) == "caller's"
    with pytest.raises(ZeroDivisionError):
        await threads.call(lambda: 1 / 0)
    results = await asyncio.gather(*(threads.call(lambda n=n: n * n) for n in range(50)))
    assert results == [n * n for n in range(50)]
    assert threads._started <= 2
    threads.shutdown()


async def test_calls_behind_a_blocked_one_run_in_another_thread() -> None:
    threads = HandlerThreads(4, asyncio.get_running_loop())
    release = threading.Event()
    blocked = asyncio.ensure_future(threads.call(release.wait, 5))
    quick = [asyncio.ensure_future(threads.call(threading.current_thread)) for _ in range(20)]
    done, _ = await asyncio.wait(quick, timeout=2)
    assert len(done) == 20, "the calls waited for the blocked one"
    release.set()
    assert await blocked is True
    threads.shutdown()


async def test_calls_that_come_together_wake_a_few_threads_not_one_each() -> None:
    threads = HandlerThreads(32, asyncio.get_running_loop())

    async def round_of_calls() -> set[str]:
        calls = (threads.call(lambda: threading.current_thread().name) for _ in range(200))
        return set(await asyncio.gather(*calls))

    await round_of_calls()  # threads start as the first calls come: a few of them
    assert len(await round_of_calls()) <= 4  # the executor's way: 32, one per call up to its size
    assert threads._started <= 16
    threads.shutdown()


async def test_a_stopped_pool_drops_the_calls_not_started() -> None:
    threads = HandlerThreads(1, asyncio.get_running_loop())
    release = threading.Event()
    blocked = asyncio.ensure_future(threads.call(release.wait, 5))
    waiting = asyncio.ensure_future(threads.call(lambda: "never"))
    await asyncio.sleep(0.05)
    assert threads.queued() == 1
    threads.shutdown()
    release.set()
    assert await blocked is True  # the call already running ends as it would
    with pytest.raises(asyncio.CancelledError):
        await waiting


class Broken(ThreadJob):
    def run(self) -> None:
        return None

    def finish(self, result: None) -> None:
        raise RuntimeError("a bug in finish")


async def test_a_thread_job_whose_end_fails_does_not_stop_the_queue(caplog: pytest.LogCaptureFixture) -> None:
    threads = HandlerThreads(2, asyncio.get_running_loop())
    connection = JobQueue(Session(), Settings(), set(), Pool(threads))
    ran: list[str] = []

    async def after() -> None:
        ran.append("after")

    connection.schedule(Broken())
    connection.schedule(after)
    while not connection.idle:
        await asyncio.sleep(0.01)
    assert ran == ["after"]
    assert "connection job failed" in caplog.text
    threads.shutdown()
