"""A read-only view of the HTTP request that opened a connection."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl


class Headers(Mapping[str, str]):
    """Request headers, looked up case-insensitively; repeated headers are joined with ``, ``."""

    def __init__(self, raw: list[tuple[bytes, bytes]]) -> None:
        headers: dict[str, str] = {}
        for name, value in raw:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        self._headers = headers

    def __getitem__(self, key: str) -> str:
        return self._headers[key.lower()]

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._headers

    def get(self, key: str, default: Any = None) -> Any:
        # Mapping's get goes through __getitem__ and a KeyError for every header not sent: the
        # Engine.IO endpoint asks for Origin on every request, and most have none.
        return self._headers.get(key.lower(), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._headers)

    def __len__(self) -> int:
        return len(self._headers)

    def __repr__(self) -> str:
        return f"Headers({self._headers!r})"


_WSGI_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


def route_path(scope: Mapping[str, Any]) -> str:
    """The request's path below the app's mount point.

    ASGI puts the mount prefix in ``root_path`` and keeps it in ``path`` too (a framework mounting
    tidings at ``/rt`` calls it with path ``/rt/socket.io/``): take it off to match tidings' own paths.
    """
    path: str = scope["path"]
    root_path: str = scope.get("root_path", "").rstrip("/")
    if root_path and (path == root_path or path.startswith(root_path + "/")):
        return path[len(root_path) :] or "/"
    return path  # not mounted, or a server that already took the prefix off


class Request:
    """The HTTP request (polling handshake or WebSocket upgrade) behind a connection.

    Handlers get it as their first argument, as the seeds' handlers got the framework's request.
    """

    def __init__(self, scope: Mapping[str, Any]) -> None:
        self.scope = scope

    @property
    def path(self) -> str:
        path: str = self.scope["path"]
        return path

    @property
    def query_string(self) -> str:
        raw: bytes = self.scope.get("query_string", b"")
        return raw.decode("latin-1")

    @cached_property
    def query(self) -> dict[str, str]:
        """Query parameters; for a repeated name, the last value."""
        return dict(parse_qsl(self.query_string, keep_blank_values=True))

    @cached_property
    def headers(self) -> Headers:
        return Headers(self.scope.get("headers", []))

    @cached_property
    def cookies(self) -> dict[str, str]:
        cookie = SimpleCookie()
        cookie.load(self.headers.get("cookie", ""))
        return {name: morsel.value for name, morsel in cookie.items()}

    @property
    def client(self) -> tuple[str, int] | None:
        """The peer's ``(host, port)`` as the server saw it (the proxy's, behind one)."""
        client = self.scope.get("client")
        return (client[0], client[1]) if client else None

    @cached_property
    def environ(self) -> dict[str, Any]:
        """A WSGI-style environ (PEP 3333 keys, ``HTTP_*`` headers), for code written for WSGI."""
        scope = self.scope
        server = scope.get("server") or ("localhost", 80)
        client = self.client
        environ: dict[str, Any] = {
            "REQUEST_METHOD": scope.get("method", "GET"),
            "SCRIPT_NAME": scope.get("root_path", ""),
            # PEP 3333: SCRIPT_NAME + PATH_INFO is the path; ASGI's is decoded already, WSGI's is
            # the same text as a "native string" of latin-1 code points.
            "PATH_INFO": route_path(scope).encode("utf-8").decode("latin-1"),
            "QUERY_STRING": self.query_string,
            "SERVER_NAME": server[0],
            "SERVER_PORT": str(server[1]),
            "SERVER_PROTOCOL": f"HTTP/{scope.get('http_version', '1.1')}",
            "REMOTE_ADDR": client[0] if client else "",
            "REMOTE_PORT": str(client[1]) if client else "",
            # ASGI says ws/wss for WebSocket requests; WSGI knows http and https.
            "wsgi.url_scheme": _WSGI_SCHEMES.get(scope.get("scheme", "http"), "http"),
        }
        for name, value in self.headers.items():
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
                environ[key] = value
            else:
                environ["HTTP_" + key] = value
        return environ

    def __repr__(self) -> str:
        return f"<Request {self.path}?{self.query_string}>"
