"""docs/from-python-socketio.md: its migrated app runs as written, and each row of its table does
what it says, checked with python-socketio's own client over a real socket."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import socketio

import tidings
from tests.python_client import PythonClient
from tests.serving import ThreadedServer

PAGE = Path(__file__).resolve().parent.parent / "docs" / "from-python-socketio.md"
TOKEN = {"token": "s3cret"}


def migrated_app() -> dict[str, Any]:
    """The page's Python block, run as a module: its names."""
    (code,) = re.findall(r"^```python\n(.*?)^```", PAGE.read_text(), re.MULTILINE | re.DOTALL)
    names: dict[str, Any] = {"__name__": "migrated_chat"}
    exec(compile(code, str(PAGE), "exec"), names)
    return names


@pytest.fixture(scope="module")
def chat() -> Iterator[tuple[ThreadedServer, dict[str, Any]]]:
    names = migrated_app()
    with ThreadedServer(names["app"]) as server:
        yield server, names


@pytest.fixture
async def people(chat: tuple[ThreadedServer, dict[str, Any]]) -> AsyncIterator[Any]:
    """``people("ann")``: a python-socketio client connected as that user; all shut down after."""
    server, _ = chat
    started: list[PythonClient] = []

    async def connect(user: str) -> PythonClient:
        client = PythonClient("async")
        started.append(client)
        await client.connect(f"{server.url}?user={user}", auth=TOKEN, transports=["websocket"])
        return client

    yield connect
    for client in started:
        await client.shutdown()


def sid(client: PythonClient) -> str:
    return str(client.client.get_sid())


async def test_connect_auth_refuses_as_connection_refused_error_did(
    chat: tuple[ThreadedServer, dict[str, Any]],
) -> None:
    server, _ = chat
    client = PythonClient("async")
    try:
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(server.url, auth={"token": "wrong"}, transports=["websocket"])
        assert await client.event("connect_error") == ({"message": "bad token"},)
    finally:
        await client.shutdown()


async def test_rooms_are_channels_joined_left_and_listed(people: Any) -> None:
    ann, bob = await people("ann"), await people("bob")
    assert await bob.call("join", "kitchen") == ["kitchen"]
    assert await ann.call("join", "kitchen") == ["kitchen"]  # sio.rooms(sid)
    assert await bob.event("joined") == ("ann",)  # to=room, skip_sid: bob, not ann
    assert await ann.call("say", "kitchen", "hi") == "ok"  # the return value acks
    assert await ann.event("said") == ("ann", "hi")  # to=room: the sender too
    assert await bob.event("said") == ("ann", "hi")
    assert await ann.call("leave", "kitchen") == []
    assert await bob.call("say", "kitchen", "still here?") == "ok"
    assert await bob.event("said") == ("bob", "still here?")
    assert await ann.call("say", "hall", "marker") == "ok"  # ann hears no more of the kitchen
    assert ("said", ("bob", "still here?")) not in [*ann.backlog, *drain(ann)]
    assert not [item for item in ann.backlog if item[0] == "joined"]


def drain(client: PythonClient) -> list[tuple[str, tuple[Any, ...]]]:
    items = []
    while not client.received.empty():
        items.append(client.received.get_nowait())
    return items


async def test_to_a_session_id_reaches_that_socket_only(people: Any) -> None:
    ann, bob, cid = await people("ann"), await people("bob"), await people("cid")
    await ann.emit("whisper", sid(bob), "psst")
    assert await bob.event("whisper") == ("ann", "psst")
    await ann.emit("whisper", sid(ann), "to myself")
    assert await ann.event("whisper") == ("ann", "to myself")
    assert ("whisper", ("ann", "psst")) not in [*cid.backlog, *drain(cid), *ann.backlog]


async def test_call_waits_for_the_clients_answer(people: Any) -> None:
    ann = await people("ann")
    ann.answers["answer"] = "forty-two"
    assert await ann.call("ask", "the question") == "forty-two"


async def test_the_catch_all_gets_events_with_no_handler(people: Any) -> None:
    ann = await people("ann")
    assert await ann.call("dance", 1, 2) == {"unhandled": "dance", "args": [1, 2]}
    assert await ann.call("join", "ballroom") == ["ballroom"]  # a handled event is not caught


async def test_disconnect_from_the_server_and_its_reason(
    people: Any, caplog: pytest.LogCaptureFixture
) -> None:
    ann = await people("ann")
    with caplog.at_level(logging.INFO, logger="chat"):
        await ann.emit("bye")
        assert await ann.event("disconnect") == ("server disconnect",)  # python-socketio says so
        for _ in range(100):  # the disconnect handler runs after the client was told
            if "ann left: server namespace disconnect" in caplog.messages:
                break
            await asyncio.sleep(0.05)
    assert "ann left: server namespace disconnect" in caplog.messages


async def test_emit_and_send_from_anywhere(people: Any, chat: tuple[ThreadedServer, dict[str, Any]]) -> None:
    _, names = chat
    ann, bob = await people("ann"), await people("bob")
    assert await asyncio.to_thread(names["announce"], "extra!") >= 2  # this test's two, and any left over
    assert await ann.event("news") == ("extra!",)
    assert await bob.event("news") == ("extra!",)
    assert await asyncio.to_thread(names["notify"], sid(bob), "for bob") == 1
    assert await bob.event("message") == ("for bob",)
    with pytest.raises(tidings.NoSocket):
        await asyncio.to_thread(names["notify"], sid(bob).split(".")[0] + ".nobodynobodynobody00", "x")
