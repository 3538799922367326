"""tidings' own WebSocket protocol (`tidings run --ws fast`) over real sockets."""

from __future__ import annotations

import asyncio
import base64
import os
import struct
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.raw_client import RawClient
from tests.serving import ROOT, TidingsProcess

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
