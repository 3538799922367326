"""Corner cases of Engine.IO sessions where tidings answers as the reference server does (Node
socket.io 4.8.4, engine.io 6.6.12), over real sockets.

Each answer here was first read off the reference server with the same raw requests. Where tidings
cannot answer quite the same, the test says so: a WebSocket the reference server closes with no
status code (the client sees 1005) is closed with 1000, as an ASGI app cannot send a close frame
without a code.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import tidings
from tests.serving import ThreadedServer

TIMEOUT = 5.0  # a guard against hanging, never the thing a test waits for
PATH = "/socket.io/"
UNKNOWN_SID = {"code": 1, "message": "Session ID unknown"}
Poll = asyncio.Task[httpx.Response]

handlers = tidings.Handlers()


@handlers.on("echo")
def echo(request, socket, context, *args):
    return args


@handlers.on_connect(namespace="/greeted")
def greet(request, socket, context):
    socket.emit("first", 1)
    socket.emit("second", 2)


@pytest.fixture(scope="module")
def server(ws_protocol: str) -> Iterator[ThreadedServer]:
    app = tidings.Server(handlers=handlers, upgrade_timeout=0.5)
    with ThreadedServer(app, ws_protocol) as running:
        yield running


@pytest.fixture
async def http(server: ThreadedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        yield client


@pytest.fixture
async def bystander(server: ThreadedServer) -> AsyncIterator[ClientConnection]:
    """A WebSocket session of another client, open while a test attacks its own: the test ends by
    checking it with :func:`assert_alive`."""
    async with connect(ws_url(server)) as ws:
        assert str(await recv(ws)).startswith("0{")
        await ws.send("40")
        assert str(await recv(ws)).startswith("40{")
        yield ws


def ws_url(server: ThreadedServer, sid: str | None = None) -> str:
    url = f"ws://127.0.0.1:{server.port}{PATH}?EIO=4&transport=websocket"
    return url if sid is None else f"{url}&sid={sid}"


async def recv(ws: ClientConnection) -> str | bytes:
    return await asyncio.wait_for(ws.recv(), TIMEOUT)


async def assert_alive(ws: ClientConnection) -> None:
    await ws.send('421["echo","alive"]')
    assert await recv(ws) == '431["alive"]'


async def polling_session(http: httpx.AsyncClient) -> dict[str, str]:
    """Handshake and connect "/" over polling; returns the query parameters of the session."""
    handshake = await http.get(PATH, params={"EIO": "4", "transport": "polling"})
    sid = handshake.text.split('"sid":"')[1].split('"')[0]
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    assert (await http.post(PATH, params=params, content="40")).text == "ok"
    assert (await http.get(PATH, params=params)).text.startswith("40{")
    return params


@asynccontextmanager
async def pending_poll(server: ThreadedServer, params: dict[str, str]) -> AsyncIterator[Poll]:
    """A GET of the session waiting for packets, on a connection of its own (as a browser's)."""
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        poll = asyncio.create_task(client.get(PATH, params=params))
        app = server.server.config.app
        assert isinstance(app, tidings.Server)
        session = app.engine.sessions[params["sid"]]

        async def held() -> None:
            while session._poll is None:
                assert not poll.done(), poll.result().text
                await asyncio.sleep(0.01)

        await asyncio.wait_for(held(), TIMEOUT)
        yield poll


# -- the client closes a polling session -----------------------------------------------------------


async def test_client_close_ends_the_pending_poll_with_a_noop(
    server: ThreadedServer, http: httpx.AsyncClient, bystander: ClientConnection
) -> None:
    params = await polling_session(http)
    async with pending_poll(server, params) as poll:
        closed = await http.post(PATH, params=params, content="1")
        assert (closed.status_code, closed.text) == (200, "ok")
        answered = await poll
        assert (answered.status_code, answered.text) == (200, "6")  # NOOP, not CLOSE
    after = await http.get(PATH, params=params)
    assert (after.status_code, after.json()) == (400, UNKNOWN_SID)
    after = await http.post(PATH, params=params, content="3")
    assert (after.status_code, after.json()) == (400, UNKNOWN_SID)
    await assert_alive(bystander)


# -- a WebSocket for a session that cannot be taken over -------------------------------------------


async def assert_turned_away(ws: ClientConnection) -> None:
    """The server accepted ``ws`` (or ``connect`` would have raised) and closes it at once."""
    with pytest.raises(ConnectionClosed):
        await recv(ws)
    assert (ws.close_code, ws.close_reason) == (1000, "")  # the reference server: none (1005)


async def probe(ws: ClientConnection) -> None:
    await ws.send("2probe")
    assert await recv(ws) == "3probe"


async def test_a_websocket_for_an_upgraded_session_is_accepted_and_closed(
    server: ThreadedServer, http: httpx.AsyncClient, bystander: ClientConnection
) -> None:
    sid = (await polling_session(http))["sid"]
    async with connect(ws_url(server, sid)) as upgraded:
        await probe(upgraded)
        await upgraded.send("5")
        await assert_alive(upgraded)  # the session is on this WebSocket now
        async with connect(ws_url(server, sid)) as second:
            await assert_turned_away(second)
        await assert_alive(upgraded)
    await assert_alive(bystander)


@pytest.mark.parametrize("probed", [False, True], ids=["before the probe", "after the probe"])
async def test_a_websocket_for_a_session_being_upgraded_is_accepted_and_closed(
    server: ThreadedServer, http: httpx.AsyncClient, bystander: ClientConnection, probed: bool
) -> None:
    sid = (await polling_session(http))["sid"]
    async with connect(ws_url(server, sid)) as upgrading:  # the upgrade has begun once it is open
        if probed:
            await probe(upgrading)
        async with connect(ws_url(server, sid)) as second:
            await assert_turned_away(second)
        if not probed:
            await probe(upgrading)
        await upgrading.send("5")  # the first upgrade goes on undisturbed
        await assert_alive(upgrading)
    await assert_alive(bystander)


async def test_a_websocket_for_a_websocket_session_is_accepted_and_closed(
    server: ThreadedServer, bystander: ClientConnection
) -> None:
    # The reference server would begin an upgrade of a session that is on a WebSocket already (to
    # close it at its upgrade timeout, or let it take the session over if it probes and upgrades):
    # tidings turns it away at once, as it does a WebSocket for an upgraded session.
    async with connect(ws_url(server)) as first:
        sid = str(await recv(first)).split('"sid":"')[1].split('"')[0]
        await first.send("40")
        assert str(await recv(first)).startswith("40{")
        async with connect(ws_url(server, sid)) as second:
            await assert_turned_away(second)
        await assert_alive(first)
    await assert_alive(bystander)


# -- an upgrade that fails or ends -----------------------------------------------------------------


@pytest.mark.parametrize("failure", ["timeout", "no probe"])
async def test_a_poll_pending_through_a_failed_upgrade_waits_for_packets(
    server: ThreadedServer, http: httpx.AsyncClient, bystander: ClientConnection, failure: str
) -> None:
    params = await polling_session(http)
    async with pending_poll(server, params) as poll:
        async with connect(ws_url(server, params["sid"])) as upgrading:
            if failure == "no probe":
                await upgrading.send("2")
            with pytest.raises(ConnectionClosed):
                await recv(upgrading)  # at the upgrade timeout, or at once
            assert upgrading.close_code == 1002
        # The reference server leaves the poll pending: it is no answer to have nothing to send.
        await http.post(PATH, params=params, content='421["echo","still polling"]')
        answered = await poll
        assert (answered.status_code, answered.text) == (200, '431["still polling"]')
    await assert_alive(bystander)


@pytest.mark.parametrize("probed", [False, True], ids=["before the probe", "after the probe"])
async def test_client_close_during_an_upgrade_closes_its_websocket(
    server: ThreadedServer, http: httpx.AsyncClient, bystander: ClientConnection, probed: bool
) -> None:
    params = await polling_session(http)
    async with pending_poll(server, params) as poll, connect(ws_url(server, params["sid"])) as upgrading:
        if probed:
            await probe(upgrading)
            assert (await poll).text == "6"  # the client pauses polling
        closed = await http.post(PATH, params=params, content="1")
        assert (closed.status_code, closed.text) == (200, "ok")
        with pytest.raises(ConnectionClosed):
            await recv(upgrading)
        assert (upgrading.close_code, upgrading.close_reason) == (1000, "")  # the reference server: 1005
        if not probed:
            assert (await poll).text == "6"
    after = await http.get(PATH, params=params)
    assert (after.status_code, after.json()) == (400, UNKNOWN_SID)
    await assert_alive(bystander)


# -- what a connect handler emits ------------------------------------------------------------------


async def greeted_over_polling(http: httpx.AsyncClient) -> list[str]:
    """Open a polling session, connect /greeted, and poll until three packets came."""
    handshake = await http.get(PATH, params={"EIO": "4", "transport": "polling"})
    sid = handshake.text.split('"sid":"')[1].split('"')[0]
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    assert (await http.post(PATH, params=params, content="40/greeted,")).text == "ok"
    received: list[str] = []
    for _ in range(3):  # the server may answer with fewer than three packets at a time
        received += (await http.get(PATH, params=params)).text.split("\x1e")
        if len(received) >= 3:
            break
    return received


async def greeted_over_websocket(server: ThreadedServer) -> list[str]:
    async with connect(ws_url(server)) as ws:
        assert str(await recv(ws)).startswith("0{")
        await ws.send("40/greeted,")
        return [str(await recv(ws)) for _ in range(3)]


@pytest.mark.parametrize("transport", ["polling", "websocket"])
async def test_what_a_connect_handler_emits_follows_the_connect_packet_in_order(
    server: ThreadedServer, http: httpx.AsyncClient, transport: str
) -> None:
    if transport == "polling":
        received = await greeted_over_polling(http)
    else:
        received = await greeted_over_websocket(server)
    assert len(received) == 3, received
    assert received[0].startswith('40/greeted,{"sid":'), received
    assert received[1:] == ['42/greeted,["first",1]', '42/greeted,["second",2]']
