"""Graceful restarts of `tidings run` with the Redis broker: a tidings.js client subscribed to a
channel with a history gets every message of a steady stream once, in order, while the server is
stopped by SIGTERM and started again, or while its workers are restarted one at a time (SIGHUP)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.brokers.cluster import broker_args, until
from tests.client.js_client import JsClient
from tests.node_client import NodeClient
from tests.peers import REDIS_URL
from tests.serving import TidingsProcess
from tidings import NoSocket, Publisher

APP = "tests/brokers/restart_app.py:app"
CHANNEL = "stream"
AFTER = 100  # messages published once the client is back


@pytest.fixture
def js() -> Iterator[JsClient]:
    client = JsClient()
    yield client
    client.close()


class Stream(threading.Thread):
    """Publishes 0, 1, 2 ... to CHANNEL, one every 10 ms, until stopped; ``last``: the last sent.
    While no server runs nobody takes a message (NoSocket), but it is in the channel's history."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix
        self.stopped = threading.Event()
        self.last = -1

    def run(self) -> None:
        with Publisher(REDIS_URL, self.prefix) as publisher:
            while not self.stopped.wait(0.01):
                with contextlib.suppress(NoSocket):
                    publisher.broadcast_channel(self.last + 1, CHANNEL)
                self.last += 1


async def received_across(
    js: JsClient, url: str, restart: Callable[[], None], prefix: str, websocket: str = "standard"
) -> list[int]:
    """What the client got of the stream while ``restart`` ran in the middle of it; the stream ends
    AFTER messages after the client is back. ``websocket="none"``: the client long-polls (one
    process only: the workers of a port share no polling sessions)."""
    js.connect(url, websocket=websocket, reconnectDelay=100)
    await js.wait("connect")
    assert (await js.subscribe(CHANNEL))["ok"]
    stream = Stream(prefix)
    stream.start()
    try:
        numbers = [(await js.wait("event", event="message"))["args"][0]]
        await asyncio.to_thread(restart)
        disconnect = await js.wait("disconnect", timeout=30)
        await js.wait("connect", timeout=30)
        back = stream.last
        await until(lambda: stream.last >= back + AFTER, what="the stream going on")
    finally:
        stream.stopped.set()
        await asyncio.to_thread(stream.join)
    while numbers[-1] != stream.last:
        numbers.append((await js.wait("event", timeout=20, event="message"))["args"][0])
    # Told at once, not by a ping timeout nor as a deliberate disconnect, which it would not retry:
    # a close frame or close packet, or (a poll that comes once the session is gone) an error.
    assert disconnect["reason"] in ("transport close", "transport error")
    return numbers


async def test_sigterm_and_start_again(js: JsClient, prefix: str) -> None:
    server = TidingsProcess(APP, None, *broker_args(prefix))
    server.start()

    def restart() -> None:
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(20) == -signal.SIGTERM
        server.start()

    try:
        numbers = await received_across(js, server.url, restart, prefix, websocket="none")
    finally:
        server.stop()
    assert numbers == list(range(numbers[0], numbers[-1] + 1))


async def test_sighup_restarts_workers(js: JsClient, prefix: str) -> None:
    server = TidingsProcess(APP, None, "--workers", "2", *broker_args(prefix))
    server.start()

    def restart() -> None:
        assert server.process is not None
        server.process.send_signal(signal.SIGHUP)

    try:
        numbers = await received_across(js, server.url, restart, prefix)
    finally:
        server.stop()
    assert numbers == list(range(numbers[0], numbers[-1] + 1))


async def stop_while_slow(
    js: JsClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seconds: float, *extra: str
) -> tuple[TidingsProcess, list[str]]:
    """Start the server, run a ``slow`` handler of ``seconds``, SIGTERM the server meanwhile; the
    server and the session ids its ``finish`` handlers wrote once it exited."""
    finished = tmp_path / "finished"
    finished.touch()
    monkeypatch.setenv("TIDINGS_TEST_FINISHED", str(finished))
    monkeypatch.setenv("TIDINGS_TEST_SHUTDOWN_TIMEOUT", "2")
    server = TidingsProcess(APP, None, *extra).start()
    try:
        js.connect(server.url)
        await js.wait("connect")
        js.start("emit", event="slow", args=[seconds])
        await asyncio.sleep(0.3)  # the handler is running
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(server.process.wait, 30) == -signal.SIGTERM
    finally:
        server.stop()
    return server, finished.read_text().split()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_official_client_reconnects_by_itself(transport: str) -> None:
    """socket.io-client takes a stopping server's close for a lost transport, not for a deliberate
    disconnect ("io server disconnect", after which it would not reconnect): it comes back alone."""
    server = TidingsProcess(APP).start()
    client = NodeClient()
    try:
        client.connect(server.url, transports=[transport])
        await asyncio.to_thread(client.expect, "connect")
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        disconnect = await asyncio.to_thread(client.expect, "disconnect", 20)
        assert await asyncio.to_thread(server.process.wait, 20) == -signal.SIGTERM
        server.start()
        await asyncio.to_thread(client.expect, "connect", 20)
    finally:
        client.close()
        server.stop()
    assert disconnect["reason"] in ("transport close", "transport error")


WORKERS = pytest.mark.parametrize("workers", ["1", "2"])


@WORKERS
async def test_running_handlers_finish_before_exit(
    js: JsClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    server, finished = await stop_while_slow(js, tmp_path, monkeypatch, 1, "--workers", workers)
    assert len(finished) == 1  # the slow handler returned, then the socket's finish ran
    assert "abandoning" not in server.log.read_text()


@WORKERS
async def test_handlers_past_shutdown_timeout_are_abandoned(
    js: JsClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: str
) -> None:
    server, finished = await stop_while_slow(js, tmp_path, monkeypatch, 60, "--workers", workers)
    assert finished == []
    warning = "shutdown_timeout (2s) passed: abandoning the handlers of 1 connection(s)"
    assert warning in server.log.read_text()
