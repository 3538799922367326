"""tidings.js over HTTP long-polling: the fallback when WebSocket fails, and the upgrade to WebSocket.

Run in Node against a real `tidings run`, through a :class:`WebSocketGate` where the network must refuse
or hold back WebSockets; and against a :class:`ScriptedEngine` where the test must see every request.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.client.js_client import JsClient, run_script, view
from tests.client.stand_ins import Request, ScriptedEngine, WebSocketGate
from tests.python_client import PythonClient, connected_client
from tests.serving import TidingsProcess, tidings_process

POLLING_APP = "tests/client/polling_app.py:app"  # the channels app, with polling only


@pytest.fixture(scope="module")
def polling_server() -> Iterator[TidingsProcess]:
    with tidings_process(POLLING_APP) as running:
        yield running


@pytest.fixture
async def polling_python(polling_server: TidingsProcess) -> AsyncIterator[PythonClient]:
    async with connected_client(polling_server.url, "polling") as client:
        yield client


async def messages_until(receive: Any, end: Any) -> list[Any]:
    """What ``receive()`` gives, in order, up to the ``end`` message (included)."""
    got = [await receive()]
    while got[-1][0] != end:
        got.append(await receive())
    return got


def test_bad_transports_fail_at_connect() -> None:
    script = """
    const tidings = require(process.argv[1]);
    const attempts = [{ transports: ["carrier-pigeon"] }, { transports: [] }, { transports: ["websocket"] }];
    console.log(JSON.stringify(attempts.map((options) => {
      try { tidings.connect("http://127.0.0.1:9", options).close(); return "connected"; }
      catch (error) { return error.message; }
    })));
    """
    assert run_script(script) == [  # Node has fetch but no WebSocket of its own
        'tidings.connect: transports must list "websocket", "polling" or both, not ["carrier-pigeon"]',
        'tidings.connect: transports must list "websocket", "polling" or both, not []',
        "tidings.connect: no transport of websocket can run here (no WebSocket, no fetch)",
    ]


async def test_falls_back_to_polling_when_the_server_refuses_websocket(
    polling_server: TidingsProcess, js: JsClient, polling_python: PythonClient
) -> None:
    """Default options: WebSocket first; the server answers its handshake with a 400, polling works."""
    js.connect(polling_server.url)
    connected = await js.wait("connect")
    assert (connected["transport"], connected["state"]) == ("polling", "connected")
    assert [report["type"] for report in js.backlog] == ["state"]  # no connect_error on the way
    assert await js.subscribe("room-poll") == {"ok": True}
    assert await polling_python.call("subscribe", "room-poll") == {"ok": True}
    assert await polling_python.call("message", "hello js", "room-poll") == "room"
    assert await js.aevent("message") == ["hello js", "room-poll"]
    assert await js.asend({"text": "from js"}, "room-poll") == ["room"]
    assert await polling_python.event("message") == ({"text": "from js"}, "room-poll")
    assert (await js.inspect())["transport"] == "polling"


async def test_binary_and_acks_both_ways_over_polling(polling_server: TidingsProcess, js: JsClient) -> None:
    await js.connected(polling_server.url, transports=["polling"], listen=("message", "question"))
    blob = bytes(range(256)) * 4
    sent = {"blob": blob, "parts": [view(b"\x00\x01", "Uint8Array"), b"", view(b"\xff\xfe\xfd", "DataView")]}
    # A binary event to the server, which sends it back as a binary "message" and acks.
    assert await js.acall("do", "send", sent) == [[]]
    assert await js.aevent("message") == [{"blob": blob, "parts": [b"\x00\x01", b"", b"\xff\xfe\xfd"]}]
    # The server calls the client (socket.call), which acks with binary; the server acks with that.
    js.answer("question", {"reply": b"\x00\x2a"})
    assert await js.acall("do", "call", "question", "meaning?") == [{"reply": b"\x00\x2a"}]
    assert await js.aevent("question") == ["meaning?"]
    # Many packets at once go in few POSTs (one in flight at a time), and arrive in order.
    for number in range(50):
        js.command("send", message=number, channel=None, ack=None)
    assert await js.acall("seen") == [[[number, None] for number in range(50)]]


async def test_falls_back_to_polling_without_the_websocket_api(
    channels_server: TidingsProcess, js: JsClient, python: PythonClient
) -> None:
    """A page without window.WebSocket: polling, and no upgrade although the server offers one."""
    js.connect(channels_server.url, websocket="none")
    assert (await js.wait("connect"))["transport"] == "polling"
    assert await js.subscribe("room-nows") == {"ok": True}
    assert await python.call("subscribe", "room-nows") == {"ok": True}
    assert await python.call("message", "hello", "room-nows") == "room"
    assert await js.aevent("message") == ["hello", "room-nows"]
    assert await js.asend("back", "room-nows") == ["room"]
    assert await python.event("message") == ("back", "room-nows")
    assert (await js.inspect())["transport"] == "polling"
    assert [report for report in js.backlog if report["type"] == "upgrade"] == []


async def test_a_failed_upgrade_leaves_the_session_on_polling(
    channels_server: TidingsProcess, js: JsClient, python: PythonClient
) -> None:
    """A network that refuses WebSockets: the first attempt fails, polling connects, its probe fails."""
    async with WebSocketGate(channels_server.port) as gate:
        js.connect(gate.url, listen=("message", "ping"))
        connected = await js.wait("connect")
        assert connected["transport"] == "polling"
        assert b"sid=" not in await gate.refused.get()  # the connection attempt's first transport
        assert b"sid=" in await gate.refused.get()  # the probe of the upgrade
        for _ in range(2):  # the heartbeat goes on over polling, on the same session
            await js.wait("event", event="ping")
        assert await js.subscribe("room-gate") == {"ok": True}
        assert await python.call("subscribe", "room-gate") == {"ok": True}
        assert await python.call("message", "through", "room-gate") == "room"
        assert await js.aevent("message") == ["through", "room-gate"]
        state = await js.inspect()
        assert (state["id"], state["transport"]) == (connected["id"], "polling")
        assert [report["type"] for report in js.backlog if report["type"] != "event"] == ["state"]


async def test_upgrade_false_stays_on_polling(channels_server: TidingsProcess, js: JsClient) -> None:
    options = {"transports": ["polling", "websocket"], "upgrade": False}
    sid = await js.connected(channels_server.url, listen=("ping",), **options)
    for _ in range(2):
        await js.wait("event", event="ping")
    assert await js.acall("channels") == [[]]
    state = await js.inspect()
    assert (state["id"], state["transport"]) == (sid, "polling")
    assert [report for report in js.backlog if report["type"] == "upgrade"] == []


async def test_upgrades_without_losing_or_repeating_a_message(
    channels_server: TidingsProcess, js: JsClient, python: PythonClient
) -> None:
    """Numbered messages flow both ways on polling, on through the upgrade, and on WebSocket after it.

    The WebSocket is held back until both directions flow on polling, so the upgrade falls in the
    middle of both streams, with packets sent and queued while polling pauses.
    """
    async with WebSocketGate(channels_server.port, hold=True) as gate:
        js.connect(gate.url, transports=["polling", "websocket"])
        connected = await js.wait("connect")
        assert connected["transport"] == "polling"
        assert await js.subscribe("room-up") == {"ok": True}
        assert await python.call("subscribe", "room-up") == {"ok": True}

        js.command("stream", channel="room-up", after=100)  # to python, on until 100 after the upgrade
        from_js = [await python.event("message") for _ in range(20)]
        numbers = itertools.count()

        async def to_js() -> None:  # the other way, one at a time
            assert await python.call("message", next(numbers), "room-up") == "room"

        for _ in range(20):
            await to_js()
        gate.open()
        upgraded = asyncio.create_task(js.wait("upgrade"))
        while not upgraded.done():
            await to_js()
        assert await upgraded == {"type": "upgrade", "name": "websocket", "transport": "websocket"}
        for _ in range(100):
            await to_js()
        sent_to_js = next(numbers)
        assert await python.call("message", "end", "room-up") == "room"
        streamed = await js.wait("streamed", timeout=30)
        assert await js.asend("end", "room-up") == ["room"]

        from_js += await messages_until(lambda: python.event("message"), "end")
        assert from_js == [(number, "room-up") for number in range(streamed["sent"])] + [("end", "room-up")]
        assert 20 <= streamed["upgradedAt"] < streamed["sent"]
        got = await messages_until(lambda: js.aevent("message"), "end")
        assert got == [[number, "room-up"] for number in range(sent_to_js)] + [["end", "room-up"]]
        state = await js.inspect()
        assert (state["id"], state["transport"]) == (connected["id"], "websocket")


async def test_a_polling_client_comes_back_after_a_server_restart(js: JsClient) -> None:
    server = TidingsProcess(POLLING_APP).start()
    try:
        js.connect(server.url, transports=["polling"], reconnectDelay=100, reconnectDelayMax=1000)
        first = await js.wait("connect")
        assert await js.subscribe("room-r") == {"ok": True}

        await asyncio.to_thread(server.stop)
        lost = await js.wait("disconnect")
        assert lost["state"] == "reconnecting"
        assert lost["reason"] in ("transport close", "transport error")  # the close packet, if it got out
        await asyncio.to_thread(server.start)

        second = await js.wait("connect")
        assert (second["transport"], second["id"] != first["id"]) == ("polling", True)
        assert await js.acall("channels") == [["room-r"]]  # subscribed again
        publish = {"call": "broadcast_channel", "channel": "room-r", "message": "again"}
        async with httpx.AsyncClient(base_url=server.url) as http:
            reply = await http.get("/publish", params=publish)
        assert reply.json() == {"reached": 1}
        assert await js.aevent("message") == ["again", "room-r"]
    finally:
        server.stop()


def open_packet(sid: str, **handshake: Any) -> str:
    """An Engine.IO open packet (EIO §"Handshake") with long heartbeat intervals, unless given."""
    defaults = {"upgrades": [], "pingInterval": 60_000, "pingTimeout": 60_000, "maxPayload": 1_000_000}
    return "0" + json.dumps({"sid": sid, **defaults, **handshake})


async def answered(engine: ScriptedEngine, method: str, body: str = "ok") -> Request:
    request = await engine.next(method)
    request.answer(body)
    return request


async def test_polling_requests_as_the_server_sees_them(js: JsClient) -> None:
    """One GET and one POST at a time; POSTs take what was queued meanwhile, up to maxPayload; binary
    as "b" + base64 both ways; every URL unique; close() aborts the GET and sends "41" then "1"."""
    engine = ScriptedEngine()
    async with engine.serving():
        js.connect(engine.url, transports=["polling"], listen=("m",))
        handshake = await engine.next("GET")
        assert (handshake.query["EIO"], handshake.query["transport"]) == ("4", "polling")
        assert "sid" not in handshake.query
        handshake.answer(open_packet("e1", maxPayload=60))
        connect = await engine.next("POST")
        poll = await engine.next("GET")
        assert (connect.body, connect.query["sid"], poll.query["sid"]) == ("40", "e1", "e1")
        poll.answer('40{"sid":"s1"}')
        assert (await js.wait("connect"))["transport"] == "polling"

        js.command("emit", event="a", args=[1], ack=None)  # while the POST of "40" is unanswered
        js.command("emit", event="b", args=[b"\x00\x01\x02"], ack=None)
        js.command("emit", event="c", args=["x" * 40], ack=None)
        await js.inspect()  # the driver has run the commands above
        connect.answer("ok")
        posts = [await answered(engine, "POST") for _ in range(2)]  # the second once the first is done
        assert [post.body for post in posts] == [  # 55 bytes, then what did not fit in 60
            '42["a",1]\x1e451-["b",{"_placeholder":true,"num":0}]\x1ebAAEC',
            '42["c","' + "x" * 40 + '"]',
        ]

        poll = await engine.next("GET")
        poll.answer('2\x1e451-["m",{"_placeholder":true,"num":0}]\x1ebAAEC')  # a ping, a binary event
        assert await js.aevent("m") == [b"\x00\x01\x02"]
        pong = await answered(engine, "POST")
        assert pong.body == "3"

        last_poll = await engine.next("GET")
        js.command("close")
        await asyncio.wait_for(last_poll.aborted.wait(), 10)
        closing: list[Request] = []  # one POST or two, as the pong's answer came before close() or not
        while not closing or closing[-1].body.split("\x1e")[-1] != "1":
            closing.append(await answered(engine, "POST"))
        assert "\x1e".join(post.body for post in closing) == "41\x1e1"  # the namespace, then the session

    assert engine.most_at_once == {"GET": 1, "POST": 1}
    seen = [handshake, connect, poll, *posts, pong, last_poll, *closing]
    assert len({request.query["t"] for request in seen}) == len(seen)


async def test_an_error_answer_ends_the_transport_once(js: JsClient) -> None:
    engine = ScriptedEngine()
    async with engine.serving():
        js.connect(engine.url, transports=["polling"], reconnectDelay=100)
        await answered(engine, "GET", open_packet("e1"))
        connect = await engine.next("POST")
        (await engine.next("GET")).answer('{"code":1,"message":"Session ID unknown"}', status=400)
        error = await js.wait("connect_error")
        assert (error["message"], error["kind"]) == ("transport error", "transport")
        handshake = await engine.next("GET")  # the next attempt, after the backoff
        assert "sid" not in handshake.query
        connect.answer("", status=400)  # the dead transport's other request fails too: nothing more
        handshake.answer(open_packet("e2"))
        await answered(engine, "POST")  # "40"
        await answered(engine, "GET", '40{"sid":"s2"}')
        assert (await js.wait("connect"))["id"] == "s2"
        assert [report["type"] for report in js.backlog] == ["state", "state"]  # reconnecting, connected
        js.close()


async def paused_for_the_upgrade(engine: ScriptedEngine, js: JsClient) -> Request:
    """Connects on polling, answers the probe while a POST is in flight, then ends the pending GET with
    a noop: the client is pausing, and queues an event. Returns the unanswered POST."""
    js.connect(engine.url, transports=["polling", "websocket"], listen=("m",), websocket="reporting")
    await answered(engine, "GET", open_packet("e1", upgrades=["websocket"]))
    await answered(engine, "POST")  # "40"
    await answered(engine, "GET", '40{"sid":"s1"}')
    assert (await js.wait("connect"))["transport"] == "polling"
    poll = await engine.next("GET")
    assert await asyncio.wait_for(engine.received.get(), 10) == "2probe"
    assert (engine.ws_query["sid"], engine.ws_query["transport"]) == ("e1", "websocket")
    js.command("emit", event="before", args=[], ack=None)
    in_flight = await engine.next("POST")
    await engine.ws_send("3probe")
    await js.wait("ws-message", data="3probe")  # tidings.js has it: polling is pausing
    poll.answer("6")  # EIO §"Upgrade": the server ends the pending GET so that polling can pause
    js.command("emit", event="during", args=[], ack=None)
    await js.inspect()
    assert engine.received.empty()  # no "5" while a POST is in flight
    return in_flight


async def test_the_upgrade_waits_for_the_requests_in_flight(js: JsClient) -> None:
    engine = ScriptedEngine()
    async with engine.serving():
        in_flight = await paused_for_the_upgrade(engine, js)
        in_flight.answer("ok")
        assert [await asyncio.wait_for(engine.received.get(), 10) for _ in range(2)] == ["5", '42["during"]']
        assert (await js.wait("upgrade"))["transport"] == "websocket"
        await engine.ws_send('42["m","on the WebSocket"]')
        assert await js.aevent("m") == ["on the WebSocket"]
        assert in_flight.body == '42["before"]'
        assert engine.requests.empty()  # polling stopped for good
        js.close()


async def test_a_probe_lost_while_pausing_resumes_polling(js: JsClient) -> None:
    engine = ScriptedEngine()
    async with engine.serving():
        in_flight = await paused_for_the_upgrade(engine, js)
        await engine.ws_close()
        poll = await engine.next("GET")  # polling again
        in_flight.answer("ok")
        queued = await answered(engine, "POST")
        assert queued.body == '42["during"]'
        poll.answer('42["m","still polling"]')
        assert await js.aevent("m") == ["still polling"]
        state = await js.inspect()
        assert (state["id"], state["transport"]) == ("s1", "polling")
        assert [report for report in js.backlog if report["type"] == "upgrade"] == []
        js.close()
