"""Run tidings servers for tests: a real `tidings run` process, or uvicorn in a thread."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from tidings import Server, Settings
from tidings.server.cli import uvicorn_options

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A port free on every address, as a server that listens on all of them (redis-server) needs."""
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 15.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on port {port} after {timeout}s")


class TidingsProcess:
    """`tidings run TARGET --port PORT` as a child process; restartable on the same port.

    With no target (None) it is `tidings demo --port PORT`.
    """

    def __init__(self, target: str | None, port: int | None = None, *extra: str) -> None:
        self.target = target
        self.port = port or free_port()
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None
        self.log = ROOT / "artifacts" / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> TidingsProcess:
        self.log.parent.mkdir(exist_ok=True)
        words = ["run", self.target] if self.target else ["demo"]
        command = [sys.executable, "-m", "tidings", *words, "--port", str(self.port)]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, *self.extra], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=os.environ
            )
        wait_for_port(self.port, process=self.process)
        return self

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class ThreadedServer:
    """An ASGI app on uvicorn in a background thread of the test process.

    ``ws="fast"`` (the default): served as `tidings run` serves it, with its default WebSocket
    protocol (tidings' own) and its HTTP protocol, both with the app's Settings. Any other ``ws`` is
    the plain ASGI path: uvicorn as it comes, with that WebSocket protocol of its own ("auto", its
    default, is websockets-sansio; "websockets" the legacy one `tidings run --ws websockets` uses).
    """

    def __init__(self, app: object, ws: str = "fast") -> None:
        self.port = free_port()
        if ws == "fast":
            options = uvicorn_options(app.settings if isinstance(app, Server) else Settings(), ws)
        else:
            options = {"ws": ws, "ws_per_message_deflate": False}
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", **options)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        wait_for_port(self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@contextlib.contextmanager
def tidings_process(target: str | None, *extra: str) -> Iterator[TidingsProcess]:
    """A started :class:`TidingsProcess` (None: `tidings demo`), stopped afterwards."""
    server = TidingsProcess(target, None, *extra).start()
    try:
        yield server
    finally:
        server.stop()


def outside_environment(*path_first: Path) -> dict[str, str]:
    """The environment of a command run as a user would, outside the tests' venv: no PYTHONPATH
    (which puts the checkout's src first) and no VIRTUAL_ENV; ``path_first`` leads PATH."""
    environment = {
        name: value for name, value in os.environ.items() if name not in {"PYTHONPATH", "VIRTUAL_ENV"}
    }
    environment["PATH"] = os.pathsep.join([*map(str, path_first), environment.get("PATH", "")])
    return environment


@contextlib.contextmanager
def background(
    command: list[str], port: int, cwd: Path, env: dict[str, str], log: Path, timeout: float = 15.0
) -> Iterator[subprocess.Popen[bytes]]:
    """``command`` (a shell or script that may start the server as a child) in a process group of its
    own, once something listens on ``port``; the group is stopped afterwards. Output goes to ``log``."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_port(port, timeout, process)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
