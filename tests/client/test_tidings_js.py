"""tidings.js, the browser client, run in Node (with `ws` as its WebSocket) against a real `tidings run`.

Also `tidings.script_tag`, the tag that puts it in a page, through the template engines' escaping.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from typing import Any

import django.template
import httpx
import jinja2
import markupsafe
import pytest
from django.utils.html import conditional_escape
from gluon.html import DIV
from websockets.asyncio.server import ServerConnection, serve

import tidings
from tests.brokers.cluster import REDIS_URL, new_prefix
from tests.client.js_client import CLIENT, JsClient, Rejected, run_script, settled, view
from tests.python_client import PythonClient
from tests.serving import TidingsProcess

BROKER_APP = "tests/brokers/app.py:app"  # hist-* channels keep a history


async def audit(observer: PythonClient, session_id: str, count: int) -> list[list[Any]]:
    """The next ``count`` lifecycle reports of the channels app about ``session_id``."""
    reports = []
    while len(reports) < count:
        report, channel = await observer.event("message")
        if channel == "audit" and report[1] == session_id:
            reports.append(report)
    return reports


async def test_the_server_serves_it(channels_server: TidingsProcess) -> None:
    async with httpx.AsyncClient(base_url=channels_server.url) as http:
        reply = await http.get("/tidings/tidings.js")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/javascript")
    assert reply.content == CLIENT.read_bytes()


async def test_the_es_module_is_served_beside_it_importing_it_by_its_served_name() -> None:
    """tidings.mjs (tidings.js's ES module face) follows client_path; its import is relative."""
    server = tidings.Server(client_path="/rt/client.js", handlers=tidings.Handlers())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(server), base_url="http://test") as http:
        module = await http.get("/rt/client.mjs")
        script = await http.get("/rt/client.js")
    assert module.status_code == script.status_code == 200
    assert module.headers["content-type"].startswith("text/javascript")
    assert b'import "./client.js";' in module.content
    assert b'import "./tidings.js"' not in module.content
    assert script.content == CLIENT.read_bytes()


def test_a_classic_script_defines_window_tidings_and_defaults_to_the_pages_origin() -> None:
    """Run as a page would run it: no module system, ``self`` the global; the URL from ``location``."""
    script = """
    const vm = require("node:vm");
    const opened = [];
    class WebSocket { constructor(url) { opened.push(url); this.readyState = 0; } close() {} }
    const page = vm.createContext({ WebSocket, URL, URLSearchParams, setTimeout, clearTimeout,
                                    location: { href: "https://example.com:8443/app/page?x=1#top" } });
    vm.runInContext("var self = this;", page);
    vm.runInContext(require("node:fs").readFileSync(process.argv[1], "utf8"), page);
    const sockets = [
      page.tidings.connect({ query: { user: "ann" } }),
      page.tidings.connect("http://other.example:81/ignored", { path: "/rt/" }),
    ];
    sockets.forEach((socket) => socket.close());
    console.log(JSON.stringify({ self: typeof page.self.tidings.connect, opened,
                                 states: sockets.map((socket) => socket.state) }));
    """
    assert run_script(script) == {
        "self": "function",
        "opened": [
            "wss://example.com:8443/socket.io/?user=ann&EIO=4&transport=websocket",
            "ws://other.example:81/rt/?EIO=4&transport=websocket",
        ],
        "states": ["disconnected", "disconnected"],
    }


async def test_connect_emit_and_acks(interop_server: TidingsProcess, js: JsClient) -> None:
    js.connect(interop_server.url, listen=("welcome",))
    early = js.start("emit", event="echo", args=["sent while connecting"])  # buffered until connected
    assert (await js.wait("state"))["state"] == "connected"
    sid = (await js.wait("connect"))["id"]
    assert await js.aevent("welcome") == [sid, "4"]  # the server's socket.session_id is socket.id
    assert await js.acked(early) == ["sent while connecting"]
    assert await js.acall("echo", "hi", 42, {"a": [1, None]}) == ["hi", 42, {"a": [1, None]}]
    assert await js.acall("seq", 1) == []  # acked with no arguments
    assert await js.acall("seen") == [[1]]


async def test_binary_both_ways(interop_server: TidingsProcess, js: JsClient) -> None:
    await js.connected(interop_server.url, listen=("echoed",))
    blob = bytes(range(256)) * 4
    sent = [
        blob,  # an ArrayBuffer
        {"parts": [view(b"\x00\x01", "Uint8Array"), b"", view(b"\x01\x02\x03\x04", "Uint16Array")]},
        view(b"\xff\xfe\xfd", "DataView"),
        "text",
    ]
    # Each view goes as its own bytes, and every attachment comes back as an ArrayBuffer.
    expected = [blob, {"parts": [b"\x00\x01", b"", b"\x01\x02\x03\x04"]}, b"\xff\xfe\xfd", "text"]
    assert await js.acall("echo", *sent) == expected  # an event with attachments, a binary ack
    js.command("emit", event="echo_back", args=sent, ack=None)
    assert await js.aevent("echoed") == expected  # a binary event from the server


async def test_acks_the_servers_calls(interop_server: TidingsProcess, js: JsClient) -> None:
    await js.connected(interop_server.url, listen=("question",))
    js.answer("question", {"reply": b"\x00\x2a"})  # a binary ack from the client
    assert await js.acall("ask", "meaning?") == [{"answer": {"reply": b"\x00\x2a"}}]
    assert await js.aevent("question") == ["meaning?"]
    assert await js.acall("ask_async", "again?") == [{"answer": {"reply": b"\x00\x2a"}}]


async def test_a_refused_connect_is_final(interop_server: TidingsProcess, js: JsClient) -> None:
    js.connect(interop_server.url, auth={"token": "bad"}, reconnectDelay=1)
    error = await js.wait("connect_error")
    assert (error["message"], error["data"], error["kind"]) == ("bad token", {"code": 42}, "server")
    assert (await js.wait("state"))["state"] == "disconnected"
    state = await settled(js)
    assert (state["state"], state["id"]) == ("disconnected", None)
    assert "Timeout" not in state["resources"]  # no reconnect scheduled
    assert [report["type"] for report in js.backlog] == []


async def test_a_server_disconnect_is_final(interop_server: TidingsProcess, js: JsClient) -> None:
    await js.connected(interop_server.url, reconnectDelay=1)
    js.command("emit", event="kick", args=[], ack=None)  # the handler calls socket.disconnect()
    assert await js.wait("disconnect") == {
        "type": "disconnect",
        "reason": "io server disconnect",
        "state": "disconnected",
    }
    state = await settled(js)
    assert (state["state"], state["id"]) == ("disconnected", None)
    assert "Timeout" not in state["resources"]


async def test_another_namespace_with_auth(interop_server: TidingsProcess, js: JsClient) -> None:
    await js.connected(interop_server.url, namespace="/admin", auth={"role": "admin"})
    assert await js.acall("whoami") == [{"namespace": "/admin", "auth": {"role": "admin"}}]
    refused = JsClient()
    try:
        refused.connect(interop_server.url, namespace="/admin", auth={"role": "guest"})
        assert (await refused.wait("connect_error"))["message"] == "admins only"
    finally:
        refused.close()


async def test_channels_beside_a_python_client(
    channels_server: TidingsProcess, js: JsClient, python: PythonClient
) -> None:
    await js.connected(channels_server.url)
    assert await js.subscribe("room-js") == {"ok": True}
    assert await python.call("subscribe", "room-js") == {"ok": True}
    # From python to the room (the app's ^room- handler acks "room" and broadcasts to the others).
    assert await python.call("message", "hello js", "room-js") == "room"
    assert await js.aevent("message") == ["hello js", "room-js"]
    assert await python.call("message", {"blob": b"\x00\xff"}, "room-js") == "room"
    assert await js.aevent("message") == [{"blob": b"\x00\xff"}, "room-js"]
    # From tidings.js: send(message, channel).
    assert await js.asend({"text": "from js"}, "room-js") == ["room"]
    assert await python.event("message") == ({"text": "from js"}, "room-js")
    assert (await js.inspect())["channels"] == ["room-js"]
    assert await js.unsubscribe("room-js") == {"ok": True}
    assert await js.acall("channels") == [[]]  # socket.channels, server side
    assert (await js.inspect())["channels"] == []
    assert await python.call("message", "after", "room-js") == "room"
    # send(message): no channel, and in none, so only the app's unbound handler (no ack value) runs.
    assert await js.asend("to no channel") == []
    assert await js.acall("seen") == [[[{"text": "from js"}, "room-js"], ["to no channel", None]]]
    assert [report for report in js.backlog if report["type"] == "event"] == []  # got nothing more


async def test_refused_subscriptions_are_not_kept(channels_server: TidingsProcess, js: JsClient) -> None:
    await js.connected(channels_server.url)
    assert await js.subscribe("private-js") == {"ok": False, "error": "private channel"}
    assert await js.subscribe(42) == {"ok": False, "error": "channel must be a string"}
    assert await js.subscribe("room-kept") == {"ok": True}
    assert (await js.inspect())["channels"] == ["room-kept"]
    assert await js.acall("channels") == [["room-kept"]]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_answers_the_servers_heartbeat(
    channels_server: TidingsProcess, js: JsClient, transport: str
) -> None:
    # The app pings every 0.5 s and waits 0.5 s for the pong: unanswered, the session would be closed
    # before the second ping, and the client would come back with another sid.
    sid = await js.connected(channels_server.url, listen=("ping",), transports=[transport])
    for _ in range(4):
        await js.wait("event", event="ping")
    assert await js.acall("channels") == [[]]
    assert (await js.inspect())["id"] == sid
    assert [report for report in js.backlog if report["type"] != "event"] == [
        {"type": "state", "state": "connected"}  # and nothing since: no disconnect, no reconnect
    ]


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_close_is_for_good(
    channels_server: TidingsProcess, js: JsClient, python: PythonClient, transport: str
) -> None:
    assert await python.call("subscribe", "audit") == {"ok": True}
    sid = await js.connected(channels_server.url, transports=[transport])
    assert await js.subscribe("room-close") == {"ok": True}
    js.command("close")
    assert await js.wait("disconnect") == {
        "type": "disconnect",
        "reason": "io client disconnect",
        "state": "disconnected",
    }
    assert await audit(python, sid, 6) == [
        ["connect", sid],
        ["subscribe", sid, "room-close"],
        ["disconnect", sid, "client namespace disconnect"],  # it left the namespace, then closed
        ["disconnect-from-room", sid],
        ["unsubscribe", sid, "room-close"],
        ["finish", sid],
    ]
    with pytest.raises(Rejected, match="socket closed"):
        await js.subscribe("room-late")
    state = await settled(js)
    assert (state["state"], state["channels"]) == ("disconnected", [])
    assert "Timeout" not in state["resources"]
    assert [report for report in js.backlog if report["type"] in ("connect", "state")] == [
        {"type": "state", "state": "connected"},
        {"type": "state", "state": "disconnected"},
    ]


async def test_resubscribes_after_a_server_restart(js: JsClient) -> None:
    server = TidingsProcess("tests/channels/app.py:app").start()
    try:
        js.connect(server.url, reconnectDelay=100, reconnectDelayMax=1000)
        first = (await js.wait("connect"))["id"]
        assert await js.subscribe("room-r") == {"ok": True}
        assert await js.subscribe("private-r") == {"ok": False, "error": "private channel"}

        await asyncio.to_thread(server.stop)
        assert await js.wait("disconnect") == {
            "type": "disconnect",
            "reason": "transport close",
            "state": "reconnecting",
        }
        await js.wait("state", state="reconnecting")
        while_down = js.start("subscribe", channel="room-q")  # answered once connected again
        await asyncio.to_thread(server.start)

        await js.wait("state", state="connected")
        second = (await js.wait("connect"))["id"]
        assert second != first
        assert await js.acked(while_down) == [{"ok": True}]
        # Asked after the connect, so answered after the client's own subscribes of the new session.
        assert await js.acall("channels") == [["room-q", "room-r"]]

        python = PythonClient("async")
        await python.connect(server.url, transports=["websocket"])
        try:
            assert await python.call("subscribe", "room-r") == {"ok": True}
            assert await python.call("message", "again", "room-r") == "room"
            assert await js.aevent("message") == ["again", "room-r"]
        finally:
            await python.disconnect()
    finally:
        server.stop()


async def test_a_silent_server_is_detected_and_replaced(js: JsClient) -> None:
    """No ping within pingInterval + pingTimeout: the client drops the connection and reconnects."""
    opened = itertools.count(1)
    closed = {1: asyncio.Event(), 2: asyncio.Event()}

    async def silent(ws: ServerConnection) -> None:  # handshake and namespace connect, then no pings
        number = next(opened)
        handshake = {"sid": f"e{number}", "upgrades": [], "pingInterval": 200, "pingTimeout": 100}
        await ws.send("0" + json.dumps({**handshake, "maxPayload": 100_000}))
        assert await ws.recv() == "40"
        await ws.send("40" + json.dumps({"sid": f"s{number}"}))
        await ws.wait_closed()
        closed[number].set()

    async with serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        js.connect(f"http://127.0.0.1:{port}", reconnectDelay=50)
        assert (await js.wait("connect"))["id"] == "s1"
        assert await js.wait("disconnect") == {
            "type": "disconnect",
            "reason": "ping timeout",
            "state": "reconnecting",
        }
        await asyncio.wait_for(closed[1].wait(), 10)  # the client closed the dead connection
        assert (await js.wait("connect"))["id"] == "s2"
        js.command("close")
        await asyncio.wait_for(closed[2].wait(), 10)


def test_script_tag_is_not_escaped_by_template_engines() -> None:
    tag = tidings.script_tag()
    assert tag == '<script src="/tidings/tidings.js"></script>'
    plain = str(tag)  # the same text as a plain str, which each engine escapes
    jinja = jinja2.Environment(autoescape=True).from_string("<head>{{ tag }}</head>")
    assert jinja.render(tag=tag) == f"<head>{tag}</head>"
    assert (
        jinja.render(tag=plain)
        == "<head>&lt;script src=&#34;/tidings/tidings.js&#34;&gt;&lt;/script&gt;</head>"
    )
    assert markupsafe.escape(tag) == tag
    escaped = "&lt;script src=&quot;/tidings/tidings.js&quot;&gt;&lt;/script&gt;"
    assert conditional_escape(tag) == tag
    assert conditional_escape(plain) == escaped
    page = django.template.Engine().from_string("<head>{{ tag }}</head>")
    assert page.render(django.template.Context({"tag": tag})) == f"<head>{tag}</head>"
    assert DIV(tag).xml() == f"<div>{tag}</div>".encode()  # web2py's helpers call .xml()
    assert DIV(plain).xml() == f"<div>{escaped}</div>".encode()


def test_script_tag_escapes_its_src() -> None:
    tag = tidings.script_tag('/static/tidings.js?v=1&x="><b>')
    assert tag == '<script src="/static/tidings.js?v=1&amp;x=&quot;&gt;&lt;b&gt;"></script>'
    assert jinja2.Environment(autoescape=True).from_string("{{ tag }}").render(tag=tag) == tag


async def test_recovers_a_history_channel_after_a_server_restart(js: JsClient) -> None:
    """With the Redis broker the history outlives the server: the client gets what it missed."""
    prefix = new_prefix()
    server = TidingsProcess(BROKER_APP, None, "--broker", REDIS_URL, "--broker-prefix", prefix).start()
    channel = f"hist-{uuid.uuid4().hex[:8]}"
    try:
        js.connect(server.url, listen=("message", "recovered", "unrecovered"), reconnectDelay=100)
        await js.wait("connect")
        assert (await js.subscribe(channel))["ok"] is True
        assert await js.acall("publish", channel, "first") == [{"reached": 1}]
        [message, name, position] = await js.aevent("message")
        assert (message, name, position["offset"]) == ("first", channel, 1)

        await asyncio.to_thread(server.stop)
        await js.wait("state", state="reconnecting")
        async with tidings.Publisher(REDIS_URL, prefix) as publisher:
            for n in range(5):
                with pytest.raises(tidings.NoSocket):  # nobody is subscribed, but it is kept
                    await publisher.abroadcast_channel(n, channel)
        await asyncio.to_thread(server.start)
        assert [(await js.aevent("message"))[0] for _ in range(5)] == [0, 1, 2, 3, 4]
        assert await js.aevent("recovered") == [channel]
        assert await js.acall("publish", channel, "after") == [{"reached": 1}]
        assert (await js.aevent("message"))[:2] == ["after", channel]
    finally:
        server.stop()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
async def test_says_when_recovery_is_impossible(js: JsClient, transport: str) -> None:
    """The memory broker's history goes with its process: a new epoch after the restart."""
    server = TidingsProcess(BROKER_APP).start()
    channel = "hist-memory"
    try:
        js.connect(server.url, listen=("message", "unrecovered"), reconnectDelay=100, transports=[transport])
        await js.wait("connect")
        assert (await js.subscribe(channel))["ok"] is True
        assert await js.acall("publish", channel, "first") == [{"reached": 1}]
        await js.aevent("message")
        await asyncio.to_thread(server.stop)
        await js.wait("state", state="reconnecting")
        await asyncio.to_thread(server.start)
        assert await js.aevent("unrecovered") == [channel, "epoch changed"]
        assert await js.acall("publish", channel, "new") == [{"reached": 1}]
        [message, _, position] = await js.aevent("message")
        assert (message, position["offset"]) == ("new", 1)  # subscribed from the new history on
    finally:
        server.stop()
