"""What the tidings.js tests put between the client and a server, or in a server's place, over real sockets.

:class:`WebSocketGate` is a network that refuses WebSocket handshakes, or holds them back until the test
lets them through. :class:`ScriptedEngine` is an Engine.IO endpoint that hands every request to the
test, which writes each answer and chooses when it goes.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import uvicorn

from tests.serving import free_port


class WebSocketGate:
    """A TCP proxy to ``127.0.0.1:port`` that passes HTTP and stops WebSocket handshakes: it refuses
    them (a network that blocks WebSockets) or, with ``hold``, keeps them waiting until :meth:`open`.
    """

    def __init__(self, port: int, hold: bool = False) -> None:
        self.port = port
        self.hold = hold
        self.refused: asyncio.Queue[bytes] = asyncio.Queue()  # the request lines refused
        self._opened = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    def open(self) -> None:
        self._opened.set()

    async def __aenter__(self) -> WebSocketGate:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            head = await reader.readuntil(b"\r\n\r\n")  # later requests of the connection just pass
            request_line = head.split(b"\r\n", 1)[0]
            if b"transport=websocket" in request_line:
                if not self.hold:
                    self.refused.put_nowait(request_line)
                    writer.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    return
                await self._opened.wait()
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.port)
            upstream_writer.write(head)
            await asyncio.gather(_pipe(reader, upstream_writer), _pipe(upstream_reader, writer))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:  # by __aexit__; ended quietly, as 3.11's streams log a cancelled one
            pass
        finally:
            writer.close()
            self._tasks.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@dataclass
class Request:
    """One HTTP request to the :class:`ScriptedEngine`, waiting for the test's :meth:`answer`."""

    method: str
    query: dict[str, str]
    body: str
    reply: asyncio.Future[tuple[int, str]]
    aborted: asyncio.Event = field(default_factory=asyncio.Event)  # the client gave up waiting

    def answer(self, body: str, status: int = 200) -> None:
        self.reply.set_result((status, body))


class ScriptedEngine:
    """An ASGI Engine.IO endpoint run by uvicorn on the test's own event loop: each polling request
    waits in :attr:`requests` for the test to answer it; a WebSocket is accepted, what the client sends
    on it goes to :attr:`received` (its query to :attr:`ws_query`), and :meth:`ws_send` sends on it.

    It also counts the requests in flight at once, per method, as the client's one-at-a-time rule
    requires them: :attr:`most_at_once`.
    """

    def __init__(self) -> None:
        self.port = free_port()
        self.requests: asyncio.Queue[Request] = asyncio.Queue()
        self.received: asyncio.Queue[str | bytes] = asyncio.Queue()
        self.most_at_once = {"GET": 0, "POST": 0}
        self._in_flight = {"GET": 0, "POST": 0}
        self.ws_query: dict[str, str] = {}
        self._backlog: list[Request] = []
        self._ws_send: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def next(self, method: str) -> Request:
        """The first request of ``method`` not taken yet, in arrival order."""
        for request in self._backlog:
            if request.method == method:
                self._backlog.remove(request)
                return request
        while (request := await asyncio.wait_for(self.requests.get(), 10)).method != method:
            self._backlog.append(request)
        return request

    async def ws_send(self, text: str) -> None:
        await self._ws_send({"type": "websocket.send", "text": text})

    async def ws_close(self) -> None:
        await self._ws_send({"type": "websocket.close", "code": 1000})

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[ScriptedEngine]:
        config = uvicorn.Config(self, host="127.0.0.1", port=self.port, lifespan="off", log_level="warning")
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.01)
        try:
            yield self
        finally:
            server.should_exit = server.force_exit = True  # requests still waiting are dropped
            await task

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            self.ws_query = dict(parse_qsl(scope["query_string"].decode()))
            await self._websocket(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _http(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        method = scope["method"]
        body, more = b"", True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        query = dict(parse_qsl(scope["query_string"].decode()))
        request = Request(method, query, body.decode(), asyncio.get_running_loop().create_future())
        self._in_flight[method] += 1
        self.most_at_once[method] = max(self.most_at_once[method], self._in_flight[method])
        await self.requests.put(request)
        gone = asyncio.ensure_future(receive())  # http.disconnect, if the client gives up first
        try:
            await asyncio.wait((request.reply, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._in_flight[method] -= 1
        if not request.reply.done():
            request.aborted.set()
            return
        gone.cancel()
        status, text = request.reply.result()
        headers = [(b"content-type", b"text/plain; charset=utf-8")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": text.encode()})

    async def _websocket(self, receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        self._ws_send = send
        while (message := await receive())["type"] == "websocket.receive":
            await self.received.put(message.get("text") or message.get("bytes") or b"")
