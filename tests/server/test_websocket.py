"""tidings' own WebSocket protocol (`tidings run --ws fast`) over real sockets."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import subprocess
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.hostile.harness import client_frame, server_frames
from tests.raw_client import RawClient
from tests.serving import ROOT, TidingsProcess
from tidings.server.guard import Slot
from tidings.server.websocket import FastWebSocketProtocol, State
from tidings.settings import Settings

TIMEOUT = 10


@pytest.fixture(scope="module")
def server() -> Iterator[TidingsProcess]:
    running = TidingsProcess("tests/server/apps/fast.py:app", None, "--ws", "fast").start()
    yield running
    running.stop()


def url(server: TidingsProcess, path: str) -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


async def closed(ws) -> tuple[int | None, str | None]:
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    return ws.close_code, ws.close_reason


async def test_socketio_over_the_fast_protocol(server: TidingsProcess) -> None:
    client = await RawClient.connect(server.url)
    await client.emit("flood", 3, 10)
    for i in range(3):
        assert await client.event() == ["message", f"{i:08d}" + "x" * 10]
    await client.close()


async def test_echo_text_binary_and_large(server: TidingsProcess) -> None:
    async with connect(url(server, "/aecho"), compression=None) as ws:
        for message in ("hello", "é ✓", b"\x00\xff" * 100, "y" * 9_000):
            await ws.send(message)
            assert await ws.recv() == message


async def test_fragmented_client_message(server: TidingsProcess) -> None:
    async with connect(url(server, "/aecho"), compression=None) as ws:
        await ws.send(["frag", "mented ", "é"])
        assert await ws.recv() == "fragmented é"
        await ws.send([b"\x01", b"\x02"])
        assert await ws.recv() == b"\x01\x02"


async def test_ping_is_answered(server: TidingsProcess) -> None:
    async with connect(url(server, "/aecho"), compression=None) as ws:
        pong = await ws.ping(b"are you there")
        assert await asyncio.wait_for(pong, TIMEOUT) >= 0


async def test_message_too_big_is_1009(server: TidingsProcess) -> None:
    async with connect(url(server, "/aecho"), compression=None) as ws:
        await ws.send("z" * 10_001)
        assert (await closed(ws))[0] == 1009


async def test_client_close_code_is_echoed(server: TidingsProcess) -> None:
    ws = await connect(url(server, "/aecho"), compression=None)
    await ws.close(4000, "client leaves")
    assert ws.close_code == 4000


async def test_user_asgi_websocket_route(server: TidingsProcess) -> None:
    async with connect(url(server, "/user/ws"), subprotocols=["chat"], compression=None) as ws:
        assert ws.subprotocol == "chat"
        assert ws.response.headers["x-user"] == "yes"
        await ws.send("hi")
        assert await ws.recv() == "user: hi /user/ws"
        await ws.send(b"abc")
        assert await ws.recv() == b"cba"
        await ws.send("close")
        assert await closed(ws) == (4003, "user says bye")
    async with httpx.AsyncClient() as http:
        assert (await http.get(server.url + "/page")).text == "user page"


async def test_refused_upgrades_answer_http(server: TidingsProcess) -> None:
    with pytest.raises(InvalidStatus) as caught:
        await connect(url(server, "/user-refused"))
    assert caught.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as caught:
        await connect(url(server, "/user-teapot"))
    assert caught.value.response.status_code == 418
    assert caught.value.response.body == b"short and stout!"
    with pytest.raises(InvalidStatus) as caught:  # Engine.IO's own refusal, with its JSON body
        await connect(url(server, "/socket.io/?EIO=4&transport=websocket&sid=nope"))
    assert caught.value.response.status_code == 400
    assert b'"code":1' in caught.value.response.body


async def raw_handshake(
    server: TidingsProcess, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
    assert head.startswith(b"HTTP/1.1 101 "), head
    return reader, writer


async def read_close(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    first, length = await asyncio.wait_for(reader.readexactly(2), TIMEOUT)
    assert first == 0x88
    payload = await reader.readexactly(length)
    return struct.unpack("!H", payload[:2])[0], payload[2:]


@pytest.mark.parametrize(
    "frame",
    [
        b"\x81\x02hi",  # unmasked
        b"\xc1\x82abcd" + bytes((ord("h") ^ ord("a"), ord("i") ^ ord("b"))),  # RSV1 set
        b"\x80\x80abcd",  # continuation without a message
    ],
)
async def test_protocol_error_is_1002(server: TidingsProcess, frame: bytes) -> None:
    reader, writer = await raw_handshake(server, "/aecho")
    writer.write(frame)
    code, _ = await read_close(reader)
    assert code == 1002
    assert await asyncio.wait_for(reader.read(), TIMEOUT) == b""  # and the server drops the connection
    writer.close()


async def test_slow_consumer_is_dropped_with_1008(server: TidingsProcess) -> None:
    client = await RawClient.connect(server.url)
    # 40 MB at one message per loop iteration: more than the kernel's socket buffers and the
    # app's max_buffer (256 KiB) together. The client does not read meanwhile.
    await client.emit("flood", 4_000, 10_000)
    await asyncio.sleep(3)
    received = 0
    with pytest.raises(ConnectionClosed):
        while True:
            await asyncio.wait_for(client.ws.recv(), TIMEOUT)
            received += 1
    assert 0 < received < 4_000
    assert (client.ws.close_code, client.ws.close_reason) == (1008, "send buffer full")


async def test_bad_version_gets_426(server: TidingsProcess) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(
        b"GET /aecho HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
    )
    answer = await asyncio.wait_for(reader.read(), TIMEOUT)
    assert answer.startswith(b"HTTP/1.1 426 ")
    assert b"sec-websocket-version: 13\r\n" in answer.lower()
    writer.close()


async def test_stock_protocol_still_selectable() -> None:
    stock = TidingsProcess("tests/server/apps/fast.py:app", None, "--ws", "websockets").start()
    try:
        client = await RawClient.connect(stock.url)
        await client.emit("flood", 2, 5)
        assert await client.event() == ["message", "00000000xxxxx"]
        await client.close()
        async with connect(url(stock, "/user/ws"), compression=None) as ws:
            await ws.send("hi")
            assert await ws.recv() == "user: hi /user/ws"
    finally:
        stock.stop()


def test_unknown_protocol_is_refused() -> None:
    env = {**os.environ, "TIDINGS_WS": "nope"}
    command = [sys.executable, "-m", "tidings", "run", "tests/server/apps/fast.py:app", "--port", "1"]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert "unknown WebSocket protocol 'nope'" in done.stderr


# -- the protocol's limits, against a fake transport (no socket: the peer's reading is simulated) ----


class FakeTransport:
    """What the protocol writes, and a peer that takes it or not (``unsent``: bytes left in the buffer)."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.unsent = 0
        self.reading = True
        self.closing = False
        self.aborted = False

    def write(self, data: bytes) -> None:
        self.written += data

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = self.aborted = True

    def get_extra_info(self, name: str) -> object:
        return {"peername": ("127.0.0.2", 5000), "sockname": ("127.0.0.1", 8000)}.get(name)


async def accepting_app(scope, receive, send) -> None:
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


UPGRADE = (
    b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def upgraded(app, **settings) -> tuple[FastWebSocketProtocol, FakeTransport]:
    """A protocol given the upgrade request, as uvicorn does, and its transport."""
    config = SimpleNamespace(loaded=True, loaded_app=app, root_path="", asgi_version="3.0", ws_max_size=1000)
    server_state = SimpleNamespace(connections=set(), tasks=set(), default_headers=[])
    protocol = FastWebSocketProtocol(config, server_state, {}, settings=Settings(**settings))
    transport = FakeTransport()
    protocol.connection_made(transport)  # type: ignore[arg-type]
    protocol.data_received(UPGRADE)
    return protocol, transport


async def opened(app=accepting_app, **settings) -> tuple[FastWebSocketProtocol, FakeTransport]:
    """A protocol past the opening handshake, its transport's record cleared."""
    protocol, transport = upgraded(app, **settings)
    while protocol.state is not State.OPEN:
        await asyncio.sleep(0)
    assert transport.written.startswith(b"HTTP/1.1 101 ")
    transport.written.clear()
    return protocol, transport


async def written_frames(transport: FakeTransport) -> list[tuple[int, bytes]]:
    await asyncio.sleep(0)  # the loop iteration's flush
    return server_frames(bytes(transport.written))


def close_frame_of(code: int, reason: str) -> tuple[int, bytes]:
    return (0x8, struct.pack("!H", code) + reason.encode())


async def test_pings_received_together_get_one_pong() -> None:
    protocol, transport = await opened()
    protocol.data_received(b"".join(client_frame(0x9, b"%d" % n) for n in range(50)))
    assert await written_frames(transport) == [(0xA, b"49")]
    protocol.data_received(client_frame(0x9, b"again"))
    assert (await written_frames(transport))[1:] == [(0xA, b"again")]


async def test_too_many_control_frames_close_with_1008() -> None:
    protocol, transport = await opened(websocket_control_frames_per_minute=5)
    for n in range(3):
        protocol.data_received(client_frame(0x9, b"%d" % n))
    protocol.data_received(client_frame(0xA, b"unsolicited") * 2)  # pongs count too
    assert not transport.closing
    protocol.data_received(client_frame(0x9, b"one too many"))
    frames = await written_frames(transport)
    assert frames == [(0xA, b"0"), (0xA, b"1"), (0xA, b"2"), close_frame_of(1008, "too many control frames")]
    assert transport.closing


async def test_a_pong_past_max_buffer_closes_with_1008() -> None:
    protocol, transport = await opened(max_buffer=10_000)
    transport.unsent = 9_990  # the peer reads nothing
    protocol.data_received(client_frame(0x9, b"x" * 20))
    assert await written_frames(transport) == [close_frame_of(1008, "send buffer full")]
    assert transport.closing


async def test_a_peer_that_does_not_take_our_writes_is_not_read() -> None:
    protocol, transport = await opened()
    protocol.pause_writing()
    assert not transport.reading
    protocol.resume_writing()
    assert transport.reading
    protocol.pause_writing()
    protocol.close(1000, "bye")  # closing: its close frame has to come through
    assert transport.reading


async def test_reading_pauses_for_unread_messages_and_for_paused_writes_alike() -> None:
    received: asyncio.Queue[dict] = asyncio.Queue()

    async def hoarding_app(scope, receive, send) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await received.get()  # reads nothing until told
        while (await receive())["type"] != "websocket.disconnect":
            pass

    protocol, transport = await opened(hoarding_app, websocket_max_queue=4)
    protocol.data_received(client_frame(0x1, b"m") * 4)
    assert not transport.reading  # the app has 4 unread
    protocol.pause_writing()
    received.put_nowait({})
    await asyncio.sleep(0.01)  # the app reads them all
    assert not transport.reading  # still: the peer does not take our writes
    protocol.resume_writing()
    assert transport.reading


CLOSE_TIMEOUT = 0.05


async def _by_close(protocol: FastWebSocketProtocol) -> None:
    protocol.close(1000, "bye")


async def _by_protocol_error(protocol: FastWebSocketProtocol) -> None:
    protocol.data_received(b"\x81\x02hi")  # unmasked


async def _by_client_close(protocol: FastWebSocketProtocol) -> None:
    protocol.data_received(client_frame(0x8, struct.pack("!H", 1000)))


async def _by_shutdown(protocol: FastWebSocketProtocol) -> None:
    protocol.shutdown()


@pytest.mark.parametrize("closing", [_by_close, _by_protocol_error, _by_client_close, _by_shutdown])
async def test_every_close_aborts_a_peer_that_takes_nothing(closing) -> None:
    protocol, transport = await opened(close_timeout=CLOSE_TIMEOUT)
    transport.unsent = 100_000  # the peer reads nothing
    await closing(protocol)
    assert await written_frames(transport)  # the close frame is queued...
    await wait_for_abort(transport)  # ...but no one takes it


async def test_a_refused_upgrade_aborts_a_peer_that_takes_nothing() -> None:
    async def refusing_app(scope, receive, send) -> None:
        await receive()
        await send({"type": "websocket.close"})

    _, transport = upgraded(refusing_app, close_timeout=CLOSE_TIMEOUT)
    transport.unsent = 100_000  # the peer reads nothing
    await wait_for_abort(transport)
    assert transport.written.startswith(b"HTTP/1.1 403 ")


async def wait_for_abort(transport: FakeTransport) -> None:
    for _ in range(200):
        if transport.aborted:
            return
        await asyncio.sleep(CLOSE_TIMEOUT / 5)
    raise AssertionError("not aborted")


async def test_a_peer_still_reading_is_given_time_to_take_the_rest() -> None:
    protocol, transport = await opened(close_timeout=CLOSE_TIMEOUT)
    transport.unsent = 100_000
    protocol.close(1000, "bye")
    for _ in range(20):  # four close timeouts, taking a little in each
        await asyncio.sleep(CLOSE_TIMEOUT / 5)
        transport.unsent -= 1000
    assert not transport.aborted
    await wait_for_abort(transport)  # then it stops


async def test_a_close_frame_unanswered_though_delivered_closes_the_connection() -> None:
    protocol, transport = await opened(close_timeout=CLOSE_TIMEOUT)
    protocol.close(1000, "bye")  # the peer takes it all (unsent 0) but never answers
    for _ in range(200):
        if transport.closing:
            break
        await asyncio.sleep(CLOSE_TIMEOUT / 5)
    assert transport.closing and not transport.aborted  # as usual: the kernel delivers what it has


async def test_connection_lost_releases_the_address_slot_and_the_timer() -> None:
    protocol, transport = await opened(close_timeout=CLOSE_TIMEOUT)
    counts = {"127.0.0.2": 1}
    protocol.connection_slot = Slot(counts, "127.0.0.2")
    transport.unsent = 100_000
    protocol.close(1000, "bye")
    protocol.connection_lost(None)
    assert counts == {}
    await asyncio.sleep(CLOSE_TIMEOUT * 3)
    assert not transport.aborted
