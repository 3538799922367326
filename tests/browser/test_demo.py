"""The chat demo in headless Chromium: rooms, the polling fallback and upgrade, a server restart.

Each page is its own browser context (its own cookies and storage), as two people on two machines;
but for the tabs of one browser, which share their storage as a person's tabs do.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Browser, Page, WebSocketRoute, expect

from tests.serving import TidingsProcess
from tidings.demo import chat

ANY_URL = re.compile(".*")
# Long enough for a reconnect with backoff; a page that gets there sooner goes on at once.
RECONNECT_TIMEOUT = 30_000


def open_room(browser: Browser, server: TidingsProcess, room: str, name: str, **viewport: int) -> Page:
    context = browser.new_context(viewport={"width": 1000, "height": 700, **viewport} if viewport else None)
    page = context.new_page()
    page.goto(f"{server.url}/room/{room}?name={name}")
    return connected(page)


def connected(page: Page) -> Page:
    expect(page.locator("#state")).to_have_text("connected")
    return page


def say(page: Page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")
    expect(page.locator("#message")).to_have_value("")


def expect_members(page: Page, *names: str) -> None:
    members = page.locator("#members li")
    expect(members).to_have_count(len(names))
    for name in names:
        expect(members.filter(has_text=re.compile(f"^{name}$"))).to_have_count(1)


def chat_line(page: Page, nick: str, text: str) -> object:
    return (
        page.locator("#messages li.message")
        .filter(has=page.locator(".nick", has_text=nick))
        .filter(has=page.locator(".text", has_text=text))
    )


def test_a_message_reaches_its_room_only(browser: Browser, demo: TidingsProcess, artifacts: Path) -> None:
    ann = open_room(browser, demo, "lobby", "ann")
    bob = open_room(browser, demo, "lobby", "bob")
    cat = open_room(browser, demo, "garden", "cat")

    expect(ann.locator("#messages li.notice", has_text="bob joined")).to_have_count(1)
    expect_members(ann, "ann", "bob")
    expect_members(cat, "cat")

    say(ann, "hello from ann")
    expect(chat_line(bob, "ann", "hello from ann")).to_have_count(1)
    expect(chat_line(ann, "ann", "hello from ann")).to_have_count(1)
    # A fence: cat's own message arrives after ann's was sent, so ann's would have arrived by now.
    say(cat, "anyone in the garden?")
    expect(chat_line(cat, "cat", "anyone in the garden?")).to_have_count(1)
    expect(cat.locator("#messages li.message")).to_have_count(1)
    expect(chat_line(ann, "cat", "anyone in the garden?")).to_have_count(0)

    say(bob, "hi ann")
    expect(chat_line(ann, "bob", "hi ann")).to_have_count(1)
    ann.screenshot(path=artifacts / "demo-room.png")

    bob.context.close()
    expect(ann.locator("#messages li.notice", has_text="bob left")).to_have_count(1)
    expect_members(ann, "ann")


def test_the_room_list_links_to_rooms_and_creates_them(browser: Browser, demo: TidingsProcess) -> None:
    ann = open_room(browser, demo, "lobby", "ann")
    page = browser.new_context().new_page()
    page.goto(demo.url + "/")
    expect(page.locator("#rooms a", has_text="lobby")).to_have_attribute("href", "/room/lobby")

    page.fill("#new-room-name", "kitchen")
    page.press("#new-room-name", "Enter")
    page.wait_for_url(re.compile(r"/room/kitchen"))
    page.fill("#nick", "dan")
    page.press("#nick", "Enter")
    connected(page)
    say(page, "first in the kitchen")
    expect(chat_line(page, "dan", "first in the kitchen")).to_have_count(1)
    expect(chat_line(ann, "dan", "first in the kitchen")).to_have_count(0)


def test_the_page_fits_a_phone(browser: Browser, demo: TidingsProcess, artifacts: Path) -> None:
    phone = open_room(browser, demo, "lobby", "ann", width=390, height=844)
    say(phone, "on the go")
    expect(chat_line(phone, "ann", "on the go")).to_be_visible()
    # Nothing wider than the screen: no sideways scrolling.
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=artifacts / "demo-phone.png")


def pick_nick(page: Page, name: str) -> None:
    page.fill("#nick", name)
    page.press("#nick", "Enter")


def test_two_tabs_of_one_browser_are_two_people(
    browser: Browser, demo: TidingsProcess, artifacts: Path
) -> None:
    context = browser.new_context()
    first = context.new_page()
    first.goto(f"{demo.url}/room/lobby")
    expect(first.locator("#nick")).to_have_value("")  # nobody chose a name in this browser yet
    pick_nick(first, "ann")
    connected(first)
    expect_members(first, "ann")

    second = context.new_page()
    second.goto(f"{demo.url}/room/lobby")
    # The last name chosen is suggested, and nothing more: this tab has not joined.
    expect(second.locator("#nick")).to_have_value("ann")
    expect(second.locator("#chat")).to_be_hidden()
    second.press("#nick", "Enter")  # as ann: the room says no, and why
    expect(second.locator("#nick-error")).to_have_text(chat.taken("ann", "lobby"))
    expect(second.locator("#nick-form")).to_be_visible()
    expect(second.locator("#chat")).to_be_hidden()
    second.screenshot(path=artifacts / "demo-nickname-taken.png")
    pick_nick(second, "bob")
    connected(second)
    expect(second.locator("#nick-form")).to_be_hidden()
    for page in (first, second):
        expect_members(page, "ann", "bob")
    expect(first.locator("#messages li.notice", has_text="ann joined")).to_have_count(1)

    second.click("#change-nick")
    pick_nick(second, "rob")
    expect(second.locator("#me")).to_have_text("rob")
    expect(first.locator("#messages li.notice", has_text="bob is now rob")).to_have_count(1)
    expect_members(first, "ann", "rob")
    expect(first.locator("#me")).to_have_text("ann")

    # The first tab leaves the room and comes back: under its own name, not the last one chosen.
    first.goto(demo.url + "/")
    expect(second.locator("#messages li.notice", has_text="ann left")).to_have_count(1)
    first.go_back()
    connected(first)
    expect(first.locator("#me")).to_have_text("ann")
    expect_members(second, "ann", "rob")
    third = context.new_page()
    third.goto(f"{demo.url}/room/lobby")
    expect(third.locator("#nick")).to_have_value("rob")


def refuse(route: WebSocketRoute) -> None:
    route.close()  # not connected to the server: the page's WebSocket closes before a handshake


def test_blocked_websocket_falls_back_to_polling(browser: Browser, demo: TidingsProcess) -> None:
    ann = open_room(browser, demo, "lobby", "ann")
    context = browser.new_context()
    context.route_web_socket(ANY_URL, refuse)  # a proxy that drops every WebSocket
    bob = context.new_page()
    bob.goto(f"{demo.url}/room/lobby?name=bob")
    connected(bob)
    expect(bob.locator("#transport")).to_have_text("polling")
    expect(ann.locator("#transport")).to_have_text("websocket")

    say(bob, "over long-polling")
    expect(chat_line(ann, "bob", "over long-polling")).to_have_count(1)
    say(ann, "over a websocket")
    expect(chat_line(bob, "ann", "over a websocket")).to_have_count(1)
    expect(bob.locator("#transport")).to_have_text("polling")


def test_polling_upgrades_once_websocket_gets_through(browser: Browser, demo: TidingsProcess) -> None:
    attempts: list[str] = []

    def first_refused(route: WebSocketRoute) -> None:
        attempts.append(route.url)
        if len(attempts) == 1:
            route.close()  # the first try fails: the page falls back to polling ...
        else:
            route.connect_to_server()  # ... and its upgrade probe gets through

    context = browser.new_context()
    context.route_web_socket(ANY_URL, first_refused)
    ann = context.new_page()
    ann.goto(f"{demo.url}/room/lobby?name=ann")
    connected(ann)
    expect(ann.locator("#transport")).to_have_text("websocket")
    assert len(attempts) == 2
    assert "sid=" in attempts[1]  # the second one is the upgrade of the polling session, not a new one

    bob = open_room(browser, demo, "lobby", "bob")
    say(bob, "after the upgrade")
    expect(chat_line(ann, "bob", "after the upgrade")).to_have_count(1)
    say(ann, "back over the websocket")
    expect(chat_line(bob, "ann", "back over the websocket")).to_have_count(1)


def test_a_restarted_server_gets_the_page_back(browser: Browser, demo: TidingsProcess) -> None:
    ann = open_room(browser, demo, "lobby", "ann")
    bob = open_room(browser, demo, "lobby", "bob")

    demo.stop()
    for page in (ann, bob):
        expect(page.locator("#state")).to_have_text("reconnecting")
    demo.start()
    for page in (ann, bob):
        expect(page.locator("#state")).to_have_text("connected", timeout=RECONNECT_TIMEOUT)

    # Both subscribed again on the new server: the room's members, and its messages flow.
    expect_members(ann, "ann", "bob")
    say(bob, "we are back")
    expect(chat_line(ann, "bob", "we are back")).to_have_count(1)


def test_a_page_whose_name_was_taken_while_it_was_away_is_told_so(
    browser: Browser, demo: TidingsProcess
) -> None:
    ann = open_room(browser, demo, "lobby", "ann")
    demo.stop()
    expect(ann.locator("#state")).to_have_text("reconnecting")
    ann.context.set_offline(True)  # the page cannot reconnect ...
    demo.start()
    other = browser.new_context().new_page()  # ... while somebody else takes its name
    other.goto(f"{demo.url}/room/lobby?name=ANN")
    connected(other)
    ann.context.set_offline(False)
    expect(ann.locator("#nick-error")).to_have_text(chat.taken("ann", "lobby"), timeout=RECONNECT_TIMEOUT)
    expect(ann.locator("#nick")).to_have_value("ann")
    pick_nick(ann, "anne")
    connected(ann)
    expect_members(other, "ANN", "anne")


def test_the_es_module_connects_a_page(browser: Browser, demo: TidingsProcess) -> None:
    """`import { connect } from "/tidings/tidings.mjs"`, as a page with <script type="module"> does."""
    ann = open_room(browser, demo, "lobby", "ann")
    page = browser.new_context().new_page()
    page.goto(demo.url + "/")
    state = page.evaluate(
        """async () => {
            const { connect } = await import("/tidings/tidings.mjs");
            const socket = connect({ auth: { name: "eve" } });
            await new Promise((resolve) => socket.on("connect", resolve));
            const answer = await socket.subscribe("room-lobby");
            return [socket.state, answer.ok, typeof window.tidings.connect];
        }"""
    )
    assert state == ["connected", True, "function"]
    expect(ann.locator("#messages li.notice", has_text="eve joined")).to_have_count(1)
    expect_members(ann, "ann", "eve")
