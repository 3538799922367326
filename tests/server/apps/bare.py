"""Bare apps for `tidings run`: a WSGI callable and an ASGI callable, each wrapped in a Server."""

from __future__ import annotations


def wsgi_app(environ, start_response):
    body = f"wsgi {environ['PATH_INFO']}".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


async def asgi_app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"asgi {scope['path']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": body})


not_an_app = 42
