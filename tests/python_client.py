"""The python-socketio client, sync or asyncio, behind one async face for the tests."""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import AsyncIterator
from typing import Any

import socketio


class PythonClient:
    """A python-socketio ``Client`` (run in threads) or ``AsyncClient``, recording what it gets."""

    def __init__(self, kind: str, **options: Any) -> None:
        self.kind = kind
        self.client: Any = (socketio.Client if kind == "sync" else socketio.AsyncClient)(**options)
        self.received: queue.Queue[tuple[str, tuple[Any, ...]]] = queue.Queue()
        self.backlog: list[tuple[str, tuple[Any, ...]]] = []
        self.answers: dict[str, Any] = {}

        def record(event: str, *args: Any) -> Any:
            self.received.put((event, args))
            return self.answers.get(event)

        def disconnected(reason: str) -> None:
            self.received.put(("disconnect", (reason,)))

        self.client.on("*", record)

        def refused(*data: Any) -> None:
            self.received.put(("connect_error", data))

        self.client.on("disconnect", disconnected)
        self.client.on("connect_error", refused)

    async def _run(self, method: str, *args: Any, **kwargs: Any) -> Any:
        function = getattr(self.client, method)
        if self.kind == "sync":
            return await asyncio.to_thread(function, *args, **kwargs)
        return await function(*args, **kwargs)

    async def connect(self, url: str, **kwargs: Any) -> None:
        await self._run("connect", url, wait_timeout=10, **kwargs)

    async def call(self, event: str, *args: Any, namespace: str | None = None) -> Any:
        data = args[0] if len(args) == 1 else args
        return await self._run("call", event, data, namespace=namespace, timeout=10)

    async def emit(self, event: str, *args: Any) -> None:
        await self._run("emit", event, args[0] if len(args) == 1 else args)

    async def disconnect(self) -> None:
        await self._run("disconnect")

    async def shutdown(self) -> None:
        """Disconnect, and stop any reconnection attempts (left running, they outlive the test)."""
        await self._run("shutdown")

    async def event(self, name: str, timeout: float = 10) -> tuple[Any, ...]:
        """Arguments of the first ``name`` event received (earlier other events stay for later)."""
        for item in self.backlog:
            if item[0] == name:
                self.backlog.remove(item)
                return item[1]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            try:
                item = await asyncio.to_thread(self.received.get, timeout=max(0.01, remaining))
            except queue.Empty:
                raise AssertionError(f"no {name!r} event within {timeout}s; saw {self.backlog}") from None
            if item[0] == name:
                return item[1]
            self.backlog.append(item)

    async def wait_for_transport(self, name: str, timeout: float = 10) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.client.transport() != name:
            if loop.time() > deadline:
                raise AssertionError(f"transport is {self.client.transport()}, not {name}")
            await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def connected_client(url: str, transport: str) -> AsyncIterator[PythonClient]:
    """An asyncio python-socketio client of ``url`` over one transport; shut down afterwards."""
    client = PythonClient("async")
    await client.connect(url, transports=[transport])
    try:
        yield client
    finally:
        await client.shutdown()
