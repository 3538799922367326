"""The python-socketio client, sync and asyncio, against a real `tidings run` process."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import socketio

from tests.python_client import PythonClient
from tests.serving import TidingsProcess

TRANSPORTS = {"websocket": ["websocket"], "polling": ["polling"], "upgrade": ["polling", "websocket"]}


@pytest.fixture(params=["sync", "async"])
async def client(request: pytest.FixtureRequest) -> AsyncIterator[PythonClient]:
    client = PythonClient(request.param, reconnection_delay=0.1, reconnection_delay_max=0.5)
    yield client
    await client.shutdown()


@pytest.fixture(params=list(TRANSPORTS))
async def connected(
    request: pytest.FixtureRequest, interop_server: TidingsProcess, client: PythonClient
) -> PythonClient:
    await client.connect(interop_server.url, transports=TRANSPORTS[request.param])
    await client.wait_for_transport("polling" if request.param == "polling" else "websocket")
    return client


async def test_welcome_and_ack(connected: PythonClient) -> None:
    welcome = await connected.event("welcome")
    assert welcome == (connected.client.get_sid(), "4")
    assert await connected.call("echo", "hi", 42, {"a": [1, None]}) == ("hi", 42, {"a": [1, None]})


async def test_binary_both_ways(connected: PythonClient) -> None:
    blob = bytes(range(256)) * 4
    nested = {"name": "file", "parts": [b"\x00\x01", b"\xff" * 10]}
    assert await connected.call("echo", blob, nested) == (blob, nested)
    await connected.emit("echo_back", "text", blob, nested)
    assert await connected.event("echoed") == ("text", blob, nested)


async def test_server_to_client_ack(connected: PythonClient) -> None:
    connected.answers["question"] = "forty-two"
    assert await connected.call("ask", "meaning?") == {"answer": "forty-two"}
    assert await connected.call("ask_async", "again?") == {"answer": "forty-two"}


async def test_events_in_order(connected: PythonClient) -> None:
    for n in range(30):
        await connected.emit("seq", n)
    assert await connected.call("seen") == list(range(30))


async def test_server_disconnect(connected: PythonClient) -> None:
    await connected.emit("kick")
    assert await connected.event("disconnect") == (connected.client.reason.SERVER_DISCONNECT,)


async def test_user_namespace(interop_server: TidingsProcess, client: PythonClient) -> None:
    await client.connect(interop_server.url, namespaces=["/admin"], auth={"role": "admin"})
    answer = await client.call("whoami", namespace="/admin")
    assert answer == {"namespace": "/admin", "auth": {"role": "admin"}}


async def test_refused_connect(interop_server: TidingsProcess, client: PythonClient) -> None:
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(interop_server.url, auth={"token": "bad"})
    assert await client.event("connect_error") == ({"message": "bad token", "data": {"code": 42}},)


async def test_reconnect_after_server_restart(client: PythonClient) -> None:
    server = TidingsProcess("tests/interop/app.py:app").start()
    try:
        await client.connect(server.url, transports=["websocket"])
        first = (await client.event("welcome"))[0]
        server.stop()
        await client.event("disconnect")
        server.start()
        second = (await client.event("welcome", timeout=20))[0]
        assert second != first
        assert await client.call("echo", "back") == "back"
    finally:
        server.stop()
