"""What the broker tests share: the machine's Redis, Redis servers of their own, nodes sharing a broker."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tests.peers import REDIS_URL, machine_redis, missing
from tests.serving import TidingsProcess, free_port, wait_for_port

APP = "tests/brokers/app.py:app"


def new_prefix() -> str:
    """A name prefix of one's own on the machine's Redis: runs, and other users of it, do not meet.

    The machine's Redis is checked to answer: a missing peer otherwise (tests/peers.py)."""
    machine_redis().close()
    return f"tidings-test-{uuid.uuid4().hex[:12]}:"


def broker_args(prefix: str, url: str = REDIS_URL) -> tuple[str, ...]:
    return ("--broker", url, "--broker-prefix", prefix)


@contextlib.contextmanager
def running_nodes(
    prefix: str, count: int, url: str = REDIS_URL, app: str = APP
) -> Iterator[list[TidingsProcess]]:
    """``count`` `tidings run` processes of ``app`` on different ports, sharing channels through Redis."""
    servers = [TidingsProcess(app, None, *broker_args(prefix, url)) for _ in range(count)]
    try:
        for server in servers:
            server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()


class OwnRedis:
    """A redis-server of the test's own on a free port, without persistence; restartable on it."""

    def __init__(self, directory: Path) -> None:
        if shutil.which("redis-server") is None:
            missing("redis-server", "no `redis-server` on PATH for a Redis of the test's own")
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.command = ["redis-server", "--port", str(self.port), "--save", "", "--appendonly", "no"]
        self.command += ["--dir", str(directory)]
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.command, stdout=subprocess.DEVNULL)
        wait_for_port(self.port, process=self.process)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)
            self.process = None


async def until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    """Poll ``check`` (sync or async) until it returns something true; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} not met within {timeout}s"
        await asyncio.sleep(0.05)
