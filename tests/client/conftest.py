from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.client.js_client import JsClient
from tests.python_client import PythonClient
from tests.serving import TidingsProcess


@pytest.fixture(scope="module")
def channels_server() -> Iterator[TidingsProcess]:
    running = TidingsProcess("tests/channels/app.py:app").start()
    yield running
    running.stop()


@pytest.fixture
def js() -> Iterator[JsClient]:
    client = JsClient()
    yield client
    client.close()


@pytest.fixture
async def python(channels_server: TidingsProcess) -> AsyncIterator[PythonClient]:
    """A python-socketio client of the channels server, over WebSocket."""
    client = PythonClient("async")
    await client.connect(channels_server.url, transports=["websocket"])
    yield client
    if client.client.connected:
        await client.disconnect()
