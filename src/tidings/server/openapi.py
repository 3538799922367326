"""The HTTP server API's methods as an OpenAPI 3.1 document, and the check of a request against it.

One table, :func:`methods`, says what each method takes and answers, with the server's limits in it
(the longest channel name, how many targets); the document served at ``<api_path>/openapi.json`` is
built from it, and :func:`check` refuses a request body that does not match it, so the two cannot
drift apart. The JSON Schema of the table uses only what :func:`check` understands: ``type``
(``string``, ``integer``, ``array``, ``object``), ``minLength``, ``maxLength``, ``minimum``,
``pattern`` (anchored with ``^`` and ``$``), ``maxItems``, ``items``, ``anyOf``,
``not``/``enum``, ``properties``, ``required`` and ``additionalProperties: false``; a schema without
``type`` takes any JSON value.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from tidings.channels import SESSION_ID as SESSION_ID_FORM
from tidings.protocol.socketio import RESERVED_EVENTS
from tidings.settings import Settings

Schema = dict[str, Any]

ANY: Schema = {"description": "any JSON value whose integers fit in 64 bits (else 400)"}
COUNT: Schema = {"type": "integer", "minimum": 0}
SESSION_ID: Schema = {
    "type": "string",
    "pattern": f"^{SESSION_ID_FORM.pattern}$",
    "description": "a session id",
}
NAMESPACE: Schema = {"type": "string", "minLength": 1, "maxLength": 200, "default": "/"}


class Method(NamedTuple):
    """One API method: what it does, the object it takes, the object it answers (its ``result``)."""

    summary: str
    request: Schema
    result: Schema


def _object(properties: dict[str, Schema], required: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def methods(settings: Settings) -> dict[str, Method]:
    """The API's methods, by name (``POST <api_path>/<name>``), with ``settings``' limits."""
    channel: Schema = {"type": "string", "minLength": 1, "maxLength": settings.max_channel_length}
    targets: Schema = {
        "anyOf": [
            {"type": "string", "minLength": 1, "maxLength": settings.max_channel_length},
            {"type": "array", "items": channel, "maxItems": settings.api_max_targets},
        ],
        "description": "a channel or a session id, or a list of them",
    }
    event: Schema = {"type": "string", "minLength": 1, "not": {"enum": sorted(RESERVED_EVENTS)}}
    reached = _object({"reached": COUNT}, ("reached",))
    return {
        "publish": Method(
            "Send data to every socket in a channel (the message event, with the channel)",
            _object({"channel": channel, "data": ANY}, ("channel", "data")),
            reached,
        ),
        "send": Method(
            "Send data to one socket (the message event)",
            _object({"session_id": SESSION_ID, "data": ANY}, ("session_id", "data")),
            reached,
        ),
        "broadcast": Method(
            "Send data to every socket of a namespace (the message event)",
            _object({"data": ANY, "namespace": NAMESPACE}, ("data",)),
            reached,
        ),
        "emit": Method(
            "Send a named event to channels and sockets (to), or to a whole namespace",
            _object(
                {
                    "event": event,
                    "args": {"type": "array", "items": ANY, "default": []},
                    "to": targets,
                    "exclude": targets,
                    "namespace": NAMESPACE,
                },
                ("event",),
            ),
            reached,
        ),
        "presence": Method(
            "Who is in a channel with presence, on every node",
            _object({"channel": channel}, ("channel",)),
            _object(
                {
                    "members": {
                        "type": "array",
                        "items": _object(
                            {"session_id": {"type": "string"}, "info": ANY}, ("session_id", "info")
                        ),
                    }
                },
                ("members",),
            ),
        ),
        "history": Method(
            "What the history of a channel with history holds, oldest first",
            _object({"channel": channel, "limit": {"type": "integer", "minimum": 0}}, ("channel",)),
            _object(
                {
                    "offset": COUNT,
                    "epoch": {"type": "string"},
                    "messages": {
                        "type": "array",
                        "items": _object({"offset": COUNT, "data": ANY}, ("offset", "data")),
                    },
                },
                ("offset", "epoch", "messages"),
            ),
        ),
        "channels": Method(
            "The channels with sockets in them, on every node, and how many sockets each has",
            _object({"prefix": {"type": "string"}}),
            _object(
                {
                    "channels": {
                        "type": "array",
                        "items": _object(
                            {"channel": {"type": "string"}, "subscribers": COUNT}, ("channel", "subscribers")
                        ),
                    }
                },
                ("channels",),
            ),
        ),
        "disconnect": Method(
            "Disconnect a socket, on whichever node holds it (its client is told, and does not reconnect)",
            _object({"session_id": SESSION_ID}, ("session_id",)),
            _object({"disconnected": COUNT}, ("disconnected",)),
        ),
    }


#: The errors every method may answer, with what they mean.
ERRORS = {
    "400": "The body is no JSON object (or JSON tidings cannot send on: NaN, nesting too deep, "
    "integers beyond 64 bits)",
    "401": "No API key, or a wrong one: nothing was done",
    "408": "The body did not arrive within body_timeout",
    "413": "The body is larger than api_max_body",
    "404": "No such method; or history or presence asked of a channel the settings give none",
    "422": "A field is missing, of the wrong type, unknown, or refused (a channel name, session id or "
    "event name that is none)",
    "503": "The broker (Redis) cannot be reached",
}


#: The version of the API (not of tidings): it changes when a method changes incompatibly.
VERSION = "1"


def document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the API a server with ``settings`` serves."""
    error = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
    errors = {
        status: {
            "description": text,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
        }
        for status, text in ERRORS.items()
    }
    paths = {}
    for name, method in methods(settings).items():
        answer = _object({"result": method.result}, ("result",))
        paths[f"{settings.api_path}/{name}"] = {
            "post": {
                "operationId": name,
                "summary": method.summary,
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": method.request}},
                },
                "responses": {
                    "200": {"description": "Done", "content": {"application/json": {"schema": answer}}},
                    **errors,
                },
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tidings server API",
            "version": VERSION,
            "description": "Send to the sockets of every node, ask who is connected (docs/operations.md).",
        },
        "security": [{"apiKeyHeader": []}, {"authorizationHeader": []}],
        "components": {
            "securitySchemes": {
                "apiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "authorizationHeader": {
                    "type": "apiKey",
                    "in": "header",
                    "name": "Authorization",
                    "description": "'apikey <key>'",
                },
            },
            "schemas": {"Error": error},
        },
        "paths": paths,
    }


_TYPES: dict[str, type | tuple[type, ...]] = {"string": str, "array": list, "object": dict}


def check(value: Any, schema: Schema, where: str = "body") -> str | None:
    """Why ``value`` does not match ``schema`` (the subset the module docstring names), or None."""
    if "anyOf" in schema:
        if all(check(value, option, where) is not None for option in schema["anyOf"]):
            return f"{where}: not of any of the forms it may take"
        return None
    kind = schema.get("type")
    if kind == "integer":
        if type(value) is not int and not (type(value) is float and value.is_integer()):  # JSON: 1.0 is 1
            return f"{where}: must be an integer"
        if value < schema.get("minimum", value):
            return f"{where}: less than {schema['minimum']}"
    elif kind is not None and not isinstance(value, _TYPES[kind]):
        return f"{where}: must be {'an' if kind in ('array', 'object') else 'a'} {kind}"
    if isinstance(value, str):
        if not schema.get("minLength", 0) <= len(value) <= schema.get("maxLength", len(value)):
            return f"{where}: length out of range"
        if value in schema.get("not", {}).get("enum", ()):
            return f"{where}: {value!r} is reserved"
        # ECMA-262's $ (JSON Schema's regexes) ends the string; Python's would take a newline before it.
        if "pattern" in schema and not re.fullmatch(schema["pattern"].strip("^$"), value):
            return f"{where}: does not match {schema['pattern']}"
    if isinstance(value, list):
        if len(value) > schema.get("maxItems", len(value)):
            return f"{where}: more than {schema['maxItems']} items"
        items = schema.get("items")
        if items is not None:
            for index, item in enumerate(value):
                if (reason := check(item, items, f"{where}[{index}]")) is not None:
                    return reason
    if isinstance(value, dict) and "properties" in schema:
        return _check_object(value, schema, where)
    return None


def _check_object(value: dict[str, Any], schema: Schema, where: str) -> str | None:
    properties: dict[str, Schema] = schema["properties"]
    for name in schema.get("required", ()):
        if name not in value:
            return f"{where}: {name!r} is missing"
    for name, item in value.items():
        if name not in properties:
            return f"{where}: unknown field {name!r}"
        if (reason := check(item, properties[name], name)) is not None:
            return reason
    return None
