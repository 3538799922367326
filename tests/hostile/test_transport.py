"""Issue 12, items 1 and 5: clients that flood pings without reading, and connections that send no
request, against a real `tidings run`.

The limits are those of ``tests/hostile/app.py:limited`` (``close_timeout`` 1 s, ``header_timeout``
3 s, ``max_connections`` 100, ``max_connections_per_address`` 40) where the test needs to reach them;
the ping floods attack the default app. The bystander comes from 127.0.0.1, a trusted proxy address
(uvicorn's default ``forwarded_allow_ips``) and so exempt from the per-address limit; the attackers
come from 127.0.0.2 and up.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import time

import pytest

from tests.hostile.harness import (
    ATTACKER,
    CLOSED,
    ESTABLISHED,
    bystander,
    client_frame,
    close_code,
    read_until_closed,
    rss_mib,
    server_frames,
    tcp,
    tcp_state,
    wait_until,
    websocket,
)
from tests.raw_client import RawClient
from tests.serving import TidingsProcess, tidings_process
from tidings.server.guard import connection_capacity

APP = "tests/hostile/app.py:app"
LIMITED = "tests/hostile/app.py:limited"
ENGINE_IO = "/socket.io/?EIO=4&transport=websocket"
PING = client_frame(0x9, b"p" * 125)


def log(server: TidingsProcess) -> str:
    return server.log.read_text(errors="replace")


def flood(sock: socket.socket, frames: bytes, seconds: float) -> int:
    """Send ``frames`` over and over for ``seconds``, never reading; the bytes sent before the server
    stopped taking them or dropped the connection."""
    sent = 0
    sock.settimeout(0.2)
    deadline = time.monotonic() + seconds
    with contextlib.suppress(ConnectionError):
        while time.monotonic() < deadline:
            with contextlib.suppress(TimeoutError):
                sent += sock.send(frames)
    return sent


# -- item 1: ping floods ---------------------------------------------------------------------------


@pytest.mark.parametrize("ws", ["fast", "websockets"])
@pytest.mark.parametrize("path", [ENGINE_IO, "/ws"])
async def test_a_ping_flood_from_a_client_that_never_reads_costs_no_memory(ws: str, path: str) -> None:
    with tidings_process(APP, "--ws", ws) as server:
        async with bystander(server):
            before = rss_mib(server)
            attacker = websocket(server, path, receive_buffer=4096)
            sent = await asyncio.to_thread(flood, attacker, PING * 1000, 3)
            grown = rss_mib(server) - before
            assert grown < 20, f"{sent / 1e6:.0f} MB of pings grew the server by {grown:.0f} MiB"
            if ws == "fast":  # closed: too many control frames (the stock protocol stops reading)
                await asyncio.to_thread(
                    wait_until, lambda: tcp_state(attacker) != ESTABLISHED, 10, "the flood is cut off"
                )


@pytest.mark.parametrize("path", [ENGINE_IO, "/ws"])
async def test_a_ping_burst_is_closed_with_1008(path: str) -> None:
    with tidings_process(APP) as server:
        async with bystander(server):
            attacker = websocket(server, path)
            attacker.sendall(PING * 100)  # the default websocket_control_frames_per_minute
            data = b""
            while (0xA, b"p" * 125) not in server_frames(data):  # answered
                data += attacker.recv(65536)
            attacker.sendall(PING)
            data += await asyncio.to_thread(read_until_closed, attacker)
    assert close_code(data) == (1008, "too many control frames")
    pongs = [payload for opcode, payload in server_frames(data) if opcode == 0xA]
    assert len(pongs) < 100  # pings received together get one pong
    assert "websocket_control_frames_per_minute" in log(server)


def engineio_listener(server: TidingsProcess, channel: str) -> socket.socket:
    """A raw Engine.IO WebSocket from the attacker's address, subscribed to ``channel``, that reads
    nothing more once it is."""
    sock = websocket(server, ENGINE_IO, receive_buffer=4096)
    received = b""

    def wait_for(prefix: bytes) -> None:
        nonlocal received
        while not any(payload.startswith(prefix) for _, payload in server_frames(received)):
            received += sock.recv(65536)

    wait_for(b"0{")
    sock.sendall(client_frame(0x1, b"40"))
    wait_for(b"40{")
    sock.sendall(client_frame(0x1, b"421" + json.dumps(["subscribe", channel]).encode()))
    wait_for(b"431")
    return sock


async def test_a_closed_session_that_never_reads_is_cut_off_after_close_timeout() -> None:
    """Its close frame (1008 "send buffer full") waits behind megabytes it does not read: the TCP
    connection is reset after close_timeout instead of held (issue: 60 s and more at 269 MiB)."""
    with tidings_process(LIMITED) as server:
        async with bystander(server):
            listener = await asyncio.to_thread(engineio_listener, server, "room-flood")
            talker = await RawClient.connect(server.url)
            assert await talker.call("subscribe", "room-flood") == [{"ok": True}]
            # 10 MB to the listener: more than the kernel's buffers (about 3 MB here) and its
            # max_buffer (4 MiB) together.
            for _ in range(50):
                await talker.emit("message", "x" * 200_000, "room-flood")
                await talker.event()
            await asyncio.to_thread(wait_until, lambda: tcp_state(listener) == CLOSED, 15, "a reset")
            await talker.close()


# -- item 5: connections without a request ---------------------------------------------------------


def get_page(server: TidingsProcess, source: str) -> bytes:
    """A whole request for the app's page from ``source``, and the whole answer: b"" if the server
    closed the connection without one (it refused the connection)."""
    with tcp(server, source) as sock:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        except ConnectionError:
            return b""
        return read_until_closed(sock, timeout=10)


def dribble(sockets: list[socket.socket], head: bytes, interval: float) -> int:
    """Send ``head`` one byte every ``interval`` seconds on each socket (slowloris) while the server
    keeps them open; how many bytes were sent when it had closed them all."""
    for sent, byte in enumerate(head):
        sockets = [sock for sock in sockets if tcp_state(sock) == ESTABLISHED]
        if not sockets:
            return sent
        for sock in sockets:
            with contextlib.suppress(ConnectionError):
                sock.send(bytes((byte,)))
        time.sleep(interval)
    return len(head)


async def test_idle_and_slowloris_connections_are_closed_after_header_timeout() -> None:
    with tidings_process(LIMITED) as server:
        async with bystander(server):
            idle = [tcp(server, ATTACKER) for _ in range(20)]
            slow = [tcp(server, "127.0.0.3") for _ in range(10)]
            head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: 1\r\n" * 10
            sent = await asyncio.to_thread(dribble, slow, head, 0.5)  # 70 s for the whole head
            assert sent < len(head), "slowloris was never dropped"
            await asyncio.to_thread(
                wait_until, lambda: all(tcp_state(sock) != ESTABLISHED for sock in idle), 15, "idle dropped"
            )
            assert get_page(server, ATTACKER).startswith(b"HTTP/1.1 200 ")
    assert "(header_timeout)" in log(server)


def test_the_next_request_head_on_a_kept_alive_connection_has_header_timeout_too() -> None:
    """A kept-alive connection (a long-poll's) keeps one head timer across its requests: the timer set
    at the connection's start fires while this second head dribbles in, and must wait for that head's
    own deadline, then close."""
    with tidings_process(LIMITED) as server, tcp(server) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(10)
        answer = b""
        while not answer.endswith(b"\r\n0\r\n\r\n"):  # the whole (chunked) page; the connection stays open
            chunk = sock.recv(65536)
            assert chunk, "the server closed the kept-alive connection"
            answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 ")
        time.sleep(1.5)  # the next head begins half-way through the first timer's 3 s
        head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: 1\r\n" * 10
        sent = dribble([sock], head, 0.5)  # 70 s for the whole head
        assert sent < len(head), "slowloris on a kept-alive connection was never dropped"
    assert "(header_timeout)" in log(server)


async def test_a_request_head_past_max_request_head_gets_431() -> None:
    with tidings_process(APP) as server, tcp(server) as sock:
        with contextlib.suppress(ConnectionError):  # the server may answer before it has all
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 70_000)  # and no end
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 431 ")


@pytest.mark.parametrize("ws", ["fast", "websockets"])
async def test_the_per_address_limit_counts_websockets_until_they_close(ws: str) -> None:
    with tidings_process(LIMITED, "--ws", ws) as server:
        async with bystander(server):
            # Upgraded connections: no header timeout ends them, and they stay counted.
            sockets = await asyncio.to_thread(lambda: [websocket(server, "/ws") for _ in range(40)])
            assert await asyncio.to_thread(get_page, server, ATTACKER) == b""  # the 41st: refused
            assert (await asyncio.to_thread(get_page, server, "127.0.0.3")).startswith(b"HTTP/1.1 200 ")
            assert (await asyncio.to_thread(get_page, server, "127.0.0.1")).startswith(b"HTTP/1.1 200 ")
            sockets.pop().close()
            await asyncio.to_thread(
                wait_until,
                lambda: get_page(server, ATTACKER).startswith(b"HTTP/1.1 200 "),
                10,
                "a closed WebSocket frees its place",
            )
            for sock in sockets:
                sock.close()
    assert "(max_connections_per_address)" in log(server)


def test_trusted_proxies_are_exempt_from_the_per_address_limit() -> None:
    with tidings_process(LIMITED, "--forwarded-allow-ips", ATTACKER) as server:
        sockets = [websocket(server, "/ws") for _ in range(45)]  # a proxy: many clients, one address
        assert get_page(server, ATTACKER).startswith(b"HTTP/1.1 200 ")
        for sock in sockets:
            sock.close()


async def test_the_process_limit_closes_connections_beyond_it() -> None:
    with tidings_process(LIMITED) as server:
        async with bystander(server):  # one connection of the 100

            def open_websockets() -> tuple[list[socket.socket], int]:
                opened, refused = [], 0
                for source in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
                    for _ in range(40):
                        try:
                            opened.append(websocket(server, "/ws", source))
                        except ConnectionError:
                            refused += 1
                return opened, refused

            sockets, refused = await asyncio.to_thread(open_websockets)
            assert len(sockets) <= 99 and refused >= 21
            assert await asyncio.to_thread(get_page, server, "127.0.0.5") == b""
            for sock in sockets:
                sock.close()
            await asyncio.to_thread(
                wait_until,
                lambda: get_page(server, "127.0.0.5").startswith(b"HTTP/1.1 200 "),
                10,
                "room again once they close",
            )
    assert "(max_connections)" in log(server)


def test_the_open_files_limit_is_raised_to_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # inherited by the server process
    try:
        server = TidingsProcess(APP).start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        assert server.process is not None
        with open(f"/proc/{server.process.pid}/limits") as limits:
            line = next(line for line in limits if line.startswith("Max open files"))
        assert line.split()[3:5] == [str(hard), str(hard)]
        expected = connection_capacity(100_000, hard)
        assert f"at most {expected} connections per process" in log(server)
    finally:
        server.stop()


def bad_request(server: TidingsProcess) -> bytes:
    with tcp(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        return read_until_closed(sock)


async def test_bad_requests_do_not_flood_the_log() -> None:
    with tidings_process(APP) as server:
        async with bystander(server):
            for _ in range(200):
                assert (await asyncio.to_thread(bad_request, server)).startswith(b"HTTP/1.1 400 ")
    lines = [line for line in log(server).splitlines() if "Invalid HTTP request received." in line]
    assert 1 <= len(lines) <= 2, lines  # the first at once, the rest summed up when its interval ends
