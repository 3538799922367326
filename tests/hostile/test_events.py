"""Events sent faster than their handlers run: the connection's queue of waiting events is bounded
(``max_pending_events``, ``max_pending_bytes``), and the client is slowed down rather than the
server's memory grown, against a real `tidings run` of tests/hostile/app.py.

Before the bound, one client posting 200-byte messages to the README's chat room (reading the echoes,
so that its send buffer never filled) grew the server by 520 MiB in 8 s on a loaded machine; the
test uses the app's ``save`` event, whose handler takes 10 ms as a database write would, so that the
handlers are behind on any machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time

import httpx
import pytest

from tests.hostile.harness import bystander, client_frame, read_until_closed, rss_mib, tcp, websocket
from tests.serving import tidings_process

APP = "tests/hostile/app.py:app"
ENGINE_IO = "/socket.io/?EIO=4&transport=websocket"
POLLING = "/socket.io/?EIO=4&transport=polling"
SAVE = b'42["save","' + b"x" * 1000 + b'"]'


def read_everything(sock: socket.socket) -> threading.Thread:
    """Read whatever the server sends, in a thread, until the connection ends."""

    def read() -> None:
        with contextlib.suppress(OSError):
            while sock.recv(1 << 20):
                pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    return reader


def post_as_fast_as_possible(sock: socket.socket, seconds: float) -> int:
    """Events sent in ``seconds``, as many as the server takes (whole batches)."""
    batch = client_frame(0x1, SAVE) * 500
    sent = 0
    sock.settimeout(0.5)
    deadline = time.monotonic() + seconds
    with contextlib.suppress(TimeoutError):  # the server stopped reading: the batch stays half sent
        while time.monotonic() < deadline:
            sock.sendall(batch)
            sent += 500
    return sent


@pytest.mark.parametrize("ws", ["fast", "websockets"])
async def test_a_client_faster_than_its_handlers_is_slowed_down_not_queued(ws: str) -> None:
    with tidings_process(APP, "--ws", ws) as server:
        async with bystander(server):
            attacker = websocket(server, ENGINE_IO)
            attacker.recv(1000)  # the open packet
            attacker.sendall(client_frame(0x1, b"40"))
            read_everything(attacker)
            before = rss_mib(server)
            sent = await asyncio.to_thread(post_as_fast_as_possible, attacker, 4)
            grown = rss_mib(server) - before
            attacker.close()
        assert sent >= 1000, "the attacker could not post at all"
        assert grown < 10, f"{sent} events grew the server by {grown:.0f} MiB"


async def test_overlapping_polling_posts_end_the_session() -> None:
    with tidings_process(APP) as server:
        async with bystander(server), httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            opened = await http.get(POLLING)
            sid = opened.text.split('"sid":"')[1].split('"')[0]
            url = f"{POLLING}&sid={sid}"
            assert (await http.post(url, content="40")).text == "ok"
            await http.get(url)  # the CONNECT answer
            answers = await asyncio.gather(*(http.post(url, content="3") for _ in range(20)))
            assert 400 in {answer.status_code for answer in answers}
            assert (await http.get(url)).status_code == 400  # the session is gone


async def test_a_post_body_that_trickles_in_is_cut_off_after_body_timeout() -> None:
    with tidings_process("tests/hostile/app.py:impatient") as server:  # body_timeout 1 s
        async with bystander(server), httpx.AsyncClient(base_url=server.url, timeout=10) as http:
            opened = await http.get(POLLING)
            sid = opened.text.split('"sid":"')[1].split('"')[0]
            sock = tcp(server)
            sock.sendall(
                f"POST {POLLING}&sid={sid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                "Content-Type: text/plain\r\nContent-Length: 900000\r\n\r\n".encode()
                + b"4" * 1000
            )
            answer = await asyncio.to_thread(read_until_closed, sock, 10)
            assert answer.startswith(b"HTTP/1.1 408"), answer[:80]
            assert (await http.get(f"{POLLING}&sid={sid}")).status_code == 400  # the session is over
