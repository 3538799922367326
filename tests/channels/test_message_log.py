"""`message_log_format` (env TIDINGS_MESSAGE_LOG_FORMAT): one log line per message a client sends."""

from __future__ import annotations

import time

import pytest

import tidings
from tests.raw_client import RawClient
from tests.serving import TidingsProcess

FORMAT = "[%(TIME)s] %(REMOTE_ADDR)s %(SESSION_ID)s %(CHANNEL)s %(MESSAGE)s %(HTTP_USER_AGENT)s"


async def test_each_client_message_is_logged_in_the_format(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_MESSAGE_LOG_FORMAT", FORMAT)
    server = TidingsProcess("tests/channels/app.py:app").start()
    try:
        client = await RawClient.connect(server.url)
        assert await client.call("subscribe", "room-log") == [{"ok": True}]
        assert await client.call("message", "hello log", "room-log") == ["room"]
        assert await client.call("message", {"n": 2}) == ["room"]  # to no channel: the room it is in
        await client.close()
        expected = [
            f"127.0.0.1 {client.session_id} room-log hello log Python/",
            f"127.0.0.1 {client.session_id} None {{'n': 2}} Python/",
        ]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            log = server.log.read_text().splitlines()
            lines = [line for line in log if "tidings.messages" in line and client.session_id in line]
            if len(lines) >= 2:
                break
            time.sleep(0.05)
        assert len(lines) == 2, lines
        for line, start in zip(lines, expected, strict=True):
            prefix, _, rest = line.partition("] ")
            assert prefix.startswith("INFO:tidings.messages: [20")  # the TIME field, to the second
            assert rest.startswith(start), line
    finally:
        server.stop()


def test_a_broken_format_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match="message_log_format"):
        tidings.Settings(message_log_format="%(MESSAGE)")
