"""examples/django_project under `tidings run`: Django's user and session in Socket.IO handlers and views."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.integrations.logins import stranger_is_refused, websocket_view_knows_the_user
from tests.python_client import PythonClient
from tests.serving import ROOT, tidings_process

PROJECT = ROOT / "examples" / "django_project"
TIMEOUT = 10
SET_UP = (
    "from django.core.management import call_command; call_command('migrate', verbosity=0); "
    "from django.contrib.auth.models import User; User.objects.create_user('alice', password='wonderland')"
)


async def test_django_user_and_session_reach_socketio_and_websocket_views(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MYSITE_DATABASE", str(tmp_path / "db.sqlite3"))
    # `tidings run mysite.wsgi:application` imports the project as `cd examples/django_project` would.
    monkeypatch.setenv("PYTHONPATH", str(PROJECT), prepend=os.pathsep)
    subprocess.run([sys.executable, "manage.py", "shell", "-c", SET_UP], cwd=PROJECT, check=True)

    with tidings_process("mysite.wsgi:application") as server:
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/")).text == "hello, anonymous; said 0\n"
            form = (await http.get("/login/")).text
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form).group(1)
            login = {"username": "alice", "password": "wonderland", "csrfmiddlewaretoken": token}
            assert (await http.post("/login/", data=login)).status_code == 302
            assert (await http.get("/")).text == "hello, alice; said 0\n"
            cookie = f"sessionid={http.cookies['sessionid']}"
            assert (await http.get("/echo/")).status_code == 400  # a WebSocket view, asked over HTTP

            client = PythonClient("async")
            await client.connect(server.url, transports=["websocket"], headers={"Cookie": cookie})
            assert await client.event("welcome") == ("alice",)
            assert await client.call("chat", "hi") == {"from": "alice", "text": "hi", "said": 1}
            assert await client.call("chat", "again") == {"from": "alice", "text": "again", "said": 2}
            await client.disconnect()
            assert (await http.get("/")).text == "hello, alice; said 2\n"  # the handler saved the session

        await stranger_is_refused(server.url)
        await websocket_view_knows_the_user(server.url.replace("http", "ws", 1) + "/echo/", cookie, "alice")
