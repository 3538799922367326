"""Tools to attack a real `tidings run`: raw sockets from another loopback address, the server's
memory, and a bystander that checks that nothing of its own is lost meanwhile.

The attacker connects from ``ATTACKER`` (127.0.0.2, also loopback on Linux) and the bystander from
127.0.0.1, so per-address limits tell them apart as they would two hosts.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from typing import Any

from tests.raw_client import RawClient
from tests.serving import TidingsProcess

ATTACKER = "127.0.0.2"
BYSTANDER_CHANNEL = "room-bystander"


def rss_mib(server: TidingsProcess, field: str = "VmRSS") -> float:
    """The server process's resident memory, in MiB."""
    assert server.process is not None
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no {field}")


def peak_rss_mib(server: TidingsProcess) -> float:
    """The most resident memory the server process has had so far, in MiB: what an attack cost at
    its worst, even if it was given back since."""
    return rss_mib(server, "VmHWM")


def open_fds(server: TidingsProcess) -> int:
    assert server.process is not None
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def tcp(server: TidingsProcess, source: str = ATTACKER) -> socket.socket:
    """A TCP connection to the server from ``source``."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10, source_address=(source, 0))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def websocket(
    server: TidingsProcess, path: str, source: str = ATTACKER, receive_buffer: int = 0
) -> socket.socket:
    """A raw WebSocket connection (opening handshake done) from ``source``.

    ``receive_buffer`` (bytes), if given, shrinks the socket's receive buffer first: a client that
    never reads then stops the server's writes sooner.
    """
    sock, head = upgrade(server, path, source, receive_buffer=receive_buffer)
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def upgrade(
    server: TidingsProcess,
    path: str,
    source: str = ATTACKER,
    headers: dict[str, str] | None = None,
    receive_buffer: int = 0,
) -> tuple[socket.socket, bytes]:
    """A WebSocket opening handshake from ``source`` with extra ``headers`` (or others in place of
    its own): the socket and the server's answer up to its blank line (``HTTP/1.1 101 ...`` if it
    was accepted)."""
    sock = socket.socket()
    if receive_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(10)
    sock.bind((source, 0))
    sock.connect(("127.0.0.1", server.port))
    fields = {
        "Host": f"127.0.0.1:{server.port}",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": base64.b64encode(os.urandom(16)).decode(),
        "Sec-WebSocket-Version": "13",
    } | (headers or {})
    lines = "".join(f"{name}: {value}\r\n" for name, value in fields.items())
    sock.sendall(f"GET {path} HTTP/1.1\r\n{lines}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionError(f"closed during the handshake: {head!r}")
        head += chunk
    return sock, head


#: TCP states (Linux, ``TCP_INFO``) of a client socket: open, or reset by the server (a server that
#: closed it gracefully leaves it in a third one, CLOSE_WAIT).
ESTABLISHED, CLOSED = 1, 7


def tcp_state(sock: socket.socket) -> int:
    """The kernel's TCP state of ``sock``, seen without reading from it."""
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]


def client_frame(
    opcode: int, payload: bytes, fin: bool = True, mask: bytes | None = None, rsv: int = 0
) -> bytes:
    """A client frame as a browser builds it: masked (RFC 6455 §5.2, §5.3), with a random key
    unless ``mask`` is given; ``rsv`` sets reserved bits (which a server must refuse)."""
    mask = os.urandom(4) if mask is None else mask
    first = (0x80 if fin else 0) | rsv | opcode
    length = len(payload)
    if length < 126:
        head = bytes((first, 0x80 | length))
    elif length < 0x10000:
        head = struct.pack("!BBH", first, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, length)
    repeated = (mask * (length // 4 + 1))[:length]
    masked = int.from_bytes(payload, "little") ^ int.from_bytes(repeated, "little")
    return head + mask + masked.to_bytes(length, "little")


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """The (opcode, payload) of each whole unmasked server frame in ``data``."""
    frames = []
    position = 0
    while len(data) - position >= 2:
        opcode, length = data[position] & 0x0F, data[position + 1] & 0x7F
        start = position + 2
        if length == 126:
            length, start = int.from_bytes(data[start : start + 2], "big"), start + 2
        elif length == 127:
            length, start = int.from_bytes(data[start : start + 8], "big"), start + 8
        if len(data) - start < length:
            break
        frames.append((opcode, data[start : start + length]))
        position = start + length
    return frames


def read_until_closed(sock: socket.socket, timeout: float = 30) -> bytes:
    """Everything the server sends until it closes the connection (or resets it)."""
    sock.settimeout(timeout)
    chunks = []
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(1 << 20):
            chunks.append(chunk)
    return b"".join(chunks)


def close_code(data: bytes) -> tuple[int, str] | None:
    """The code and reason of the last close frame among the server frames in ``data``."""
    closes = [payload for opcode, payload in server_frames(data) if opcode == 0x8]
    if not closes:
        return None
    return int.from_bytes(closes[-1][:2], "big"), closes[-1][2:].decode()


class Bystander:
    """An ordinary user of the chat room: posts numbered messages and checks that each comes back.

    Its loop runs while the attack goes on; :meth:`check` then asserts that it kept talking and that
    every message it sent came back, once and in order.
    """

    def __init__(self, client: RawClient) -> None:
        self.client = client
        self.sent = 0
        self.received: list[Any] = []
        self.failure: BaseException | None = None
        # Set to end the loop after its round trip (cancelling it could be lost: on Python 3.11,
        # asyncio.wait_for swallows a cancellation that comes as the message does).
        self.stopping = False

    async def run(self, interval: float = 0.05) -> None:
        """Talk until :attr:`stopping` is set; each round trip is finished before it looks."""
        try:
            while not self.stopping:
                await self.client.emit("message", f"bystander-{self.sent}", BYSTANDER_CHANNEL)
                self.sent += 1
                self.received.append(await self.client.event(timeout=10))
                await asyncio.sleep(interval)
        except Exception as error:  # reported by check()
            self.failure = error

    async def check(self, minimum: int = 1) -> None:
        """A last round trip, then: nothing lost, nothing out of order."""
        assert self.failure is None, f"the bystander failed: {self.failure!r}"
        await self.client.emit("message", "last", BYSTANDER_CHANNEL)
        self.received.append(await self.client.event(timeout=10))
        texts = [event[1]["text"] for event in self.received if event[0] == "message"]
        expected = [f"bystander-{n}" for n in range(len(texts) - 1)] + ["last"]
        assert texts == expected, f"the bystander lost messages: {texts[-5:]}"
        assert len(texts) - 1 >= minimum, f"the bystander sent only {len(texts) - 1} messages"


@contextlib.asynccontextmanager
async def bystander(server: TidingsProcess) -> AsyncIterator[Bystander]:
    """A :class:`Bystander` in ``room-bystander``, talking in the background while the block runs."""
    client = await RawClient.connect(server.url)
    assert await client.call("subscribe", BYSTANDER_CHANNEL) == [{"ok": True}]
    watcher = Bystander(client)
    task = asyncio.create_task(watcher.run())
    try:
        yield watcher
    finally:
        watcher.stopping = True
        await asyncio.wait_for(task, 30)  # its last round trip, not cut in the middle
    await watcher.check()
    await client.close()


def wait_until(condition: Any, timeout: float, what: str) -> None:
    """Poll ``condition()`` until it is true; fail saying ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        time.sleep(0.1)
