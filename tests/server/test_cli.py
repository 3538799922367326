"""`tidings run` and other ASGI servers, as real processes on 127.0.0.1."""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import IO

import httpx
import pytest
import socketio
from redis import Redis

from tests.brokers.cluster import REDIS_URL, broker_args, new_prefix
from tests.serving import ROOT, free_port, tidings_process, wait_for_port
from tidings.brokers.envelope import open_envelope
from tidings.server.cli import parser

BARE_WSGI = "tests.server.apps.bare:wsgi_app"


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


def tidings(*words: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """``tidings WORDS...`` run to its end, in its own process."""
    command = [sys.executable, "-m", "tidings", *words]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=60)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a refused command printed (status 1, nothing else on stdout or stderr)."""
    assert (result.returncode, result.stdout) == (1, ""), result.stderr
    assert len(result.stderr.splitlines()) == 1, result.stderr
    return result.stderr


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("nosuchmodule:app", f"no module named 'nosuchmodule' in {ROOT} (the current folder)"),
        (
            "tests.server.apps.nosuch:app",
            "no module named 'tests.server.apps.nosuch' in the package",
        ),
        ("tests.server.apps.bare:missing", "has no attribute 'missing'"),
        ("tests.server.apps.bare", "has no attribute 'app' (the name taken when the target has no colon)"),
        ("no/such/file.py:app", "no such file: no/such/file.py"),
    ],
)
def test_a_target_not_found_is_one_line_saying_what_was_tried(target: str, message: str) -> None:
    line = one_line_error(tidings("run", target))
    assert line.startswith("tidings: ")
    assert message in line


@pytest.mark.parametrize(
    ("source", "error"),
    [
        ("import a_missing_dependency\n", "ModuleNotFoundError: No module named 'a_missing_dependency'"),
        ("raise RuntimeError('a bug of the app')\n", "RuntimeError: a bug of the app"),
    ],
)
def test_an_error_in_the_apps_own_module_keeps_its_traceback(tmp_path: Path, source: str, error: str) -> None:
    (tmp_path / "main_app.py").write_text(source)
    result = tidings("run", "main_app", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    assert 'main_app.py", line 1, in <module>' in result.stderr
    assert result.stderr.splitlines()[-1].startswith(error)


def test_a_webpy_application_is_served_through_its_wsgifunc() -> None:
    with tidings_process("examples/webpy_app.py:app") as server:  # app = web.application(...)
        page = httpx.get(f"{server.url}/")
        assert (page.status_code, page.headers["content-type"]) == (200, "text/html; charset=utf-8")
        assert httpx.get(f"{server.url}/ws").text == "Invalid WebSocket request"  # web.py's own 400
        assert handshake(server.url).text.startswith('0{"sid":')


@pytest.mark.parametrize(
    ("target", "what"),
    [
        ("tests.server.apps.bare:not_an_app", "is not an app but int 42"),
        ("json:dumps", "is called as dumps(obj, *, skipkeys=False"),  # a callable, but no WSGI app
        ("asyncio:sleep", "is async but is called as sleep(delay, result=None)"),  # nor an ASGI app
    ],
)
def test_what_is_no_app_is_refused_at_start_saying_what_is(target: str, what: str) -> None:
    line = one_line_error(tidings("run", target))
    assert line.startswith(f"tidings: {target} {what}")
    for kind in ("tidings.Server", "WSGI app", "ASGI app", "get_wsgi_application()", "wsgifunc()"):
        assert kind in line


# `sys.modules["web"] = None` makes `import web` fail as it does where web.py is not installed.
WITHOUT_WEBPY = (
    "import runpy, sys; sys.modules['web'] = None; runpy.run_module('tidings', run_name='__main__')"
)


@pytest.mark.parametrize("words", [["demo"], ["run", "tidings.demo.app:server"]])
def test_the_demo_without_webpy_says_how_to_install_it(words: list[str]) -> None:
    command = [sys.executable, "-c", WITHOUT_WEBPY, *words, "--port", str(free_port())]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
    line = one_line_error(result)
    assert line == (
        "tidings: the demo needs web.py: pip install 'tidings[demo]' "
        "(from a checkout: pip install -e '.[demo]')\n"
    )


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


def lines_until(stream: IO[str], text: str, count: int) -> list[str]:
    """The lines read from ``stream`` until ``count`` of them hold ``text``."""
    lines: list[str] = []
    while sum(text in line for line in lines) < count:
        line = stream.readline()
        assert line, f"the process ended before {count} lines with {text!r}:\n{''.join(lines)}"
        lines.append(line)
    return lines


@pytest.mark.parametrize(
    ("signum", "workers", "last_line"),
    [
        (signal.SIGINT, 1, "Finished server process"),  # Ctrl+C
        (signal.SIGTERM, 1, "Finished server process"),
        (signal.SIGINT, 2, "Stopping parent process"),
    ],
)
def test_a_signal_shuts_down_with_no_traceback_and_ends_the_process_by_it(
    signum: int, workers: int, last_line: str
) -> None:
    port = free_port()
    command = [sys.executable, "-m", "tidings", "run", BARE_WSGI, "--port", str(port)]
    # Its own process group, as a shell starts a command: Ctrl+C signals every process in the group.
    process = subprocess.Popen(
        [*command, "--workers", str(workers)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stderr is not None
        started = lines_until(process.stderr, "Application startup complete", workers)
        assert httpx.get(f"http://127.0.0.1:{port}/").text == "wsgi /"
        os.killpg(process.pid, signum)
        stderr = "".join(started) + process.communicate(timeout=30)[1]
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    # Killed by the signal, as Python ends on an uncaught KeyboardInterrupt: a shell sees 128 + signum
    # (130 for Ctrl+C), and a shell script running tidings stops too.
    assert process.returncode == -signum, stderr
    assert "Traceback" not in stderr
    assert last_line in stderr.splitlines()[-1]


@pytest.mark.parametrize(
    "words",
    [
        ["demo"],
        ["run", "tests.server.apps.bare:wsgi_app"],
        ["run", "tests.server.apps.bare:wsgi_app", "--workers", "2"],
    ],
)
def test_a_port_in_use_is_one_line_and_nothing_is_announced(words: list[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:  # an older server still on the port
        port = taken.getsockname()[1]
        result = tidings(*words, "--port", str(port))
    assert (result.returncode, result.stdout) == (1, "")  # not "open http://... in two browser tabs"
    assert "Application startup complete" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"tidings: port {port} is in use on 127.0.0.1, maybe by a server still running: stop it, "
        "or choose another port with --port or TIDINGS_PORT"
    )


def test_help_is_plain_text_and_version_is_the_installed_one() -> None:
    help_text = tidings("--help")
    assert help_text.returncode == 0
    assert "``" not in help_text.stdout
    assert "'tidings COMMAND --help'" in help_text.stdout
    version = tidings("--version")
    assert (version.returncode, version.stdout) == (0, f"tidings {importlib.metadata.version('tidings')}\n")


ENVIRONMENT = {
    "--host": "TIDINGS_HOST",
    "--port": "TIDINGS_PORT",
    "--ws": "TIDINGS_WS",
    "--forwarded-allow-ips": "FORWARDED_ALLOW_IPS",
    "--broker": "TIDINGS_BROKER",
    "--broker-prefix": "TIDINGS_BROKER_PREFIX",
}


@pytest.mark.parametrize("command", ["run", "demo", "publish"])
def test_every_option_says_its_default_and_its_environment_variable(command: str) -> None:
    (commands,) = (action for action in parser()._actions if isinstance(action, argparse._SubParsersAction))
    for action in commands.choices[command]._actions:
        if not action.option_strings or action.dest == "help":
            continue
        option = action.option_strings[0]
        assert action.help is not None and "default" in action.help, option
        if option in ENVIRONMENT:
            assert f"(env {ENVIRONMENT[option]}; default " in action.help, option
    # and as printed, for one of them:
    printed = tidings(command, "--help").stdout
    assert " ".join(printed.split()).count("(env TIDINGS_BROKER; default ") == 1
