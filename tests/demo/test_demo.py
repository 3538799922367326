"""`tidings demo` as a real process: its pages over HTTP, its rooms with python-socketio clients.

The browser itself is driven elsewhere (the Chromium tests); here the server's side of the DOM
contract (the ids of the pages) and of the chat (what each client hears, and what is refused).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from tests.brokers.cluster import broker_args, new_prefix
from tests.python_client import PythonClient
from tests.serving import TidingsProcess, free_port, tidings_process, wait_for_port
from tidings import script_tag
from tidings.demo import chat

Connect = Callable[..., Awaitable[PythonClient]]
Join = Callable[..., Awaitable[PythonClient]]

ROOM_LIST_IDS = ('id="rooms"', 'id="new-room"', 'id="new-room-name"')
ROOM_PAGE_IDS = (
    'id="nick-form"',
    'id="nick"',
    'id="state"',
    'id="transport"',
    'id="messages"',
    'id="members"',
    'id="message-form"',
    'id="message"',
)


@pytest.fixture(scope="module")
def demo() -> Iterator[TidingsProcess]:
    with tidings_process(None) as running:  # `tidings demo --port PORT`
        yield running


@pytest.fixture
async def connect(demo: TidingsProcess) -> AsyncIterator[Connect]:
    """Connects python-socketio clients with a nickname; shuts them after."""
    opened: list[PythonClient] = []

    async def connect(name: str, server: TidingsProcess = demo, **options: Any) -> PythonClient:
        client = PythonClient("async")
        opened.append(client)
        options.setdefault("transports", ["websocket"])
        await client.connect(server.url, auth={"name": name}, **options)
        return client

    yield connect
    for client in opened:
        await client.shutdown()


@pytest.fixture
def join(demo: TidingsProcess, connect: Connect) -> Join:
    """Connects python-socketio clients with a nickname and puts them in a room."""

    async def join(name: str, room: str, server: TidingsProcess = demo, **options: Any) -> PythonClient:
        client = await connect(name, server, **options)
        assert await client.call("subscribe", f"room-{room}") == {"ok": True}
        return client

    return join


async def heard(client: PythonClient, event: str, channel: str) -> tuple[Any, ...]:
    """The arguments of the next ``event`` about ``channel`` (``message``: its second argument; presence
    events: their first), passing over those of other channels (the room list's directory)."""
    while True:
        args = await client.event(event)
        if (args[1:2] if event == "message" else args[:1]) == (channel,):
            return args


async def presence_change(client: PythonClient, channel: str, *, joined: str = "", left: str = "") -> Any:
    """The member named ``joined`` (or ``left``) in the first ``presence`` notice of ``channel`` that
    says it came (went)."""
    while True:
        (_, notice) = await heard(client, "presence", channel)
        for member in notice["joined"] if joined else notice["left"]:
            if member["info"]["name"] == (joined or left):
                return member


async def names_in(client: PythonClient, room: str) -> list[str]:
    answer = await client.call("presence", f"room-{room}")
    assert answer["ok"] is True, answer
    return sorted(member["info"]["name"] for member in answer["presence"])


class RoomList(HTMLParser):
    """``{room: (href, people)}`` from the ``li`` items of the room list's ``ul#rooms``."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.rooms: dict[str, tuple[str, int]] = {}
        self._in_list = False
        self._href: str | None = None
        self._name = ""
        self._count = ""
        self._field: str | None = None
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "ul" and attributes.get("id") == "rooms":
            self._in_list = True
        elif self._in_list and tag == "a":
            self._href, self._field = attributes.get("href"), "name"
        elif self._in_list and tag == "span" and attributes.get("class") == "count":
            self._field = "count"

    def handle_data(self, data: str) -> None:
        if self._field == "name":
            self._name += data
        elif self._field == "count":
            self._count += data

    def handle_endtag(self, tag: str) -> None:
        if tag in ("a", "span"):
            self._field = None
        elif tag == "li" and self._in_list:
            assert self._href is not None
            self.rooms[self._name] = (self._href, int(self._count.split()[0]))
            self._href, self._name, self._count = None, "", ""
        elif tag == "ul":
            self._in_list = False


def room_list(server: TidingsProcess) -> dict[str, tuple[str, int]]:
    page = httpx.get(f"{server.url}/")
    assert page.status_code == 200
    return RoomList(page.text).rooms


# -- the pages ----------------------------------------------------------------------------------------


def test_it_says_where_to_open_it_and_serves_the_pages(demo: TidingsProcess) -> None:
    assert f"tidings demo: open http://127.0.0.1:{demo.port}/ " in demo.log.read_text()
    with httpx.Client(base_url=demo.url) as http:
        rooms = http.get("/")
        assert rooms.status_code == 200
        assert rooms.headers["content-type"] == "text/html; charset=utf-8"
        assert all(needle in rooms.text for needle in ROOM_LIST_IDS)
        assert RoomList(rooms.text).rooms["lobby"] == ("/room/lobby", 0)  # listed even when empty
        assert '<meta name="viewport"' in rooms.text

        room = http.get("/room/new_one")  # never heard of: any valid name is a room
        assert room.status_code == 200
        assert script_tag() in room.text
        assert all(needle in room.text for needle in ROOM_PAGE_IDS)
        assert 'data-room="new_one"' in room.text

        for path, kind in [("/static/demo.css", "text/css"), ("/static/room.js", "text/javascript")]:
            reply = http.get(path)
            assert (reply.status_code, reply.headers["content-type"]) == (200, f"{kind}; charset=utf-8")
        assert http.get("/tidings/tidings.js").status_code == 200
        assert http.get("/static/nothing.js").status_code == 404


def test_the_new_room_form_takes_you_to_the_room_or_says_why_not(demo: TidingsProcess) -> None:
    with httpx.Client(base_url=demo.url) as http:
        created = http.get("/new", params={"name": "kitchen"})
        assert created.status_code == 303
        assert created.headers["location"].endswith("/room/kitchen")
        for bad in ["", "two words", "x" * 33, "<b>bold</b>"]:
            refused = http.get("/new", params={"name": bad})
            assert refused.status_code == 400
            assert chat.ROOM_RULE in refused.text
            assert 'id="new-room"' in refused.text  # the form again, to try another name
        escaped = http.get("/room/<b>bold")
        assert escaped.status_code == 400
        assert "&lt;b&gt;bold" in escaped.text
        assert "<b>bold" not in escaped.text


def test_it_runs_from_any_directory(tmp_path: Path) -> None:
    """Templates and static files come from the package, not from the working directory."""
    port = free_port()
    command = [sys.executable, "-m", "tidings", "demo", "--port", str(port)]
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        assert process.stdout.readline().decode().startswith(f"tidings demo: open http://127.0.0.1:{port}/ ")
        wait_for_port(port, process=process)
        assert 'id="rooms"' in httpx.get(f"http://127.0.0.1:{port}/").text
        assert httpx.get(f"http://127.0.0.1:{port}/static/room.js").status_code == 200
    finally:
        process.terminate()
        process.wait(10)


# -- the chat -----------------------------------------------------------------------------------------


async def test_two_in_a_room_chat_and_another_room_hears_nothing(join: Join) -> None:
    ann = await join("ann", "x")
    assert await ann.event("message") == ({"action": "join", "name": "ann"},)  # her own arrival
    bob = await join("bob", "x", transports=["polling"])
    assert await heard(ann, "message", "room-x") == ({"action": "join", "name": "bob"}, "room-x")
    member = await presence_change(ann, "room-x", joined="bob")  # presence: who came
    assert member["info"] == {"name": "bob", "room": "x"}
    assert await names_in(bob, "x") == ["ann", "bob"]
    carol = await join("carol", "y")

    assert await ann.call("message", "hi <b>bob</b>", "room-x") == {"ok": True}
    said = ({"action": "message", "name": "ann", "text": "hi <b>bob</b>"}, "room-x")
    assert await heard(ann, "message", "room-x") == said
    assert await heard(bob, "message", "room-x") == said
    # Carol's own message comes after Ann's was sent: had Ann's reached her, it would be first.
    assert await carol.call("message", "anyone?", "room-y") == {"ok": True}
    assert [await carol.event("message") for _ in range(2)] == [
        ({"action": "join", "name": "carol"},),
        ({"action": "message", "name": "carol", "text": "anyone?"}, "room-y"),
    ]

    await bob.disconnect()
    assert await heard(ann, "message", "room-x") == ({"action": "leave", "name": "bob"}, "room-x")
    assert (await presence_change(ann, "room-x", left="bob"))["session_id"] == member["session_id"]
    assert await names_in(ann, "x") == ["ann"]


async def test_the_room_list_counts_people(demo: TidingsProcess, join: Join) -> None:
    ann = await join("ann", "counted")
    bob = await join("bob", "counted")
    await join("carol", "also-counted")
    rooms = room_list(demo)
    assert rooms["counted"] == ("/room/counted", 2)
    assert rooms["also-counted"] == ("/room/also-counted", 1)
    await bob.disconnect()
    await presence_change(ann, "room-counted", left="bob")
    assert room_list(demo)["counted"] == ("/room/counted", 1)


async def test_a_new_nickname_is_told_to_the_room_and_shown_in_its_presence(join: Join) -> None:
    ann = await join("ann", "names")
    bob = await join("bob", "names")
    assert await ann.call("rename", "Anna Karenina") == {"ok": True}
    renamed = ({"action": "rename", "old": "ann", "name": "Anna Karenina"}, "room-names")
    assert await heard(bob, "message", "room-names") == renamed
    assert await names_in(bob, "names") == ["Anna Karenina", "bob"]
    assert await ann.call("message", "hello", "room-names") == {"ok": True}
    said = ({"action": "message", "name": "Anna Karenina", "text": "hello"}, "room-names")
    assert await heard(bob, "message", "room-names") == said


async def refused_as_taken(client: PythonClient, room: str, name: str) -> None:
    answer = await client.call("subscribe", f"room-{room}")
    assert answer == {"ok": False, "error": chat.taken(name, room)}


async def test_a_nickname_somebody_in_the_room_goes_by_is_refused(connect: Connect, join: Join) -> None:
    ann = await join("ann", "taken")
    for name in ["ann", "ANN", "\uff21nn"]:  # capitals and compatibility forms aside: one name
        await refused_as_taken(await connect(name), "taken", name)
    assert await names_in(ann, "taken") == ["ann"]
    await join("ann", "elsewhere")  # the name is taken in a room, not everywhere

    # A refused client keeps its connection: it renames itself, and is let in.
    second = await connect("ann")
    await refused_as_taken(second, "taken", "ann")
    assert await second.call("rename", "anne") == {"ok": True}
    assert await second.call("subscribe", "room-taken") == {"ok": True}

    bob = await join("bob", "taken")
    assert await bob.call("rename", "Ann") == {"ok": False, "error": chat.taken("Ann", "taken")}
    assert await bob.call("rename", "Bob") == {"ok": True}  # its own name, in capitals
    assert await names_in(ann, "taken") == ["Bob", "ann", "anne"]

    await ann.disconnect()  # gone: the name is free again
    await presence_change(bob, "room-taken", left="ann")
    await join("ann", "taken")


async def race_for_a_name(clients: list[PythonClient], room: str) -> None:
    """Every client, connected under one name (in any capitals), asks to join ``room`` at once: one
    is let in, the others are told the name is taken."""
    answers = await asyncio.gather(*(client.call("subscribe", f"room-{room}") for client in clients))
    assert answers.count({"ok": True}) == 1, answers
    winner = clients[answers.index({"ok": True})]
    assert all(
        "is taken in room" in answer.get("error", "") for answer in answers if answer["ok"] is not True
    )
    assert len(await names_in(winner, room)) == 1


async def test_of_two_taking_one_name_at_once_one_is_refused(connect: Connect) -> None:
    for round in range(3):
        await race_for_a_name([await connect(name) for name in ["ann", "Ann", "ANN", "ann"]], f"race-{round}")


@pytest.mark.parametrize(
    "auth", [{}, {"name": ""}, {"name": " ann"}, {"name": "x" * 25}, {"name": "<b>"}, {"name": 7}]
)
async def test_a_bad_nickname_is_refused_with_the_rule(demo: TidingsProcess, auth: dict[str, Any]) -> None:
    client = PythonClient("async")
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(demo.url, auth=auth, transports=["websocket"])
    (error,) = await client.event("connect_error")
    assert chat.NICKNAME_RULE in error["message"]
    await client.shutdown()


async def test_bad_requests_are_refused_with_a_reason_and_the_server_stays_up(
    demo: TidingsProcess, join: Join
) -> None:
    ann = await join("ann", "rules")
    refusals = [
        (("subscribe", "room-other"), "one room per connection"),
        (("message", "x" * (chat.MAX_MESSAGE + 1), "room-rules"), chat.MESSAGE_RULE),
        (("message", "   ", "room-rules"), chat.MESSAGE_RULE),
        (("message", {"not": "text"}, "room-rules"), chat.MESSAGE_RULE),
        (("message", "psst", "room-elsewhere"), "not subscribed to 'room-elsewhere'"),
        (("rename", "no!"), chat.NICKNAME_RULE),
        (("rename",), chat.NICKNAME_RULE),
    ]
    for request, reason in refusals:
        answer = await ann.call(*request)
        assert answer["ok"] is False and reason in answer["error"], (request, answer)
    newcomer = PythonClient("async")
    await newcomer.connect(demo.url, auth={"name": "bob"}, transports=["websocket"])
    try:
        for room in ["bad name", "x" * 33, ""]:
            answer = await newcomer.call("subscribe", f"room-{room}")
            assert answer["ok"] is False and chat.ROOM_RULE in answer["error"]
        for channel in ["lobby", chat.DIRECTORY]:
            assert (await newcomer.call("subscribe", channel))["error"].startswith("only rooms can be joined")
    finally:
        await newcomer.shutdown()

    assert demo.process is not None and demo.process.poll() is None
    longest = "y" * chat.MAX_MESSAGE
    assert await ann.call("message", longest, "room-rules") == {"ok": True}
    said = ({"action": "message", "name": "ann", "text": longest}, "room-rules")
    assert await heard(ann, "message", "room-rules") == said


def test_names_follow_the_rules() -> None:
    assert [chat.room_error(name) for name in ["lobby", "Room_2-b", "x" * 32]] == [None] * 3
    assert all(chat.room_error(name) for name in ["", "a b", "é", "x" * 33, "a/b", None])
    assert [chat.nickname_error(name) for name in ["ann", "Zoë O'Neil", "李雷", "x" * 24]] == [None] * 4
    assert all(chat.nickname_error(name) for name in ["", " ann", "ann ", "-ann", "x" * 25, "a<b", None])


# -- several demos ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_demos() -> Iterator[list[TidingsProcess]]:
    """Two `tidings demo` processes on one Redis (the machine's, under a prefix of their own)."""
    prefix = new_prefix()
    demos = [TidingsProcess(None, None, *broker_args(prefix)) for _ in range(2)]
    try:
        yield [demo.start() for demo in demos]
    finally:
        for demo in demos:
            demo.stop()


async def test_demos_sharing_a_broker_share_their_names(
    shared_demos: list[TidingsProcess], connect: Connect, join: Join
) -> None:
    first, second = shared_demos
    await join("ann", "one-name", first)
    await refused_as_taken(await connect("Ann", second), "one-name", "Ann")
    for round in range(3):
        clients = [await connect("bob", shared_demos[index % 2]) for index in range(4)]
        await race_for_a_name(clients, f"shared-race-{round}")


async def test_demos_sharing_a_broker_share_their_rooms(
    shared_demos: list[TidingsProcess], join: Join
) -> None:
    first, second = shared_demos
    ann = await join("ann", "shared", first)
    bob = await join("bob", "shared", second)
    assert await heard(ann, "message", "room-shared") == ({"action": "join", "name": "bob"}, "room-shared")
    assert await bob.call("message", "across", "room-shared") == {"ok": True}
    said = ({"action": "message", "name": "bob", "text": "across"}, "room-shared")
    assert await heard(ann, "message", "room-shared") == said  # so Bob's presence is in Redis too
    assert await names_in(ann, "shared") == ["ann", "bob"]
    assert room_list(first)["shared"] == ("/room/shared", 2)
