"""The HTTP server API: backends in any language send to sockets and ask who is connected, over JSON.

Centrifugo's server API is the model: ``POST <api_path>/<method>`` with a JSON object, answered
``{"result": {...}}`` or, with a 4xx or 5xx status, ``{"error": "..."}``. The methods and their fields
are in :mod:`tidings.server.openapi`, whose document is served at ``<api_path>/openapi.json``.

Off unless the server has an ``api_key``. Every request must carry it (``Authorization: apikey <key>``
or ``X-API-Key: <key>``, compared in constant time); without it the answer is 401 and nothing is done.
Everything goes through the server's broker, so it reaches the sockets of every worker and node.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from tidings.api.request import Headers, route_path
from tidings.api.routing import Send, emit, route
from tidings.channels import check_channel_name, check_session_id, require
from tidings.errors import BrokerError, ProtocolError
from tidings.hub import Hub
from tidings.protocol.socketio import loads
from tidings.server import openapi
from tidings.server.polling import read_body
from tidings.server.responses import JSON, Receive, Scope, respond
from tidings.server.responses import Send as ASGISend
from tidings.settings import Settings

Result = dict[str, Any]


class ApiError(Exception):
    """A request the API refuses: its HTTP status and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class HttpApi:
    """The API of one server: ``settings.api_path`` and below, answered with its ``hub``'s broker."""

    def __init__(self, settings: Settings, hub: Hub) -> None:
        assert settings.api_key is not None
        self.settings = settings
        self.hub = hub
        self.path = settings.api_path
        self._key = settings.api_key.encode()
        self._methods = openapi.methods(settings)
        self._calls: dict[str, Callable[[dict[str, Any]], Awaitable[Result]]] = {
            "publish": self._publish,
            "send": self._send,
            "broadcast": self._broadcast,
            "emit": self._emit,
            "presence": self._presence,
            "history": self._history,
            "channels": self._channels,
            "disconnect": self._disconnect,
        }
        assert self._calls.keys() == self._methods.keys()
        self._document = orjson.dumps(openapi.document(settings))

    def serves(self, path: str) -> bool:
        return path == self.path or path.startswith(self.path + "/")

    async def handle(self, scope: Scope, receive: Receive, send: ASGISend) -> None:
        name = route_path(scope)[len(self.path) + 1 :]
        try:
            if name == "openapi.json":
                if scope["method"] != "GET":
                    raise ApiError(405, "use GET")
                await respond(send, 200, self._document, JSON)
                return
            if name not in self._calls:
                raise ApiError(404, f"no API method {name!r}: see {self.path}/openapi.json")
            if scope["method"] != "POST":
                raise ApiError(405, "use POST")
            self._authorize(Headers(scope["headers"]))
            request = await self._read(receive)
            reason = openapi.check(request, self._methods[name].request)
            if reason is not None:
                raise ApiError(422, reason)
            try:
                result = await self._calls[name](request)
            except ValueError as error:  # a name tidings refuses: a channel, a session id, an event
                raise ApiError(422, str(error)) from None
            except BrokerError as error:
                raise ApiError(503, str(error)) from None
        except ApiError as error:
            allow = [(b"allow", b"GET" if name == "openapi.json" else b"POST")] if error.status == 405 else []
            await respond(send, error.status, orjson.dumps({"error": str(error)}), JSON, allow)
            return
        await respond(send, 200, orjson.dumps({"result": result}, default=_base64), JSON)

    def _authorize(self, headers: Headers) -> None:
        """401 unless the request carries the key (compared in constant time)."""
        given = headers.get("x-api-key")
        if given is None:
            scheme, _, given = headers.get("authorization", "").partition(" ")
            if scheme.lower() != "apikey":
                raise ApiError(401, "no API key: send 'Authorization: apikey <key>' or 'X-API-Key: <key>'")
        if not hmac.compare_digest(given.strip().encode("latin-1"), self._key):
            raise ApiError(401, "wrong API key")

    async def _read(self, receive: Receive) -> Any:
        """The request's JSON body: 413 past ``api_max_body``, 408 past ``body_timeout``, 400 if it is
        no JSON object tidings can send on."""
        settings = self.settings
        try:
            body = await asyncio.wait_for(read_body(receive, settings.api_max_body), settings.body_timeout)
        except asyncio.TimeoutError:
            raise ApiError(408, f"the body did not arrive within {settings.body_timeout}s") from None
        if body is None:
            raise ApiError(413, f"the body is larger than {settings.api_max_body} bytes (api_max_body)")
        try:
            request = loads(body.decode("utf-8"))
        except (ProtocolError, UnicodeDecodeError) as error:
            reason = str(error) if isinstance(error, ProtocolError) else "invalid UTF-8"
            raise ApiError(400, f"the body is no JSON object: {reason}") from None
        if not isinstance(request, dict):
            raise ApiError(400, "the body is no JSON object")
        return request

    # -- the methods: each takes a request that matched its schema --------------------------------

    async def _route(self, send: Send) -> Result:
        return {"reached": await route(send, self.hub.broker, self.hub.acall)}

    async def _publish(self, request: dict[str, Any]) -> Result:
        channel = request["channel"]
        require(check_channel_name(channel, self.settings.max_channel_length))
        return await self._route(Send(request["data"], channel=channel))

    async def _send(self, request: dict[str, Any]) -> Result:
        session_id = request["session_id"]
        require(check_session_id(session_id))
        return await self._route(Send(request["data"], session_id=session_id))

    async def _broadcast(self, request: dict[str, Any]) -> Result:
        return await self._route(Send(request["data"], namespace=request.get("namespace", "/")))

    async def _emit(self, request: dict[str, Any]) -> Result:
        limit = self.settings.max_channel_length
        namespace = request.get("namespace", "/")
        send = emit(
            request["event"],
            request.get("args", ()),
            request.get("to"),
            namespace,
            request.get("exclude"),
            limit,
        )
        return await self._route(send)

    async def _presence(self, request: dict[str, Any]) -> Result:
        channel = self._channel(request, "presence")
        return {"members": await self.hub.broker.presence(channel)}

    async def _history(self, request: dict[str, Any]) -> Result:
        channel = self._channel(request, "history")
        rule = self.hub.options.history(channel)
        assert rule is not None
        position, held = await self.hub.broker.history(channel, rule)
        limit = request.get("limit")
        if limit is not None:
            limit = int(limit)
            held = held[max(0, len(held) - limit) :] if limit else []
        messages = [{"offset": offset, "data": outgoing.message} for offset, outgoing in held]
        return {"offset": position.offset, "epoch": position.epoch, "messages": messages}

    def _channel(self, request: dict[str, Any], kind: str) -> str:
        """The request's channel, which must have ``kind`` (history or presence) by the settings."""
        channel: str = request["channel"]
        require(check_channel_name(channel, self.settings.max_channel_length))
        has = (
            self.hub.options.history(channel) is not None
            if kind == "history"
            else self.hub.options.presence(channel)
        )
        if not has:
            raise ApiError(404, f"no {kind} for channel {channel!r}: see the {kind} setting")
        return channel

    async def _channels(self, request: dict[str, Any]) -> Result:
        prefix = request.get("prefix", "")
        counts = await self.hub.broker.channel_counts(self.settings.api_survey_timeout)
        channels = [
            {"channel": name, "subscribers": count}
            for name, count in sorted(counts.items())
            if name.startswith(prefix)
        ]
        return {"channels": channels}

    async def _disconnect(self, request: dict[str, Any]) -> Result:
        session_id = request["session_id"]
        require(check_session_id(session_id))
        return {
            "disconnected": await self.hub.broker.disconnect(session_id, self.settings.api_survey_timeout)
        }


def _base64(value: Any) -> dict[str, str]:
    """What JSON has no form for: the bytes a Socket.IO client sent (a binary message in a history)."""
    if isinstance(value, bytes):
        return {"base64": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"{type(value).__name__} is not JSON")
