"""The documented doors hold: the plain WebSocket example of docs/websockets.md, run as written by
`tidings run`, refuses strangers and channels it does not offer, and names the speaker from the
session, whatever the client claims."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from tests.hostile.harness import upgrade
from tests.serving import ROOT, TidingsProcess, tidings_process

DOC = ROOT / "docs" / "websockets.md"
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TidingsProcess]:
    (code,) = [block for block in BLOCK.findall(DOC.read_text()) if '@tidings.websocket("/room")' in block]
    module = Path(tmp_path_factory.mktemp("doors")) / "room_door.py"
    # What the doc leaves to "your login view": one signed-in user.
    module.write_text(code + '\nSESSIONS["token-of-ann"] = "ann"\n')
    with tidings_process(f"{module}:app") as running:
        yield running


@pytest.mark.parametrize(
    ("path", "cookie"),
    [
        ("/room?channel=lobby", None),  # a stranger
        ("/room?channel=lobby", "session=forged"),  # a session nobody signed in with
        ("/room?channel=staff", "session=token-of-ann"),  # a channel the endpoint does not offer
    ],
)
def test_refused_before_the_upgrade(server: TidingsProcess, path: str, cookie: str | None) -> None:
    sock, answer = upgrade(server, path, headers={"Cookie": cookie} if cookie else {})
    sock.close()
    assert answer.startswith(b"HTTP/1.1 403"), answer


async def test_the_speaker_is_the_session_s_user(server: TidingsProcess) -> None:
    url = f"ws://127.0.0.1:{server.port}/room?channel=lobby"
    cookie = {"Cookie": "session=token-of-ann"}
    async with connect(url, additional_headers=cookie) as ann, connect(url, additional_headers=cookie) as tab:
        await ann.send('{"user": "admin"}')
        for ws in (ann, tab):
            assert await ws.recv() == '{"user":"ann","text":"{\\"user\\": \\"admin\\"}"}'
