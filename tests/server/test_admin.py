"""The Socket.IO Admin UI's namespace, over real sockets, with python-socketio's client in the UI's
place: the login, what the UI is sent, and its join, leave and disconnect actions."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio

from tests.serving import ThreadedServer
from tidings import AdminUI, Handlers, Server
from tidings.server.admin import hash_password

PASSWORD = "correct horse"
HASH = hash_password(PASSWORD)
TIMEOUT = 10


class Recorder:
    """A python-socketio client that records every event of every namespace, in order."""

    def __init__(self) -> None:
        self.client = socketio.Client(reconnection=False)
        self.events: queue.Queue[tuple[str, tuple[Any, ...]]] = queue.Queue()
        for namespace in ("/", "/admin"):
            self.client.on("*", lambda event, *args: self.events.put((event, args)), namespace=namespace)
            for event in ("connect_error", "disconnect"):
                self.client.on(event, self._recorder(event), namespace=namespace)

    def _recorder(self, event: str) -> Any:
        return lambda *args: self.events.put((event, args))

    def next(self, event: str, *start: Any) -> tuple[Any, ...]:
        """The arguments of the next ``event`` whose first arguments are ``start``, skipping others."""
        while True:
            name, args = self.events.get(timeout=TIMEOUT)
            if name == event and args[: len(start)] == start:
                return args


def serve(admin_ui: AdminUI) -> ThreadedServer:
    handlers = Handlers()

    @handlers.on("chat")
    def chat(request: Any, socket: Any, context: Any, text: str) -> str:
        return "ok"

    return ThreadedServer(Server(handlers=handlers, admin_ui=admin_ui))


@pytest.fixture
def server() -> Iterator[ThreadedServer]:
    with serve(AdminUI(auth=("admin", HASH), stats_interval=0.2)) as running:
        yield running


@pytest.fixture
def clients() -> Iterator[list[Recorder]]:
    made: list[Recorder] = []
    yield made
    for recorder in made:
        recorder.client.disconnect()


def admin(server: ThreadedServer, clients: list[Recorder], **auth: str) -> Recorder:
    recorder = Recorder()
    clients.append(recorder)
    recorder.client.connect(server.url, namespaces=["/admin"], auth=auth, wait_timeout=TIMEOUT)
    return recorder


def user(server: ThreadedServer, clients: list[Recorder], *channels: str) -> Recorder:
    recorder = Recorder()
    clients.append(recorder)
    recorder.client.connect(server.url, namespaces=["/"], transports=["websocket"], wait_timeout=TIMEOUT)
    for channel in channels:
        assert recorder.client.call("subscribe", channel, timeout=TIMEOUT) == {"ok": True}
    return recorder


def test_a_wrong_password_is_refused(server: ThreadedServer, clients: list[Recorder]) -> None:
    wrong = [
        {"username": "admin", "password": "wrong"},
        {"username": "root", "password": PASSWORD},
        {"username": "admin", "password": "x" * 100},  # over bcrypt's 72 bytes
        {"sessionId": ["not", "a", "string"]},
        {},
    ]
    for auth in wrong:
        with pytest.raises(socketio.exceptions.ConnectionError):
            admin(server, clients, **auth)
        assert clients[-1].next("connect_error") == ({"message": "invalid credentials"},)


def test_the_ui_is_sent_config_sockets_and_stats(server: ThreadedServer, clients: list[Recorder]) -> None:
    ann = user(server, clients, "lobby")
    ui = admin(server, clients, username="admin", password=PASSWORD)
    (session_id,) = ui.next("session")
    assert isinstance(session_id, str) and session_id
    (config,) = ui.next("config")
    assert {"JOIN", "LEAVE", "DISCONNECT", "ALL_EVENTS"} <= set(config["supportedFeatures"])
    (sockets,) = ui.next("all_sockets")
    ann_id = ann.client.get_sid("/")
    (shown,) = [s for s in sockets if s["id"] == ann_id]
    assert shown["nsp"] == "/" and shown["transport"] == "websocket"
    assert shown["rooms"] == [ann_id, "lobby"]
    (stats,) = ui.next("server_stats")
    assert stats["clientsCount"] == 2
    assert {"name": "/", "socketsCount": 1} in stats["namespaces"]
    (stats,) = ui.next("server_stats")  # again, every stats_interval
    assert {"type": "rawConnection", "count": 1} not in stats["aggregatedEvents"]

    # A login with the session id the UI was given, as it reconnects.
    again = admin(server, clients, sessionId=session_id)
    again.next("config")


def test_the_ui_sees_sockets_rooms_and_events(server: ThreadedServer, clients: list[Recorder]) -> None:
    ui = admin(server, clients, username="admin", password=PASSWORD)
    ui.next("all_sockets")
    bob = user(server, clients, "garden")
    bob_id = bob.client.get_sid("/")
    shown, _time = ui.next("socket_connected")
    assert shown["id"] == bob_id
    assert ui.next("room_joined")[:3] == ("/", "garden", bob_id)
    assert bob.client.call("chat", "hello", timeout=TIMEOUT) == "ok"
    assert ui.next("event_received")[:3] == ("/", bob_id, ["chat", "hello"])
    assert bob.client.call("unsubscribe", "garden", timeout=TIMEOUT) == {"ok": True}
    assert ui.next("room_left")[:3] == ("/", "garden", bob_id)


def test_join_leave_and_disconnect_from_the_ui(server: ThreadedServer, clients: list[Recorder]) -> None:
    ui = admin(server, clients, username="admin", password=PASSWORD)
    ui.next("all_sockets")
    ann, bob = user(server, clients, "lobby"), user(server, clients, "lobby")
    ann_id, bob_id = ann.client.get_sid("/"), bob.client.get_sid("/")

    ui.client.emit("join", ("/", "garden", ann_id), namespace="/admin")
    ui.next("room_joined", "/", "garden", ann_id)
    ui.client.emit("leave", ("/", "lobby", ann_id), namespace="/admin")
    ui.next("room_left", "/", "lobby", ann_id)
    ui.client.emit("emit", ("/", "garden", "news", "for the garden"), namespace="/admin")
    assert ann.next("news") == ("for the garden",)

    ui.client.emit("_disconnect", ("/", False, bob_id), namespace="/admin")
    assert bob.next("disconnect") == (socketio.Client.reason.SERVER_DISCONNECT,)
    ui.next("socket_disconnected", "/", bob_id, "server namespace disconnect")
    assert ann.client.connected  # the filter named bob only

    ui.client.emit("_disconnect", ("/", True, "garden"), namespace="/admin")  # close: the connection
    ann.next("disconnect")
    ui.next("socket_disconnected", "/", ann_id)


def test_read_only_and_no_login() -> None:
    with serve(AdminUI(auth=False, read_only=True)) as server:
        made: list[Recorder] = []
        try:
            ann = user(server, made)
            ui = admin(server, made)
            (config,) = ui.next("config")
            assert "DISCONNECT" not in config["supportedFeatures"]
            ui.client.emit("_disconnect", ("/", False, None), namespace="/admin")
            assert ann.client.call("subscribe", "lobby", timeout=TIMEOUT) == {"ok": True}
            assert ui.next("room_joined")[:2] == ("/", "lobby")  # still connected, still told
        finally:
            for recorder in made:
                recorder.client.disconnect()


def test_the_options_are_checked() -> None:
    with pytest.raises(ValueError, match="bcrypt hash"):
        AdminUI(auth=("admin", "plain text"))
    with pytest.raises(ValueError, match="username"):
        AdminUI(auth=True)  # type: ignore[arg-type]


def test_without_admin_ui_there_is_no_admin_namespace(clients: list[Recorder]) -> None:
    with (
        ThreadedServer(Server(handlers=Handlers())) as server,
        pytest.raises(socketio.exceptions.ConnectionError),
    ):
        admin(server, clients, username="admin", password=PASSWORD)


async def test_the_page_is_served_from_its_folder_only(tmp_path: Path) -> None:
    modules = tmp_path / "node_modules"
    dist = modules / "@socket.io" / "admin-ui" / "ui" / "dist"
    (dist / "js").mkdir(parents=True)
    (dist / "index.html").write_text(
        '<html><head><link rel="stylesheet" href="https://fonts.example/css">'
        '<link href="css/app.css" rel="stylesheet"></head><body></body></html>'
    )
    (dist / "js" / "app.js").write_text("console.log(1)")
    (modules / "@mdi" / "font" / "css").mkdir(parents=True)
    (modules / "@mdi" / "font" / "css" / "icons.css").write_text(".mdi {}")
    (tmp_path / "secret.txt").write_text("not for the web")
    app = Server(handlers=Handlers(), admin_ui=AdminUI(auth=False, ui_files=dist))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
        page = await http.get("/admin-ui/")
        assert page.status_code == 200
        assert "fonts.example" not in page.text  # nothing from the internet
        assert '<link rel="stylesheet" href="mdi/css/materialdesignicons.min.css">' in page.text
        script = await http.get("/admin-ui/js/app.js")
        assert script.text == "console.log(1)" and script.headers["content-type"] == "text/javascript"
        assert (await http.get("/admin-ui/mdi/css/icons.css")).text == ".mdi {}"
        redirect = await http.get("/admin-ui")
        assert (redirect.status_code, redirect.headers["location"]) == (308, "/admin-ui/")
        for outside in ("/admin-ui/%2E%2E/%2E%2E/%2E%2E/%2E%2E/%2E%2E/secret.txt", "/admin-ui/missing.js"):
            assert (await http.get(outside)).status_code == 404
    with pytest.raises(ValueError, match=r"no index\.html"):
        Server(handlers=Handlers(), admin_ui=AdminUI(auth=False, ui_files=tmp_path))


def test_password_guesses_are_limited_per_address(clients: list[Recorder]) -> None:
    """An address that guessed too often is refused before bcrypt runs, even with the right
    password; the UI already logged in comes back with its session id, and users go on."""
    with serve(AdminUI(auth=("admin", HASH), login_attempts_per_minute=3)) as server:
        ui = admin(server, clients, username="admin", password=PASSWORD)
        (session_id,) = ui.next("session")
        bob = user(server, clients, "lobby")
        for _ in range(2):
            with pytest.raises(socketio.exceptions.ConnectionError):
                admin(server, clients, username="admin", password="wrong")
            assert clients[-1].next("connect_error") == ({"message": "invalid credentials"},)
        with pytest.raises(socketio.exceptions.ConnectionError):
            admin(server, clients, username="admin", password=PASSWORD)
        assert clients[-1].next("connect_error") == ({"message": "too many login attempts"},)
        admin(server, clients, sessionId=session_id).next("config")
        assert bob.client.call("chat", "still here", timeout=TIMEOUT) == "ok"


def test_password_checks_at_once_are_bounded(clients: list[Recorder]) -> None:
    """Logins past ``max_login_checks`` while a password is being checked are refused as busy."""
    with serve(AdminUI(auth=("admin", HASH), max_login_checks=1)) as server:
        start = threading.Barrier(8)

        def guess() -> None:
            start.wait()
            with contextlib.suppress(socketio.exceptions.ConnectionError):
                admin(server, clients, username="admin", password="wrong")

        threads = [threading.Thread(target=guess) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        refusals = [recorder.next("connect_error")[0]["message"] for recorder in clients]
        assert "busy: too many logins at once" in refusals
        assert set(refusals) <= {"busy: too many logins at once", "invalid credentials"}
