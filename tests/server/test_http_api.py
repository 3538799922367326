"""The HTTP server API over real sockets: a backend's POST reaches the clients connected to the server
(a bare Socket.IO client and python-socketio's), the key guards it, and bad requests get clear 4xx."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import tidings
from tests.python_client import connected_client
from tests.raw_client import RawClient
from tests.serving import ThreadedServer

KEY = "s3cret-key-for-the-tests"
AUTH = {"X-API-Key": KEY}


handlers = tidings.Handlers()


@handlers.on("keep")
def keep(request, socket, context, data, channel):  # type: ignore[no-untyped-def]
    """A client's message to a channel, kept in its history (a channel with history)."""
    socket.broadcast_channel(data, channel)


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    app = tidings.Server(
        handlers=handlers,
        api_key=KEY,
        api_max_body=4096,
        history=[("^hist-", 3, 60)],
        presence=["^pres-"],
    )
    with ThreadedServer(app) as running:
        yield running


async def call(
    server: ThreadedServer, method: str, body: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.url) as http:
        return await http.post(f"/api/{method}", json=body, headers=AUTH if headers is None else headers)


async def result(server: ThreadedServer, method: str, body: Any) -> Any:
    response = await call(server, method, body)
    assert response.status_code == 200, response.text
    return response.json()["result"]


async def subscribed(server: ThreadedServer, *channels: str) -> RawClient:
    client = await RawClient.connect(server.url)
    for channel in channels:
        assert (await client.call("subscribe", channel))[0]["ok"] is True
    return client


async def test_publish_reaches_the_clients_of_the_channel(server: ThreadedServer) -> None:
    client = await subscribed(server, "room")
    try:
        assert await result(server, "publish", {"channel": "room", "data": {"text": "hi"}}) == {"reached": 1}
        assert await client.event() == ["message", {"text": "hi"}, "room"]
    finally:
        await client.close()


async def test_emit_and_send_reach_python_socketio_clients_by_session_id(server: ThreadedServer) -> None:
    async with (
        connected_client(server.url, "websocket") as first,
        connected_client(server.url, "polling") as second,
    ):
        ids = [client.client.get_sid("/") for client in (first, second)]
        sent = {"event": "price", "args": [101.5, {"currency": "EUR"}], "to": ids}
        assert await result(server, "emit", sent) == {"reached": 2}
        for client in (first, second):
            assert await client.event("price") == (101.5, {"currency": "EUR"})
        assert await result(server, "send", {"session_id": ids[1], "data": "just you"}) == {"reached": 1}
        assert await second.event("message") == ("just you",)
        everyone = {"event": "note", "args": ["all"], "exclude": ids[0]}
        assert (await result(server, "emit", everyone))["reached"] >= 1
        assert await second.event("note") == ("all",)
        assert await result(server, "broadcast", {"data": "to /"}) == {"reached": 2}
        assert [await client.event("message") for client in (first, second)] == [("to /",), ("to /",)]
        assert first.backlog == []  # the emit that excluded it did not reach it


async def test_presence_history_and_channels(server: ThreadedServer) -> None:
    one = await subscribed(server, "pres-a", "hist-a", "lobby")
    two = await subscribed(server, "pres-a")
    try:
        members = (await result(server, "presence", {"channel": "pres-a"}))["members"]
        assert sorted(member["session_id"] for member in members) == sorted([one.session_id, two.session_id])
        for number in range(5):
            assert await result(server, "publish", {"channel": "hist-a", "data": number}) == {"reached": 1}
        history = await result(server, "history", {"channel": "hist-a"})
        assert [(m["offset"], m["data"]) for m in history["messages"]] == [(3, 2), (4, 3), (5, 4)]  # size 3
        assert history["offset"] == 5 and history["epoch"]
        last = await result(server, "history", {"channel": "hist-a", "limit": 1})
        assert [m["data"] for m in last["messages"]] == [4]
        listed = (await result(server, "channels", {}))["channels"]
        counts = {entry["channel"]: entry["subscribers"] for entry in listed}
        assert (counts["pres-a"], counts["hist-a"], counts["lobby"]) == (2, 1, 1)
        only = await result(server, "channels", {"prefix": "pres-"})
        assert only == {"channels": [{"channel": "pres-a", "subscribers": 2}]}
    finally:
        await one.close()
        await two.close()


async def test_binary_messages_of_a_history_come_as_base64(server: ThreadedServer) -> None:
    async with connected_client(server.url, "websocket") as client:
        assert (await client.call("subscribe", "hist-binary"))["ok"] is True
        await client.call("keep", b"\x00\xff", "hist-binary")
        history = await result(server, "history", {"channel": "hist-binary"})
        assert history["messages"] == [{"offset": 1, "data": {"base64": "AP8="}}]


async def test_disconnect_ends_the_socket_and_tells_its_client(server: ThreadedServer) -> None:
    client = await subscribed(server, "bye")
    assert await result(server, "disconnect", {"session_id": client.session_id}) == {"disconnected": 1}
    assert await client.receive() == "41"  # Socket.IO's DISCONNECT: the client does not reconnect
    assert await result(server, "channels", {"prefix": "bye"}) == {"channels": []}
    assert await result(server, "disconnect", {"session_id": client.session_id}) == {"disconnected": 0}
    await client.close()


async def test_without_the_key_nothing_is_done(server: ThreadedServer) -> None:
    client = await subscribed(server, "guarded")
    try:
        message = {"channel": "guarded", "data": "no"}
        for headers in (
            {},
            {"X-API-Key": "wrong"},
            {"Authorization": "apikey wrong"},
            {"Authorization": KEY},
        ):
            response = await call(server, "publish", message, headers)
            assert response.status_code == 401 and "key" in response.json()["error"]
        assert await result(server, "publish", {"channel": "guarded", "data": "yes"}) == {"reached": 1}
        response = await call(
            server, "publish", {"channel": "guarded", "data": "also"}, {"Authorization": f"apikey {KEY}"}
        )
        assert response.json() == {"result": {"reached": 1}}
        assert [await client.event(), await client.event()] == [
            ["message", "yes", "guarded"],
            ["message", "also", "guarded"],
        ]
    finally:
        await client.close()


@pytest.mark.parametrize(
    ("method", "body", "status", "says"),
    [
        ("publish", b"{not json", 400, "no JSON object"),
        ("publish", b"[1, 2]", 400, "no JSON object"),
        ("publish", b'{"channel": "c", "data": 1e999}', 400, "no JSON object"),
        ("publish", b'{"data": 1}', 422, "'channel' is missing"),
        ("publish", b'{"channel": "c", "data": 1, "extra": 2}', 422, "unknown field 'extra'"),
        ("publish", b'{"channel": 5, "data": 1}', 422, "channel: must be a string"),
        ("publish", b'{"channel": "%s", "data": 1}' % (b"x" * 201), 422, "channel: length"),
        ("send", b'{"session_id": "no such thing!", "data": 1}', 422, "session_id: does not match"),
        ("emit", b'{"event": "disconnect"}', 422, "reserved"),
        ("emit", b'{"event": "e", "to": [1]}', 422, "to: not of any"),
        ("history", b'{"channel": "plain"}', 404, "no history for channel 'plain'"),
        ("presence", b'{"channel": "plain"}', 404, "no presence for channel 'plain'"),
        ("history", b'{"channel": "hist-x", "limit": -1}', 422, "limit: less than 0"),
        ("nothing", b"{}", 404, "no API method 'nothing'"),
    ],
)
async def test_bad_requests_get_a_clear_error(
    server: ThreadedServer, method: str, body: bytes, status: int, says: str
) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        response = await http.post(f"/api/{method}", content=body, headers=AUTH)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert says in response.json()["error"]


async def test_limits_and_methods(server: ThreadedServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        large = await http.post("/api/publish", json={"channel": "c", "data": "x" * 5000}, headers=AUTH)
        assert large.status_code == 413 and "api_max_body" in large.json()["error"]
        wrong = await http.get("/api/publish", headers=AUTH)
        assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"
        document = await http.get("/api/openapi.json")
        assert document.status_code == 200 and document.json()["openapi"] == "3.1.0"
        assert "/api/disconnect" in document.json()["paths"]


async def test_without_a_key_there_is_no_api() -> None:
    with ThreadedServer(tidings.Server(handlers=tidings.Handlers(), api_key=None)) as running:
        async with httpx.AsyncClient(base_url=running.url) as http:
            response = await http.post("/api/publish", json={"channel": "c", "data": 1}, headers=AUTH)
    assert response.status_code == 404


def tidings_publish(*words: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "tidings", "publish", *words]
    return subprocess.run(
        command, capture_output=True, text=True, timeout=60, env={**os.environ, "TIDINGS_API_KEY": ""}
    )


async def test_tidings_publish_through_the_api(server: ThreadedServer) -> None:
    client = await subscribed(server, "from-cli")
    try:
        url = f"{server.url}/api"
        wrong = await asyncio.to_thread(tidings_publish, "from-cli", "no", "--url", url, "--key", "wrong")
        assert wrong.returncode == 1 and "answered 401: wrong API key" in wrong.stderr
        empty = await asyncio.to_thread(tidings_publish, "nobody-here", "1", "--url", url, "--key", KEY)
        assert empty.returncode == 1 and "nobody took it" in empty.stderr
        done = await asyncio.to_thread(tidings_publish, "from-cli", '{"n": 1}', "--url", url, "--key", KEY)
        assert done.returncode == 0 and "1 took it" in done.stdout, done.stderr
        assert await client.event() == ["message", {"n": 1}, "from-cli"]  # and not the refused one
        keyless = await asyncio.to_thread(tidings_publish, "from-cli", "x", "--url", url)
        assert keyless.returncode == 2 and "no API key" in keyless.stderr
    finally:
        await client.close()
