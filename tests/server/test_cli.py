"""`tidings run` and other ASGI servers, as real processes on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
import pytest
import socketio
from redis import Redis

from tests.brokers.cluster import REDIS_URL, broker_args, new_prefix
from tests.serving import ROOT, free_port, tidings_process, wait_for_port
from tidings.brokers.envelope import open_envelope


def handshake(url: str) -> httpx.Response:
    return httpx.get(f"{url}/socket.io/", params={"EIO": "4", "transport": "polling"})


@pytest.mark.parametrize(("target", "kind"), [("wsgi_app", "wsgi"), ("asgi_app", "asgi")])
def test_bare_app_is_served_beside_the_endpoint(target: str, kind: str) -> None:
    with tidings_process(f"tests.server.apps.bare:{target}") as server:
        page = httpx.get(f"{server.url}/some/page")
        assert (page.status_code, page.text) == (200, f"{kind} /some/page")
        assert handshake(server.url).text.startswith('0{"sid":')


def test_file_target_and_socketio_client() -> None:
    with tidings_process("examples/echo.py:app") as server:
        client = socketio.Client()
        welcomes = []
        client.on("welcome", welcomes.append)
        client.connect(server.url, transports=["websocket"], wait_timeout=5)
        try:
            assert client.call("chat", "hi", timeout=5) == {"echo": "hi", "count": 1}
            assert welcomes == [f"hello {client.get_sid()}"]
        finally:
            client.disconnect()


def test_host_and_port_from_environment() -> None:
    port = free_port()
    env = {**os.environ, "TIDINGS_HOST": "127.0.0.1", "TIDINGS_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "tidings", "run", "tests.server.apps.bare:wsgi_app"], cwd=ROOT, env=env
    )
    try:
        wait_for_port(port, process=process)
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "wsgi /"
    finally:
        process.terminate()
        process.wait(10)


def test_workers_each_serve_websocket_clients() -> None:
    with tidings_process("examples/echo.py:app", "--workers", "2") as server:
        for _ in range(4):  # connections land on either worker; each must work on its own
            client = socketio.Client()
            client.connect(server.url, transports=["websocket"], wait_timeout=10)
            try:
                assert client.call("chat", "hi", timeout=5)["echo"] == "hi"
            finally:
                client.disconnect()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("tests.server.apps.bare:not_an_app", "neither a tidings.Server, an ASGI app nor a WSGI app"),
        ("tests.server.apps.bare:missing", "has no attribute 'missing'"),
        ("no/such/file.py:app", "no such file: no/such/file.py"),
    ],
)
def test_bad_target_is_a_clear_error(target: str, message: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tidings", "run", target], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_served_by_hypercorn() -> None:
    """The plain ASGI path (no uvicorn fast path) under another server."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "hypercorn", "--bind", f"127.0.0.1:{port}", "tests.interop.app:app"],
        cwd=ROOT,
    )
    try:
        wait_for_port(port, process=process)
        for transports in (["websocket"], ["polling"], ["polling", "websocket"]):
            client = socketio.Client()
            client.connect(f"http://127.0.0.1:{port}", transports=transports, wait_timeout=10)
            try:
                assert client.call("echo", ("hi", b"\x00\x01"), timeout=5) == ("hi", b"\x00\x01")
            finally:
                client.disconnect()
    finally:
        process.terminate()
        process.wait(10)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("NaN", "NaN is no JSON value"),
        ('{"price": Infinity}', "Infinity is no JSON value"),
        (str(2**70), "integer beyond 64 bits"),
        ("[" * 1000 + "]" * 1000, "JSON nested deeper than 128 levels"),
    ],
)
def test_publish_refuses_what_the_wire_cannot_carry(message: str, reason: str) -> None:
    # One line and a non-zero status, not a traceback, and nothing published: not NaN as null,
    # not 2**70 as a float.
    prefix = new_prefix()
    redis = Redis.from_url(REDIS_URL)
    watcher = redis.pubsub()
    watcher.psubscribe(f"{prefix}*")
    assert watcher.get_message(timeout=5)["type"] == "psubscribe"

    def publish(text: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "tidings", "publish", *broker_args(prefix), "room", text]
        return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)

    try:
        refused = publish(message)
        assert (refused.returncode, refused.stdout) == (2, "")
        assert refused.stderr == f"tidings: MESSAGE cannot be sent: {reason}\n"
        publish("1")  # the control: this one is published
        published = watcher.get_message(timeout=5)
        assert published is not None and open_envelope(published["data"])[1].message == 1
        assert watcher.get_message(timeout=0.1) is None
    finally:
        watcher.close()
        redis.close()
