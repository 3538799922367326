"""`tidings run --log-format json`: every line on stderr is one JSON object, a handler's error says
which session and namespace it came from, and the access log names each request's transport."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.request
from typing import Any

import pytest

from tests.node_client import NodeClient
from tests.serving import ROOT, free_port, wait_for_port

APP = "tests/server/apps/logs.py:app"


def served_and_logged(*extra: str, env: dict[str, str] | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Run the app, make one long-polling handshake and one WebSocket client that calls ``boom``,
    stop the server; the client's session id and every stderr line, as JSON."""
    port = free_port()
    command = [sys.executable, "-m", "tidings", "run", APP, "--port", str(port), "--access-log", *extra]
    process = subprocess.Popen(
        command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        wait_for_port(port, process=process)
        url = f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(f"{url}/socket.io/?EIO=4&transport=polling", timeout=10) as answer:
            assert answer.status == 200
        client = NodeClient()
        try:
            client.connect(url, transports=["websocket"])
            session_id = client.expect("connect")["id"]
            assert client.call("boom") == []  # answered once the handler raised
        finally:
            client.close()
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=30)
    assert stdout == b""
    return session_id, [json.loads(line) for line in stderr.decode().splitlines()]


@pytest.mark.parametrize(
    ("extra", "env"),
    [(("--log-format", "json"), None), (("--workers", "2"), {"TIDINGS_LOG_FORMAT": "json"})],
    ids=["flag", "environment-and-workers"],
)
def test_every_line_is_json_and_says_where(extra: tuple[str, ...], env: dict[str, str] | None) -> None:
    session_id, lines = served_and_logged(*extra, env=env)
    for line in lines:
        assert {"time", "level", "logger", "message"} <= line.keys(), line
    [error] = [line for line in lines if line["message"] == "handler boom raised"]
    assert error["level"] == "ERROR"
    assert error["logger"] == "tidings.socketio"
    assert (error["session_id"], error["namespace"]) == (session_id, "/")
    assert error["exception"].endswith("RuntimeError: boom")
    transports = {line["transport"] for line in lines if "transport" in line}
    assert transports == {"polling", "websocket"}
    assert any(
        line["logger"] == "uvicorn.error" and "Started server process" in line["message"] for line in lines
    )
