"""The request view handlers get, built from an ASGI scope."""

from __future__ import annotations

from tidings import Request

SCOPE = {
    "type": "websocket",
    "path": "/socket.io/",
    "root_path": "/app",
    "query_string": b"EIO=4&transport=websocket&room=a%20b&room=c&empty=",
    "headers": [
        (b"host", b"example.com:8000"),
        (b"cookie", b"session=abc123; theme=dark"),
        (b"X-Forwarded-For", b"10.0.0.1"),
        (b"accept", b"text/html"),
        (b"accept", b"application/json"),
        (b"content-type", b"text/plain"),
    ],
    "client": ("127.0.0.1", 54321),
    "server": ("127.0.0.1", 8000),
    "scheme": "ws",
}


def test_path_query_and_client() -> None:
    request = Request(SCOPE)
    assert request.path == "/socket.io/"
    assert request.query_string == "EIO=4&transport=websocket&room=a%20b&room=c&empty="
    assert request.query == {"EIO": "4", "transport": "websocket", "room": "c", "empty": ""}
    assert request.client == ("127.0.0.1", 54321)


def test_headers_are_case_insensitive_and_joined() -> None:
    headers = Request(SCOPE).headers
    assert headers["x-forwarded-for"] == headers["X-FORWARDED-FOR"] == "10.0.0.1"
    assert headers["Accept"] == "text/html, application/json"
    assert "Cookie" in headers
    assert headers.get("missing") is None and headers.get("missing", "") == ""
    assert headers.get("X-Forwarded-For") == "10.0.0.1"


def test_cookies() -> None:
    assert Request(SCOPE).cookies == {"session": "abc123", "theme": "dark"}
    assert Request({**SCOPE, "headers": []}).cookies == {}


def test_environ_is_wsgi_shaped() -> None:
    environ = Request(SCOPE).environ
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SCRIPT_NAME"] == "/app"
    assert environ["PATH_INFO"] == "/socket.io/"
    assert environ["QUERY_STRING"] == SCOPE["query_string"].decode()
    assert environ["REMOTE_ADDR"] == "127.0.0.1"
    assert environ["SERVER_PORT"] == "8000"
    assert environ["HTTP_HOST"] == "example.com:8000"
    assert environ["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert environ["wsgi.url_scheme"] == "http"  # PEP 3333 knows no ws


def test_environ_path_is_decoded_once_and_a_native_string() -> None:
    scope = {"type": "http", "path": "/caf\u00e9/100%", "raw_path": b"/caf%C3%A9/100%25", "scheme": "wss"}
    environ = Request(scope).environ
    assert environ["PATH_INFO"] == "/caf\u00e9/100%".encode().decode("latin-1")
    assert environ["wsgi.url_scheme"] == "https"


def test_scope_without_client() -> None:
    request = Request({"type": "http", "path": "/"})
    assert request.client is None
    assert request.environ["REMOTE_ADDR"] == ""
