"""Issue 12, item 8: which pages may talk to a real `tidings run`, and with the user's cookies.

Each case is a polling handshake and a WebSocket upgrade with an ``Origin``, sent to one of the servers
of tests/hostile/app.py: ``app`` (the default: its own origin only), ``anywhere`` (``"*"``),
``anywhere_with_credentials`` (``"*"`` and ``cors_credentials=True``) and ``listed`` (a list). The
attacker sends from 127.0.0.2; 127.0.0.1 stands for an nginx on the same machine, whose
``X-Forwarded-Proto`` uvicorn believes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests.hostile.harness import ATTACKER, upgrade
from tests.serving import TidingsProcess, tidings_process

SERVERS = ("app", "anywhere", "anywhere_with_credentials", "listed")
POLLING = "/socket.io/?EIO=4&transport=polling"
WEBSOCKET = "/socket.io/?EIO=4&transport=websocket"
PROXY = "127.0.0.1"
OWN = "http://127.0.0.1:{port}"  # the server's own origin, as its pages have it


@dataclass
class Case:
    server: str
    origin: str | None
    #: The CORS headers an allowed polling request gets; None: refused (403).
    cors: dict[str, str] | None
    source: str = ATTACKER
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        extra = "".join(f" {name}: {value}" for name, value in self.headers.items())
        return f"{self.server} <- {self.origin} from {self.source}{extra}"


def reflected(origin: str) -> dict[str, str]:
    return {
        "access-control-allow-origin": origin,
        "vary": "Origin",
        "access-control-allow-credentials": "true",
    }


CASES = [
    # The default: the server's own scheme, host and port.
    Case("app", None, {}),  # no browser's cross-origin request
    Case("app", OWN, reflected(OWN)),
    Case(
        "app",
        "http://LOCALHOST:{port}",
        reflected("http://LOCALHOST:{port}"),
        headers={"Host": "localhost:{port}"},
    ),
    Case("app", "http://127.0.0.1:80", reflected("http://127.0.0.1:80"), headers={"Host": "127.0.0.1"}),
    Case("app", "null", None),
    Case("app", "https://127.0.0.1:{port}", None),  # another scheme
    Case("app", "https://127.0.0.1:{port}", None, headers={"X-Forwarded-Proto": "https"}),  # not trusted
    # Behind a trusted proxy that says the request came over TLS.
    Case(
        "app",
        "https://127.0.0.1:{port}",
        reflected("https://127.0.0.1:{port}"),
        PROXY,
        {"X-Forwarded-Proto": "https"},
    ),
    # An http: page of an https: site.
    Case("app", "http://127.0.0.1:{port}", None, PROXY, {"X-Forwarded-Proto": "https"}),
    Case("app", "javascript://127.0.0.1:{port}", None),
    Case("app", "http://127.0.0.1:1", None),  # another port
    Case("app", "http://127.0.0.1", None),  # the default port is not this one
    Case("app", "http://127.0.0.1:{port}.evil.example", None),
    # "*": any origin but null, without credentials.
    Case("anywhere", "https://evil.example", {"access-control-allow-origin": "*"}),
    Case("anywhere", "javascript://evil.example:80", {"access-control-allow-origin": "*"}),
    Case("anywhere", "null", None),
    # "*" with credentials asked for: reflected, with credentials (and a warning in the log).
    Case("anywhere_with_credentials", "https://evil.example", reflected("https://evil.example")),
    Case("anywhere_with_credentials", "null", None),
    # A list, compared by scheme, host and port.
    Case("listed", "https://chat.example.org", reflected("https://chat.example.org")),
    Case("listed", "https://chat.example.org:443", reflected("https://chat.example.org:443")),
    Case("listed", "http://localhost:3000", reflected("http://localhost:3000")),
    Case("listed", "http://chat.example.org", None),
    Case("listed", "https://chat.example.org:8443", None),
    Case("listed", "http://localhost:3001", None),
    Case("listed", "javascript://chat.example.org:443", None),
    Case("listed", "null", None),
    Case("listed", OWN, None),  # a list is exactly those origins
]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, TidingsProcess]]:
    with contextlib.ExitStack() as stack:
        yield {name: stack.enter_context(tidings_process(f"tests/hostile/app.py:{name}")) for name in SERVERS}


def filled(text: str, server: TidingsProcess) -> str:
    return text.format(port=server.port)


def request_headers(case: Case, server: TidingsProcess) -> dict[str, str]:
    headers = {name: filled(value, server) for name, value in case.headers.items()}
    if case.origin is not None:
        headers["Origin"] = filled(case.origin, server)
    return headers


@pytest.mark.parametrize("case", CASES, ids=str)
async def test_polling(servers: dict[str, TidingsProcess], case: Case) -> None:
    server = servers[case.server]
    transport = httpx.AsyncHTTPTransport(local_address=case.source)
    async with httpx.AsyncClient(transport=transport) as http:
        response = await http.get(server.url + POLLING, headers=request_headers(case, server))
        cors = {
            name: value
            for name, value in response.headers.items()
            if name.startswith("access-control-") or name == "vary"
        }
        if case.cors is None:
            assert response.status_code == 403, response.text
            assert (response.json(), cors) == ({"code": 4, "message": "Forbidden"}, {})
            return
        assert response.status_code == 200, response.text
        assert cors == {name: filled(value, server) for name, value in case.cors.items()}


@pytest.mark.parametrize("case", CASES, ids=str)
def test_websocket_upgrade(servers: dict[str, TidingsProcess], case: Case) -> None:
    server = servers[case.server]
    sock, head = upgrade(server, WEBSOCKET, case.source, request_headers(case, server))
    sock.close()
    status = b"HTTP/1.1 101" if case.cors is not None else b"HTTP/1.1 403"
    assert head.startswith(status), head


def test_star_with_credentials_is_logged_as_what_it_means(servers: dict[str, TidingsProcess]) -> None:
    log = servers["anywhere_with_credentials"].log.read_text()
    assert "any web site can make requests to this server that carry its visitors' cookies" in log
