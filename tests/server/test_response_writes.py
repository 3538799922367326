"""A response of `tidings run`'s HTTP protocol goes to its connection in one write (JoinedWrites), in
order with everything else written there. The protocol runs over a transport that records its writes:
what is tested is how many `send` calls a response costs, which no socket shows."""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.config import Config
from uvicorn.server import ServerState

from tidings.server.guard import GuardedHttpToolsProtocol

GET = b"GET /poll HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def connect(app: Any, transport: RecordingTransport) -> Any:
    """uvicorn's httptools protocol as `tidings run` guards it, connected over ``transport``."""
    config = Config(app, http=GuardedHttpToolsProtocol, lifespan="off", log_level="warning")
    config.load()
    make = functools.partial(
        config.http_protocol_class, config=config, server_state=ServerState(), app_state={}
    )
    protocol = make(_loop=asyncio.get_running_loop())
    protocol.connection_made(transport)
    return protocol


async def turns(count: int = 5) -> None:
    for _ in range(count):
        await asyncio.sleep(0)


async def respond(scope: Any, receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_a_response_is_one_write() -> None:
    transport = RecordingTransport()
    protocol = connect(respond, transport)
    for _ in range(2):  # two requests on the kept-alive connection
        protocol.data_received(GET)
        await turns()
    protocol.connection_lost(None)
    assert len(transport.writes) == 2  # one per response, not a head and a body each
    for write in transport.writes:
        assert write.startswith(b"HTTP/1.1 200 OK\r\n") and write.endswith(b"\r\n\r\nok")


async def test_what_was_written_goes_out_when_the_app_waits() -> None:
    body = asyncio.Event()

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await body.wait()
        await send({"type": "http.response.body", "body": b"ok"})

    transport = RecordingTransport()
    protocol = connect(slow, transport)
    protocol.data_received(GET)
    await turns()
    assert len(transport.writes) == 1 and transport.writes[0].endswith(b"\r\n\r\n")  # the head, alone
    body.set()
    await turns()
    assert transport.writes[1:] == [b"ok"]
    protocol.connection_lost(None)
