"""Engine.IO's HTTP long-polling transport over ASGI (EIO §"HTTP long-polling"): the handshake GET,
the GET that waits for packets, the POST that brings them, and the CORS preflight.

The session's rules are :class:`tidings.protocol.engineio.Session`'s; the engine (:mod:`.engine`)
owns the sessions. This module owns a session's ``_poll`` (the pending GET) and ``_posting``.
"""

from __future__ import annotations

import asyncio
import functools
from typing import TYPE_CHECKING

from tidings.api.request import Headers
from tidings.protocol import ProtocolError
from tidings.protocol import engineio as eio
from tidings.protocol import websocket as ws
from tidings.protocol.engineio import State
from tidings.server.responses import JSON, TEXT, Receive, Scope, Send, respond

if TYPE_CHECKING:
    from tidings.server.engineio import Engine, Session

Cors = list[tuple[bytes, bytes]]
_NOOP = eio.NOOP.encode()


async def handle(engine: Engine, scope: Scope, receive: Receive, send: Send) -> None:
    """Serve one HTTP request to the Engine.IO endpoint."""
    headers = Headers(scope.get("headers", []))
    allowed, origin = engine.origins.allows(scope, headers)
    if not allowed:
        await respond(send, 403, eio.ErrorCode.FORBIDDEN.body(), JSON)
        return
    cors = engine.origins.headers(origin)
    method = scope["method"]
    if method == "OPTIONS":
        await _preflight(send, headers, cors)
        return
    try:
        info = eio.parse_query(scope.get("query_string", b""))
        if info.transport != "polling" or not engine.offers("polling"):
            raise eio.RequestError(eio.ErrorCode.UNKNOWN_TRANSPORT)
        if info.sid is None:
            if method != "GET":
                raise eio.RequestError(eio.ErrorCode.BAD_HANDSHAKE_METHOD)
            address, refusal = engine.admit(scope)
            if refusal is not None:
                await respond(send, *refusal, JSON, cors)
                return
            opened = engine.open("polling", scope, address)
            await respond(send, 200, _payload(opened), TEXT, cors)
            return
        found = engine.sessions.get(info.sid)
        if found is None:
            raise eio.RequestError(eio.ErrorCode.UNKNOWN_SID)
        session = found
        if session.transport != "polling" or method not in ("GET", "POST"):
            raise eio.RequestError(eio.ErrorCode.BAD_REQUEST)
    except eio.RequestError as error:
        await respond(send, 400, error.code.body(), JSON, cors)
        return
    if method == "GET":
        await _get(session, receive, send, cors)
    else:
        await _post(engine, session, receive, send, cors)


def _payload(session: Session) -> bytes:
    """What the outbox holds, as a polling response body (counted in the bytes sent)."""
    payload = eio.encode_payload(session.outbox.take()).encode()
    session.engine.polling_written += len(payload)
    return payload


async def _get(session: Session, receive: Receive, send: Send, cors: Cors) -> None:
    if session._poll is not None:
        # EIO: a second concurrent GET is a client error; the session cannot go on.
        session.close("overlapping polling requests")
        await respond(send, 400, eio.ErrorCode.BAD_REQUEST.body(), JSON, cors)
        return
    if not session.outbox and (session.state is State.OPEN or session.state is State.PROBING):
        loop = asyncio.get_running_loop()
        poll = session._poll = loop.create_future()  # its result: whether the client went away
        # A client that drops the request (page closed, network change) must not take queued
        # packets with it: wait for its disconnect too, and then leave the queue for the next GET.
        # (A callback, not asyncio.wait: this runs for every poll, and wait() costs several times more.)
        gone = loop.create_task(_wait_for_disconnect(receive))
        gone.add_done_callback(functools.partial(_went_away, poll))
        try:
            went_away = await poll
        finally:
            session._poll = None
            gone.cancel()
        if went_away:
            return
    # While an upgrade is under way, the poll is answered with a NOOP so that the client can
    # pause polling; queued packets wait for the WebSocket (EIO §"Upgrade"). With nothing queued
    # (the client closed the session), a NOOP too: an empty body is no payload.
    body = _NOOP if session.state is State.UPGRADING or not session.outbox else _payload(session)
    await respond(send, 200, body, TEXT, cors)


async def _post(engine: Engine, session: Session, receive: Receive, send: Send, cors: Cors) -> None:
    if session._posting:
        # EIO: a client sends one POST at a time; overlapping ones would bypass hold_reading.
        session.close("overlapping polling requests")
        await respond(send, 400, eio.ErrorCode.BAD_REQUEST.body(), JSON, cors)
        return
    session._posting = True
    try:
        await _take_post(engine, session, receive, send, cors)
    finally:
        session._posting = False


async def _take_post(engine: Engine, session: Session, receive: Receive, send: Send, cors: Cors) -> None:
    settings = engine.settings
    try:
        body = await asyncio.wait_for(read_body(receive, settings.max_payload), settings.body_timeout)
    except asyncio.TimeoutError:
        # A body trickling in would hold the connection, and what came of it, for as long as
        # the client likes: even past the session's end, which nothing else tells the request.
        session.close("request body timeout")
        await respond(send, 408, b"request body timeout", TEXT, cors)
        return
    if body is None:
        session.close("payload too large")
        await respond(send, 413, b"payload too large", TEXT, cors)
        return
    try:
        packets = eio.decode_payload(body.decode("utf-8"))
        for packet in packets:
            if session.state is State.CLOSED:
                break
            session.take(packet)
    except (ProtocolError, UnicodeDecodeError) as error:
        reason = str(error) if isinstance(error, ProtocolError) else "invalid UTF-8"
        session.close(reason, ws.PROTOCOL_ERROR)
        await respond(send, 400, reason.encode(), TEXT, cors)
        return
    await session.readable()  # the client's next POST waits for its handlers to catch up
    await respond(send, 200, b"ok", b"text/html", cors)


def _went_away(poll: asyncio.Future[bool], _: object) -> None:
    if not poll.done():
        poll.set_result(True)


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None if it is larger than ``limit`` bytes."""
    chunks = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _preflight(send: Send, headers: Headers, cors: Cors) -> None:
    allow = [(b"access-control-allow-methods", b"GET, POST, OPTIONS"), *cors]
    requested = headers.get("access-control-request-headers")
    if requested:
        allow.append((b"access-control-allow-headers", requested.encode("latin-1")))
    await respond(send, 204, b"", TEXT, allow)
