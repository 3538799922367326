"""The limit: the least a server can do for the suite's load generator, on uvloop, in one process.

Run: python bench/apps/limit_server.py PORT [--per-frame]. Not a Socket.IO server: just enough of
the WebSocket handshake, the Engine.IO open packet and the Socket.IO namespace connect for the
generator's raw clients, with no heartbeat, no JSON, no validation, no per-connection task. Per event:

- `42<id>["subscribe",...]`: the connection joins the one room; acked `43<id>[{"ok":true}]`;
- `42["publish",<message>]`: `42["message",<message>,"room"]` is framed once (by slicing bytes, never
  parsing JSON) and that one pre-built frame is written to every connection in the room; the
  publishes that arrive in one read are framed together and written in one call per connection
  (with --per-frame, one call per frame: the ceiling of a server that writes each message on its own);
- `42<id>["echo",<payload>]` (or `"echo_def"`): acked `43<id>[<payload>]`.

What no real server does less of on this machine, with the same generator: the top of each measure.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import signal
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
MAX_HEAD = 8192
ROOM: set[Connection] = set()
PER_FRAME = False  # --per-frame: one write per message and connection, never coalesced
_ids = itertools.count(1)


def frame(payload: bytes, opcode: int = 1) -> bytes:
    """One unmasked, unfragmented server frame."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size < 65536:
        return bytes((0x80 | opcode, 126)) + size.to_bytes(2, "big") + payload
    return bytes((0x80 | opcode, 127)) + size.to_bytes(8, "big") + payload


def unmask(data: bytes, mask: bytes) -> bytes:
    size = len(data)
    key = (mask * (size // 4 + 1))[:size]
    return (int.from_bytes(data, "little") ^ int.from_bytes(key, "little")).to_bytes(size, "little")


def accept_key(head: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"sec-websocket-key":
            digest = hashlib.sha1(value.strip() + GUID).digest()
            return base64.b64encode(digest)
    return None


class Connection(asyncio.Protocol):
    __slots__ = ("buffer", "sid", "transport", "upgraded")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.upgraded = False
        self.sid = b"%d" % next(_ids)
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is no asyncio.Transport

    def connection_lost(self, exc: Exception | None) -> None:
        ROOM.discard(self)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        buffer = self.buffer
        buffer += data
        if not self.upgraded and not self._upgrade(transport, buffer):
            return
        published: list[bytes] = []
        pos, end = 0, len(buffer)
        while end - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            size, start = second & 0x7F, pos + 2
            if size == 126:
                if end - start < 2:
                    break
                size, start = int.from_bytes(buffer[start : start + 2], "big"), start + 2
            elif size == 127:
                if end - start < 8:
                    break
                size, start = int.from_bytes(buffer[start : start + 8], "big"), start + 8
            mask = None
            if second & 0x80:
                if end - start < 4:
                    break
                mask, start = bytes(buffer[start : start + 4]), start + 4
            if end - start < size:
                break
            payload = bytes(buffer[start : start + size])
            if mask is not None:
                payload = unmask(payload, mask)
            pos = start + size
            opcode = first & 0x0F
            if opcode == 1:
                self._text(transport, payload, published)
            elif opcode == 8:
                transport.write(frame(payload[:2], 8))
                transport.close()
                return
            elif opcode == 9:
                transport.write(frame(payload, 10))
        del buffer[:pos]
        if not published:
            return
        frames = [frame(b'42["message",' + message + b',"room"]') for message in published]
        members = [member.transport for member in ROOM if member.transport is not None]
        if PER_FRAME:
            for one in frames:
                for member in members:
                    member.write(one)
        else:
            joined = b"".join(frames)
            for member in members:
                member.write(joined)

    def _upgrade(self, transport: asyncio.Transport, buffer: bytearray) -> bool:
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > MAX_HEAD:
                transport.close()
            return False
        key = accept_key(bytes(buffer[:end]))
        del buffer[: end + 4]
        if key is None:
            transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            transport.close()
            return False
        opened = b'0{"sid":"%s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}'
        transport.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + key + b"\r\n\r\n" + frame(opened % self.sid)
        )
        self.upgraded = True
        return True

    def _text(self, transport: asyncio.Transport, payload: bytes, published: list[bytes]) -> None:
        if payload.startswith(b"42"):
            digits = 2
            while digits < len(payload) and 48 <= payload[digits] <= 57:
                digits += 1
            ack, body = payload[2:digits], payload[digits:]
            if body.startswith(b'["publish",'):
                published.append(body[11:-1])
            elif body.startswith(b'["echo",'):
                transport.write(frame(b"43" + ack + b"[" + body[8:-1] + b"]"))
            elif body.startswith(b'["echo_def",'):  # the same: the limit has no handlers
                transport.write(frame(b"43" + ack + b"[" + body[12:-1] + b"]"))
            elif body.startswith(b'["subscribe",'):
                ROOM.add(self)
                if ack:
                    transport.write(frame(b"43" + ack + b'[{"ok":true}]'))
        elif payload.startswith(b"40"):
            transport.write(frame(b'40{"sid":"%s"}' % self.sid))
        elif payload.startswith(b"41"):
            transport.close()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Connection, "127.0.0.1", port, backlog=2048)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    server.close()


def main() -> None:
    global PER_FRAME
    port = int(sys.argv[1])
    PER_FRAME = "--per-frame" in sys.argv[2:]
    try:
        import uvloop
    except ImportError:  # the Python servers run on uvloop; so does the limit where it can
        asyncio.run(serve(port))
    else:
        uvloop.run(serve(port))


if __name__ == "__main__":
    main()
