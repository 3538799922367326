"""The official Socket.IO Admin UI (npm @socket.io/admin-ui, its built page served by tidings itself) in
headless Chromium, against a running tidings with python-socketio clients in two channels: the page
lists the sockets and the channels as rooms, and its disconnect button disconnects the client."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import socketio
from playwright.sync_api import Browser, Page, expect

from tests.peers import NODE_DIR, node_packages
from tests.serving import ROOT, ThreadedServer
from tidings import AdminUI, Handlers, Server
from tidings.server.admin import hash_password

UI_FILES = NODE_DIR / "node_modules" / "@socket.io" / "admin-ui" / "ui" / "dist"
PASSWORD = "correct horse"
#: The screenshot docs/operations.md shows, taken by this test: with TIDINGS_UPDATE_SCREENSHOTS=1 it
#: is written there, else among the run's artifacts (the ids and port in it change at each run).
DOCS_SCREENSHOT = ROOT / "docs" / "images" / "admin-ui.png"
TIMEOUT = 10


class Client:
    """A python-socketio client subscribed to ``channel``, that notes when the server disconnects it."""

    def __init__(self, url: str, channel: str) -> None:
        self.client = socketio.Client(reconnection=False)
        self.disconnected = threading.Event()
        self.client.on("disconnect", lambda *reason: self.disconnected.set())
        self.client.connect(url, transports=["websocket"], wait_timeout=TIMEOUT)
        assert self.client.call("subscribe", channel, timeout=TIMEOUT) == {"ok": True}
        self.id = self.client.get_sid("/")


@pytest.fixture
def server() -> Iterator[ThreadedServer]:
    node_packages(NODE_DIR, "@socket.io/admin-ui")
    admin_ui = AdminUI(auth=("admin", hash_password(PASSWORD)), ui_files=UI_FILES)
    with ThreadedServer(Server(handlers=Handlers(), admin_ui=admin_ui)) as running:
        yield running


def log_in(page: Page, server: ThreadedServer, password: str) -> None:
    """The UI's connection form: the server's URL (its admin namespace is /admin by default)."""
    page.goto(f"{server.url}/admin-ui/")
    page.get_by_label("Server URL").fill(server.url)
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Connect").click()


def test_the_ui_lists_sockets_and_rooms_and_disconnects_one(
    browser: Browser, server: ThreadedServer, artifacts: Path
) -> None:
    ann, bob = Client(server.url, "lobby"), Client(server.url, "garden")
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    try:
        log_in(page, server, "wrong")
        expect(page.get_by_text("Invalid credentials")).to_be_visible()
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Connect").click()
        expect(page.get_by_role("button", name="Connect")).to_be_hidden()

        page.goto(f"{server.url}/admin-ui/#/rooms/")
        for room in ("lobby", "garden"):
            expect(page.get_by_role("row").filter(has_text=room)).to_have_count(1)

        page.goto(f"{server.url}/admin-ui/#/sockets/")
        rows = page.get_by_role("row")
        expect(rows.filter(has_text=ann.id)).to_have_count(1)
        expect(rows.filter(has_text=bob.id)).to_have_count(1)
        update = os.environ.get("TIDINGS_UPDATE_SCREENSHOTS") == "1"
        page.screenshot(path=DOCS_SCREENSHOT if update else artifacts / "admin-ui.png", animations="disabled")

        expect(page.locator("i.mdi-logout")).to_have_count(2)  # the icons, served by tidings too
        rows.filter(has_text=bob.id).get_by_role("button").click()  # "Disconnect this Socket instance"
        assert bob.disconnected.wait(TIMEOUT)
        page.goto(f"{server.url}/admin-ui/#/sockets/")  # the click showed the socket's details too
        expect(rows.filter(has_text=ann.id)).to_have_count(1)
        expect(rows.filter(has_text=bob.id)).to_have_count(0)
        assert not ann.disconnected.is_set()
    finally:
        page.screenshot(path=str(artifacts / "admin-ui-end.png"))
        page.close()
        for client in (ann, bob):
            client.client.disconnect()
