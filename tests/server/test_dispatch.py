"""Client events over a real socket, sent back to back without waiting: a connection's handlers run
in the order its events came, whether they are ``def`` (run whole in a handler thread, see
:class:`tidings.server.socketio.EventInThread`) or ``async def`` or both; a handler that raises has
its ``error`` handlers run, its ack answered, and the connection goes on."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Iterator

import orjson
import pytest
from websockets.asyncio.client import connect

import tidings
from tests.serving import ThreadedServer

TIMEOUT = 10.0  # a guard against hanging, never the thing a test waits for
EVENTS = 300

handlers = tidings.Handlers()
seen: list[int] = []
errors: list[str] = []


@handlers.on("sync")
def record_sync(request, socket, context, n):
    time.sleep(random.random() / 5000)  # threads that ran events side by side would reorder them
    seen.append(n)
    return n


@handlers.on("async")
async def record_async(request, socket, context, n):
    if n % 3 == 0:
        await asyncio.sleep(0)
    seen.append(n)
    return n


@handlers.on("fail")
def fail(request, socket, context, n):
    raise ValueError(f"failed {n}")


@handlers.on("refuse")
def refuse(request, socket, context):
    raise tidings.Refuse("not today")


@handlers.on_error
def record_error(request, socket, context, error):
    errors.append(str(error))


# One app for both protocols' servers: its handler threads are made again for the second's loop.
app = tidings.Server(handlers=handlers, handler_threads=8)


@pytest.fixture(scope="module")
def server(ws_protocol: str) -> Iterator[ThreadedServer]:
    with ThreadedServer(app, ws_protocol) as running:
        yield running


async def connected(port: int):  # type: ignore[no-untyped-def]
    ws = await connect(f"ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket")
    assert str(await asyncio.wait_for(ws.recv(), TIMEOUT)).startswith("0{")
    await ws.send("40")
    assert str(await asyncio.wait_for(ws.recv(), TIMEOUT)).startswith("40{")
    return ws


async def acks(ws, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(await asyncio.wait_for(ws.recv(), TIMEOUT)) for _ in range(count)]


@pytest.mark.parametrize("kinds", [("sync",), ("async",), ("sync", "async")])
async def test_pipelined_events_run_and_are_acked_in_order(
    server: ThreadedServer, kinds: tuple[str, ...]
) -> None:
    seen.clear()
    ws = await connected(server.port)
    async with ws:
        for n in range(EVENTS):  # all sent before the first is answered
            await ws.send(f'42{n}["{kinds[n % len(kinds)]}",{n}]')
        answers = await acks(ws, EVENTS)
    assert answers == [f"43{n}[{n}]" for n in range(EVENTS)]
    assert seen == list(range(EVENTS))


async def test_two_connections_do_not_wait_for_each_other(server: ThreadedServer) -> None:
    seen.clear()
    first, second = await connected(server.port), await connected(server.port)
    async with first, second:
        for n in range(EVENTS):
            await first.send(f'42{n}["sync",{n}]')
            await second.send(f'42{n}["sync",{EVENTS + n}]')
        first_answers, second_answers = await asyncio.gather(acks(first, EVENTS), acks(second, EVENTS))
    assert first_answers == [f"43{n}[{n}]" for n in range(EVENTS)]
    assert second_answers == [f"43{n}[{EVENTS + n}]" for n in range(EVENTS)]
    assert [n for n in seen if n < EVENTS] == list(range(EVENTS))
    assert [n for n in seen if n >= EVENTS] == list(range(EVENTS, 2 * EVENTS))


async def test_a_def_handler_that_raises_calls_on_error_and_the_connection_goes_on(
    server: ThreadedServer,
) -> None:
    errors.clear()
    ws = await connected(server.port)
    async with ws:
        await ws.send('421["fail",1]')
        await ws.send('422["refuse"]')
        await ws.send('423["sync",3]')
        answers = await acks(ws, 3)
    assert answers[0] == "431[]"  # answered, with nothing
    assert answers[1].startswith("432[") and orjson.loads(answers[1][3:]) == [
        {"ok": False, "error": "not today"}
    ]
    assert answers[2] == "433[3]"
    assert errors == ["failed 1"]  # Refuse is an answer, not an error


async def test_the_metrics_count_a_def_handlers_runs_and_errors(server: ThreadedServer) -> None:
    runner = app.socketio.runner
    before = runner.errors.get("fail", 0)
    ws = await connected(server.port)
    async with ws:
        await ws.send('421["fail",1]')
        await ws.send('422["sync",2]')
        await acks(ws, 2)
    assert runner.errors["fail"] == before + 1
    assert sum(runner.durations["record_sync"].counts) > 0
