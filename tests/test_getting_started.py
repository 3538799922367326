"""docs/getting-started.md works as written: its shell and Python blocks, in order, in a fresh venv.

The page installs tidings from a checkout in ./tidings: here that is this checkout, as it is on disk.
A comment before a block tells the test what the reader does with it: `<!-- test: save as FILE -->`
(a Python module the next steps use), `<!-- test: server -->` (a command that serves until stopped:
run in the background, checked with a Socket.IO client as the page says, then stopped). Any other
Python block is run as a script.
"""

from __future__ import annotations

import re
import subprocess
import urllib.request
from pathlib import Path

import pytest
import socketio

from tests.peers import package_index
from tests.serving import ROOT, background, free_port, outside_environment

PAGE = ROOT / "docs" / "getting-started.md"
BLOCK = re.compile(
    r"^(?:<!-- test: (?P<mark>[^>]*) -->\n)?```(?P<language>sh|python)\n(?P<code>.*?)^```",
    re.MULTILINE | re.DOTALL,
)

pytestmark = pytest.mark.timeout(240)


def run(command: list[str], cwd: Path, env: dict[str, str], name: str) -> None:
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=180)
    if result.returncode != 0:
        package_index()  # pip install fails without its index: then this is a skip, not a failure
    assert result.returncode == 0, f"{name} failed:\n{result.stdout}\n{result.stderr}"


def check_the_chat_room(url: str) -> None:
    """Step 3's check, "http://127.0.0.1:8000/room/42, in two tabs": the page, its client, and two
    people in room-42 over Socket.IO, as the page's script does it."""
    with urllib.request.urlopen(f"{url}/room/42", timeout=10) as page:
        html = page.read().decode()
    assert '<script src="/tidings/tidings.js"></script>' in html and 'const room = "room-42";' in html
    with urllib.request.urlopen(f"{url}/tidings/tidings.js", timeout=10) as script:
        assert b"subscribe" in script.read()

    ana, bob = socketio.SimpleClient(), socketio.SimpleClient()
    try:
        ana.connect(f"{url}?name=ana", wait_timeout=10)
        bob.connect(f"{url}?name=bob", wait_timeout=10)
        assert ana.call("subscribe", "room-42", timeout=10) == {"ok": True}
        assert bob.call("subscribe", "room-42", timeout=10) == {"ok": True}
        assert ana.receive(timeout=10) == ["message", {"name": "bob", "text": "joined"}, "room-42"]
        bob.emit("message", ("hello", "room-42"))  # a tuple: two arguments
        for person in (ana, bob):
            assert person.receive(timeout=10) == ["message", {"name": "bob", "text": "hello"}, "room-42"]
    finally:
        ana.disconnect()
        bob.disconnect()


def test_the_getting_started_page_runs_as_written(tmp_path: Path) -> None:
    (tmp_path / "tidings").symlink_to(ROOT)  # the checkout the page installs from
    port = free_port()
    env = outside_environment(tmp_path / ".venv" / "bin") | {"TIDINGS_PORT": str(port)}
    marks = []
    for number, block in enumerate(BLOCK.finditer(PAGE.read_text()), 1):
        mark, language, code = block["mark"], block["language"], block["code"]
        name = f"getting-started.md, {language} block {number}"
        marks.append(mark)
        if language == "python":
            module = tmp_path / (mark.removeprefix("save as ") if mark else f"block_{number}.py")
            module.write_text(code)
            run(["python", module.name], tmp_path, env, name)
        elif mark == "server":
            with background(["bash", "-c", code], port, tmp_path, env, tmp_path / "server.log"):
                check_the_chat_room(f"http://127.0.0.1:{port}")
        else:
            run(["bash", "-e", "-o", "pipefail", "-c", code], tmp_path, env, name)
    assert marks.count("server") == 1 and "save as main_app.py" in marks
