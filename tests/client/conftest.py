from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tests.client.js_client import JsClient
from tests.python_client import PythonClient, connected_client
from tests.serving import TidingsProcess, tidings_process


@pytest.fixture(scope="module")
def channels_server() -> Iterator[TidingsProcess]:
    with tidings_process("tests/channels/app.py:app") as running:
        yield running


@pytest.fixture
def js() -> Iterator[JsClient]:
    client = JsClient()
    yield client
    client.close()


@pytest.fixture
async def python(channels_server: TidingsProcess) -> AsyncIterator[PythonClient]:
    """A python-socketio client of the channels server, over WebSocket."""
    async with connected_client(channels_server.url, "websocket") as client:
        yield client
