"""Issue 12, item 6: one client address filling ``max_sessions``.

The attacker (127.0.0.2) opens Engine.IO sessions, by polling handshakes and WebSockets, beyond the
per-address limits of a real `tidings run` (tests/hostile/app.py: ``few_sessions`` holds 5 open per
address, ``slow_sessions`` lets 5 open at once and one more per 100 s), with and without a made-up
``X-Forwarded-For``; the bystander (127.0.0.1) keeps talking and new clients of other addresses still
get in. uvicorn trusts ``X-Forwarded-For`` from 127.0.0.1 and ::1 only (its default
``FORWARDED_ALLOW_IPS``), as from an nginx on the same machine.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from tests.hostile.harness import ATTACKER, bystander, rss_mib, upgrade
from tests.raw_client import RawClient
from tests.serving import TidingsProcess, tidings_process
from tidings.server.limits import LOG_INTERVAL

POLLING = "/socket.io/?EIO=4&transport=polling"
WEBSOCKET = "/socket.io/?EIO=4&transport=websocket"
TOO_MANY_OPEN = {"code": 3, "message": "Too many sessions from this address"}
TOO_MANY_NEW = {"code": 3, "message": "Too many new sessions from this address"}
#: An address the attacker claims to be; an untrusted peer's claim changes nothing.
SPOOFED = {"X-Forwarded-For": "198.51.100.7"}


@contextlib.asynccontextmanager
async def http_from(source: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client whose connections come from ``source``."""
    transport = httpx.AsyncHTTPTransport(local_address=source)
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        yield client


async def polling_session(http: httpx.AsyncClient, server: TidingsProcess, **headers: str) -> str:
    """A new polling session's id."""
    response = await http.get(server.url + POLLING, headers=headers)
    assert response.status_code == 200, response.text
    return str(json.loads(response.text[1:])["sid"])


async def close_polling(http: httpx.AsyncClient, server: TidingsProcess, sid: str) -> None:
    response = await http.post(f"{server.url}{POLLING}&sid={sid}", content="1")
    assert response.status_code == 200, response.text


async def refused_polling(http: httpx.AsyncClient, server: TidingsProcess, headers: dict[str, str]) -> object:
    """The Engine.IO error of a refused polling handshake (HTTP 429)."""
    response = await http.get(server.url + POLLING, headers=headers)
    assert response.status_code == 429, (response.status_code, response.text)
    return response.json()


def refused_upgrade(server: TidingsProcess, headers: dict[str, str], source: str = ATTACKER) -> object:
    """The Engine.IO error of a refused WebSocket handshake (HTTP 429)."""
    sock, head = upgrade(server, WEBSOCKET, source, headers)
    with sock:
        assert head.startswith(b"HTTP/1.1 429"), head
        length = next(
            int(line.partition(b":")[2])
            for line in head.lower().split(b"\r\n")
            if line.startswith(b"content-length:")
        )
        body = b""
        while len(body) < length:
            body += sock.recv(length - len(body))
    return json.loads(body)


def websocket_session(server: TidingsProcess, source: str = ATTACKER) -> socket.socket:
    sock, head = upgrade(server, WEBSOCKET, source)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


async def a_newcomer_gets_in(server: TidingsProcess) -> None:
    """A client of another address connects and is answered."""
    newcomer = await RawClient.connect(server.url)
    assert await newcomer.call("subscribe", "room-newcomer") == [{"ok": True}]
    await newcomer.close()


@pytest.mark.parametrize("ws", ["fast", "websockets"])
async def test_one_address_holds_at_most_its_share_of_open_sessions(ws: str) -> None:
    with tidings_process("tests/hostile/app.py:few_sessions", "--ws", ws) as server:
        async with bystander(server), http_from(ATTACKER) as attacker:
            polling = [await polling_session(attacker, server) for _ in range(3)]
            websockets = [websocket_session(server) for _ in range(2)]  # 5: the limit
            for headers in ({}, SPOOFED):
                assert await refused_polling(attacker, server, headers) == TOO_MANY_OPEN
                assert refused_upgrade(server, headers) == TOO_MANY_OPEN
            await a_newcomer_gets_in(server)

            # Its sessions closed, the attacker's address has room again.
            for sid in polling:
                await close_polling(attacker, server, sid)
            for sock in websockets:
                sock.close()
            again = [await polling_session(attacker, server) for _ in range(3)]
            with websocket_session(server), websocket_session(server):
                assert refused_upgrade(server, {}) == TOO_MANY_OPEN
            for sid in again:
                await close_polling(attacker, server, sid)


async def test_one_address_opens_new_sessions_at_a_limited_rate() -> None:
    with tidings_process("tests/hostile/app.py:slow_sessions") as server:
        async with bystander(server), http_from(ATTACKER) as attacker:
            for _ in range(3):  # opened and closed at once: 3 of the burst of 5
                await close_polling(attacker, server, await polling_session(attacker, server))
            for _ in range(2):
                websocket_session(server).close()
            for headers in ({}, SPOOFED):
                assert await refused_polling(attacker, server, headers) == TOO_MANY_NEW
                assert refused_upgrade(server, headers) == TOO_MANY_NEW
            await a_newcomer_gets_in(server)


async def test_behind_a_trusted_proxy_each_forwarded_address_has_its_own_limit() -> None:
    """127.0.0.1 stands for an nginx on the same machine: its X-Forwarded-For is the client."""
    with tidings_process("tests/hostile/app.py:few_sessions") as server:
        async with http_from("127.0.0.1") as proxy:
            office = {"X-Forwarded-For": "203.0.113.1"}
            for _ in range(5):
                await polling_session(proxy, server, **office)
            assert await refused_polling(proxy, server, office) == TOO_MANY_OPEN
            assert refused_upgrade(server, office, source="127.0.0.1") == TOO_MANY_OPEN
            await polling_session(proxy, server, **{"X-Forwarded-For": "203.0.113.2"})  # another client
            await a_newcomer_gets_in(server)  # the proxy's own address: not the office's


async def test_a_flood_of_handshakes_from_one_address_costs_neither_memory_nor_log() -> None:
    with tidings_process("tests/hostile/app.py:few_sessions") as server:
        log_start = server.log.stat().st_size
        async with bystander(server), http_from(ATTACKER) as attacker:
            before = rss_mib(server)
            statuses: dict[int, int] = {}
            started = time.monotonic()
            for _ in range(3000):
                response = await attacker.get(server.url + POLLING)
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
            flood_seconds = time.monotonic() - started
            after = rss_mib(server)
            await a_newcomer_gets_in(server)
        assert statuses == {200: 5, 429: 2995}
        assert after - before < 5, f"the server grew from {before:.1f} to {after:.1f} MiB"
        log = server.log.read_bytes()[log_start:].decode()
        refusals = [line for line in log.splitlines() if "refusing a new session" in line]
        # One line, then one summary per LOG_INTERVAL the flood lasted (a slow machine: more of them),
        # and the last interval's summary: never one line per refusal.
        assert 1 <= len(refusals) <= 2 + flood_seconds // LOG_INTERVAL, (flood_seconds, refusals)
