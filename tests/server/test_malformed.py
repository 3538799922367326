"""Malformed input over real sockets: the bad client gets a clear refusal, everybody else goes on.

Each test holds a well-behaved WebSocket session (the ``bystander``) open while a bad client does
its worst, and checks at the end that the bystander's events are still handled and acked.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import orjson
import pytest
from uvicorn.protocols.websockets.auto import AutoWebSocketsProtocol
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

import tidings
from tests.serving import ThreadedServer
from tidings.protocol.socketio import MAX_DEPTH
from tidings.server.websocket import FastWebSocketProtocol

MAX_PAYLOAD = 10_000
TIMEOUT = 5.0  # a guard against hanging, never the thing a test waits for
TWICE = "attachment placeholder used twice"
UNUSED = "attachment without a placeholder"

handlers = tidings.Handlers()


@handlers.on("echo")
def echo(request, socket, context, *args):
    return args


@handlers.on("connect", namespace="/refusing")
def refuse_with_bytes(request, socket, context):
    raise tidings.Refuse("no binary here", data=b"\x00")  # bytes cannot go in a CONNECT_ERROR


@handlers.on("unencodable")
def unencodable(request, socket, context, *args):
    deep: list[Any] = []
    for _ in range(1000):
        deep = [deep]
    return deep  # JSON could hold it, the encoder cannot (254 levels at most)


@handlers.on("sink")
async def sink(request, socket, context, *args):
    return "ok"


@pytest.fixture(scope="module")
def server(ws_protocol: str) -> Iterator[ThreadedServer]:
    app = tidings.Server(handlers=handlers, max_payload=MAX_PAYLOAD)
    with ThreadedServer(app, ws_protocol) as running:
        yield running


def app_of(server: ThreadedServer) -> tidings.Server:
    app = server.server.config.app
    assert isinstance(app, tidings.Server)
    return app


def ws_url(server: ThreadedServer, query: str = "EIO=4&transport=websocket") -> str:
    return f"ws://127.0.0.1:{server.port}/socket.io/?{query}"


async def open_session(ws: ClientConnection) -> str:
    """Read the handshake, connect the namespace "/"; returns the Engine.IO session id."""
    opened = await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert isinstance(opened, str) and opened.startswith("0{")
    sid: str = orjson.loads(opened[1:])["sid"]
    await ws.send("40")
    assert (await asyncio.wait_for(ws.recv(), TIMEOUT)).startswith("40{")
    return sid


_ack_ids = itertools.count(1)


async def assert_alive(ws: ClientConnection) -> None:
    """An event with an ack id gets its ack: the session is served as before."""
    ack_id = next(_ack_ids)
    await ws.send(f'42{ack_id}["echo","still here",{ack_id}]')
    while (reply := await asyncio.wait_for(ws.recv(), TIMEOUT)) == "2":
        await ws.send("3")
    assert reply == f'43{ack_id}["still here",{ack_id}]'


async def close_of(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Wait for the server to close ``ws``; returns the close code and reason."""
    with pytest.raises(ConnectionClosed):
        while True:
            assert await asyncio.wait_for(ws.recv(), TIMEOUT) == "2"  # nothing but pings
    return ws.close_code, ws.close_reason


@pytest.fixture
async def bystander(server: ThreadedServer) -> AsyncIterator[ClientConnection]:
    async with connect(ws_url(server)) as ws:
        await open_session(ws)
        await assert_alive(ws)
        yield ws
        await assert_alive(ws)  # once more after the test, whatever it asserted itself


@pytest.fixture
async def http(server: ThreadedServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=TIMEOUT) as client:
        yield client


async def polling_session(http: httpx.AsyncClient) -> dict[str, str]:
    """Handshake and connect "/" over polling; returns the query parameters of the session."""
    handshake = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
    assert handshake.status_code == 200
    sid = orjson.loads(handshake.text[1:])["sid"]
    params = {"EIO": "4", "transport": "polling", "sid": sid}
    assert (await http.post("/socket.io/", params=params, content="40")).status_code == 200
    assert (await http.get("/socket.io/", params=params)).text.startswith("40{")
    return params


async def assert_session_gone(http: httpx.AsyncClient, sid: str) -> None:
    response = await http.get("/socket.io/", params={"EIO": "4", "transport": "polling", "sid": sid})
    assert response.status_code == 400
    assert response.json() == {"code": 1, "message": "Session ID unknown"}


def assert_error(response: httpx.Response, code: int, message: str) -> None:
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"code": code, "message": message}


async def test_the_bystander_is_served_by_the_protocol_asked_for(
    server: ThreadedServer, bystander: ClientConnection, ws_protocol: str
) -> None:
    # Each test here runs on both paths only if the server really speaks the protocol it was given.
    served = {type(connection) for connection in list(server.server.server_state.connections)}
    assert (FastWebSocketProtocol in served) is (ws_protocol == "fast")
    assert (AutoWebSocketsProtocol in served) is (ws_protocol == "auto")


# -- Engine.IO request errors over HTTP ----------------------------------------------------------


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_unknown_sid_on_polling(
    http: httpx.AsyncClient, bystander: ClientConnection, method: str
) -> None:
    params = {"EIO": "4", "transport": "polling", "sid": "no-such-session"}
    response = await http.request(
        method, "/socket.io/", params=params, content="40" if method == "POST" else None
    )
    assert_error(response, 1, "Session ID unknown")


@pytest.mark.parametrize(
    "params",
    [
        {"transport": "polling"},
        {"EIO": "3", "transport": "polling"},
        {"EIO": "5", "transport": "polling"},
        {"EIO": "", "transport": "polling"},
        {"EIO": "3", "transport": "polling", "sid": "no-such-session"},
    ],
)
async def test_missing_or_wrong_eio(
    http: httpx.AsyncClient, bystander: ClientConnection, params: dict[str, str]
) -> None:
    assert_error(await http.get("/socket.io/", params=params), 5, "Unsupported protocol version")


@pytest.mark.parametrize("transport", [None, "", "flashsocket", "Polling", "websocket"])
async def test_unknown_transport(
    http: httpx.AsyncClient, bystander: ClientConnection, transport: str | None
) -> None:
    # "websocket" is known, but not on a plain HTTP request.
    params = {"EIO": "4"} if transport is None else {"EIO": "4", "transport": transport}
    assert_error(await http.get("/socket.io/", params=params), 0, "Transport unknown")


async def test_post_handshake(http: httpx.AsyncClient, bystander: ClientConnection) -> None:
    response = await http.post("/socket.io/", params={"EIO": "4", "transport": "polling"}, content="40")
    assert_error(response, 2, "Bad handshake method")


async def test_polling_request_for_a_websocket_session(
    server: ThreadedServer, http: httpx.AsyncClient, bystander: ClientConnection
) -> None:
    async with connect(ws_url(server)) as ws:
        sid = await open_session(ws)
        params = {"EIO": "4", "transport": "polling", "sid": sid}
        assert_error(await http.get("/socket.io/", params=params), 3, "Bad request")
        await assert_alive(ws)  # a refused request does not harm the session it names


# -- Engine.IO request errors on the WebSocket upgrade -------------------------------------------


@pytest.mark.parametrize(
    ("query", "code", "message"),
    [
        ("EIO=4&transport=websocket&sid=no-such-session", 1, "Session ID unknown"),
        ("transport=websocket", 5, "Unsupported protocol version"),
        ("EIO=3&transport=websocket", 5, "Unsupported protocol version"),
        ("EIO=4&transport=polling", 0, "Transport unknown"),
        ("EIO=4", 0, "Transport unknown"),
    ],
)
async def test_websocket_upgrade_refused(
    server: ThreadedServer, bystander: ClientConnection, query: str, code: int, message: str
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        async with connect(ws_url(server, query), open_timeout=TIMEOUT):
            pass
    assert refused.value.response.status_code == 400
    assert orjson.loads(refused.value.response.body) == {"code": code, "message": message}


# -- malformed packets on a WebSocket --------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "reason"),
    [
        # Engine.IO
        (["9"], "unknown packet type '9'"),
        (["x"], "unknown packet type 'x'"),
        ([""], "empty packet"),
        (["0"], "unexpected OPEN packet"),
        (["5"], "unexpected UPGRADE packet"),
        # Socket.IO
        (["4{"], "unknown packet type '{'"),
        (["4"], "empty packet"),
        (["42notjson"], "invalid JSON payload"),
        (['42["a"'], "invalid JSON payload"),
        (["42{}"], "invalid payload for EVENT"),
        (['42["connect"]'], "invalid payload for EVENT"),
        (['43["no id"]'], "invalid payload for ACK"),
        (['44{"message":"x"}'], "unexpected CONNECT_ERROR packet from a client"),
        (['45-["a"]'], "illegal attachments"),
        (['45999999-["a"]'], "illegal attachments"),
        (['45\u00b2-["a"]'], "illegal attachments"),  # SUPERSCRIPT TWO: isdigit(), yet no int
        (['450-["a"]'], "binary packet without attachments"),
        (['4511-["a"]'], "too many attachments"),  # max_attachments defaults to 10
        (["42/" + "n" * 300 + ',["a"]'], "namespace too long"),
        (['421234567890123456["a"]'], "ack id too long"),
        (['42["echo",' + "[" * 1000 + "]" * 1000 + "]"], f"JSON nested deeper than {MAX_DEPTH} levels"),
        (['42["echo",{"n":18446744073709551616}]'], "integer beyond 64 bits"),
        ([b"\x01\x02"], "unexpected binary message"),
        # a binary event whose attachment never comes: a text packet arrives instead
        (['451-["echo",{"_placeholder":true,"num":0}]', '42["echo","x"]'], None),
        (['451-["echo",{"_placeholder":true,"num":1}]', b"\x01"], "invalid attachment placeholder"),
        (['451-["echo",{"_placeholder":true,"num":"0"}]', b"\x01"], "invalid attachment placeholder"),
        (['451-["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":0}]', b"\x01"], TWICE),
        (['452-["echo",{"_placeholder":true,"num":1}]', b"\x01", b"\x02"], UNUSED),
    ],
)
async def test_malformed_packet_closes_with_1002(
    server: ThreadedServer,
    http: httpx.AsyncClient,
    bystander: ClientConnection,
    messages: list[str | bytes],
    reason: str | None,
) -> None:
    async with connect(ws_url(server)) as ws:
        sid = await open_session(ws)
        for message in messages:
            await ws.send(message)
        expected = reason or "text message while binary attachments were expected"
        assert await close_of(ws) == (1002, expected)
    await assert_session_gone(http, sid)
    await assert_alive(bystander)


async def test_malformed_packet_before_namespace_connect(
    server: ThreadedServer, http: httpx.AsyncClient, bystander: ClientConnection
) -> None:
    async with connect(ws_url(server)) as ws:
        opened = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert isinstance(opened, str)
        await ws.send("42notjson")
        assert await close_of(ws) == (1002, "invalid JSON payload")
    await assert_session_gone(http, orjson.loads(opened[1:])["sid"])
    await assert_alive(bystander)


async def test_binary_event_with_attachment_is_served(
    server: ThreadedServer, bystander: ClientConnection
) -> None:
    # The counterpart of the truncated binary packet above: complete, it is handled and acked.
    async with connect(ws_url(server)) as ws:
        await open_session(ws)
        await ws.send('451-17["echo",{"_placeholder":true,"num":0}]')
        await ws.send(b"\x00\xff")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == '461-17[{"_placeholder":true,"num":0}]'
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == b"\x00\xff"


async def test_deeply_nested_binary_event(server: ThreadedServer, bystander: ClientConnection) -> None:
    # As deep as a client may nest (the arguments' list and the placeholder's object count too).
    depth = MAX_DEPTH - 2
    async with connect(ws_url(server)) as ws:
        await open_session(ws)
        placeholder = '{"_placeholder":true,"num":0}'
        await ws.send('451-13["sink",' + "[" * depth + placeholder + "]" * depth + "]")
        await ws.send(b"\x01")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == '4313["ok"]'
        await assert_alive(ws)


async def test_deep_json_that_is_echoed_comes_back(
    server: ThreadedServer, bystander: ClientConnection
) -> None:
    value = "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    async with connect(ws_url(server)) as ws:
        await open_session(ws)
        await ws.send(f'427["echo",{value}]')
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == f"437[{value}]"


async def test_an_answer_that_cannot_be_encoded_is_an_error_ack(
    server: ThreadedServer, bystander: ClientConnection
) -> None:
    # Answered with an error in the shape of tidings' own acks, not left unanswered: the client would
    # wait for it forever.
    async with connect(ws_url(server)) as ws:
        await open_session(ws)
        await ws.send('4211["unencodable"]')
        answer = await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert answer == '4311[{"ok":false,"error":"the answer cannot be sent as JSON"}]'
        await assert_alive(ws)


# -- oversize messages -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "message",
    [
        '42["echo","' + "x" * MAX_PAYLOAD + '"]',
        "4" + "x" * MAX_PAYLOAD,  # too big before it is even parsed
        b"\x00" * (MAX_PAYLOAD + 1),
    ],
    ids=["event", "text", "binary"],
)
async def test_oversize_websocket_message_closes_with_1009(
    server: ThreadedServer, http: httpx.AsyncClient, bystander: ClientConnection, message: str | bytes
) -> None:
    assert len(message) > MAX_PAYLOAD
    async with connect(ws_url(server)) as ws:
        sid = await open_session(ws)
        await ws.send(message)
        assert await close_of(ws) == (1009, "message too big")
    await assert_session_gone(http, sid)
    await assert_alive(bystander)


async def test_websocket_message_of_max_payload_is_served(
    server: ThreadedServer, bystander: ClientConnection
) -> None:
    async with connect(ws_url(server)) as ws:
        await open_session(ws)
        frame = '429["echo","' + "x" * (MAX_PAYLOAD - 14) + '"]'
        assert len(frame) == MAX_PAYLOAD
        await ws.send(frame)
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == '439["' + "x" * (MAX_PAYLOAD - 14) + '"]'


async def test_oversize_post_gets_413_and_ends_the_session(
    http: httpx.AsyncClient, bystander: ClientConnection
) -> None:
    other = await polling_session(http)
    params = await polling_session(http)
    body = '42["echo","' + "x" * MAX_PAYLOAD + '"]'
    response = await http.post("/socket.io/", params=params, content=body)
    assert response.status_code == 413
    await assert_session_gone(http, params["sid"])
    # Another polling session is not affected.
    await http.post("/socket.io/", params=other, content='425["echo","polling"]')
    assert (await http.get("/socket.io/", params=other)).text == '435["polling"]'


# -- malformed polling bodies ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"\xff\xfe", "invalid UTF-8"),
        (b'42["echo","\xc3"]', "invalid UTF-8"),
        (b"b%%%", "invalid base64 in binary packet"),
        (b"bAQIDBA", "invalid base64 in binary packet"),
        ("b\u00e9".encode(), "invalid base64 in binary packet"),  # non-ASCII in base64
        (b"", "empty payload"),
        (b"9", "unknown packet type '9'"),
        (b"4a\x1e", "empty packet"),
        (b"42notjson", "invalid JSON payload"),
        (b"bAQID", "unexpected binary message"),  # valid base64, but no binary packet announced
        (b"0", "unexpected OPEN packet"),
    ],
)
async def test_malformed_post_gets_400_and_ends_the_session(
    http: httpx.AsyncClient, bystander: ClientConnection, body: bytes, reason: str
) -> None:
    params = await polling_session(http)
    response = await http.post("/socket.io/", params=params, content=body)
    assert response.status_code == 400
    assert response.text == reason
    await assert_session_gone(http, params["sid"])


async def test_malformed_post_answers_the_pending_poll_with_close(
    server: ThreadedServer, http: httpx.AsyncClient, bystander: ClientConnection
) -> None:
    params = await polling_session(http)
    poll = asyncio.ensure_future(http.get("/socket.io/", params=params))
    session = app_of(server).engine.sessions[params["sid"]]

    async def held() -> None:
        while session._poll is None:  # until the server holds the GET
            await asyncio.sleep(0.01)

    await asyncio.wait_for(held(), TIMEOUT)
    response = await http.post("/socket.io/", params=params, content="42notjson")
    assert (response.status_code, response.text) == (400, "invalid JSON payload")
    closed = await asyncio.wait_for(poll, TIMEOUT)
    assert (closed.status_code, closed.text) == (200, "1")  # the Engine.IO CLOSE packet
    await assert_session_gone(http, params["sid"])


# -- all at once -----------------------------------------------------------------------------------


async def test_many_bad_clients_at_once_leave_good_ones_alone(
    server: ThreadedServer, http: httpx.AsyncClient, bystander: ClientConnection
) -> None:
    async def bad_websocket(message: str | bytes, expected: tuple[int, str]) -> None:
        async with connect(ws_url(server)) as ws:
            await open_session(ws)
            await ws.send(message)
            assert await close_of(ws) == expected

    async def bad_post(body: bytes, status: int) -> None:
        params = await polling_session(http)
        assert (await http.post("/socket.io/", params=params, content=body)).status_code == status

    async def good_polling() -> None:
        params = await polling_session(http)
        for n in range(5):
            await http.post("/socket.io/", params=params, content=f'42{n}["echo",{n}]')
            assert (await http.get("/socket.io/", params=params)).text == f"43{n}[{n}]"

    async def good_websocket() -> None:
        async with connect(ws_url(server)) as ws:
            await open_session(ws)
            for _ in range(5):
                await assert_alive(ws)

    jobs: list[Any] = []
    for _ in range(5):
        jobs += [
            bad_websocket("9", (1002, "unknown packet type '9'")),
            bad_websocket("42notjson", (1002, "invalid JSON payload")),
            bad_websocket(b"\x00" * (MAX_PAYLOAD + 1), (1009, "message too big")),
            bad_post(b"\xff", 400),
            bad_post(b"x" * (MAX_PAYLOAD + 1), 413),
            good_polling(),
            good_websocket(),
        ]
    await asyncio.wait_for(asyncio.gather(*jobs), 4 * TIMEOUT)
    await assert_alive(bystander)


async def test_refusal_whose_data_cannot_be_sent_still_refuses(
    server: ThreadedServer, bystander: ClientConnection
) -> None:
    async with connect(ws_url(server)) as ws:
        await open_session(ws)
        await ws.send("40/refusing,")
        assert await asyncio.wait_for(ws.recv(), TIMEOUT) == '44/refusing,{"message":"no binary here"}'
        await ws.send('42["echo","the session goes on"]')
    await assert_alive(bystander)
