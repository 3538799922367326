"""Drive the official Node socket.io-client (tests/node/client.mjs) from a test."""

from __future__ import annotations

import base64
import itertools
import json
import queue
import subprocess
import threading
import time
from typing import Any

from tests.peers import node_client_script


def to_wire(value: Any) -> Any:
    if isinstance(value, bytes):
        return {"$bin": base64.b64encode(value).decode()}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if isinstance(value, dict):
        return {k: to_wire(v) for k, v in value.items()}
    return value


def from_wire(value: Any) -> Any:
    if isinstance(value, list):
        return [from_wire(v) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$bin"}:
            return base64.b64decode(value["$bin"])
        return {k: from_wire(v) for k, v in value.items()}
    return value


class NodeClient:
    """One socket.io-client in a Node process; reports arrive as dicts."""

    def __init__(self, script: str | None = None) -> None:
        """Start the driver ``script`` (by default tests/node/client.mjs, the official client)."""
        self.process = subprocess.Popen(
            ["node", script or str(node_client_script())],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.reports: queue.Queue[dict[str, Any]] = queue.Queue()
        self.backlog: list[dict[str, Any]] = []
        self._ack_ids = itertools.count(1)
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.reports.put(from_wire(json.loads(line)))

    def command(self, op: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"op": op, **to_wire(fields)}) + "\n")
        self.process.stdin.flush()

    def connect(self, url: str, **opts: Any) -> None:
        self.command("connect", url=url, opts=opts)

    def emit(self, event: str, *args: Any) -> None:
        self.command("emit", event=event, args=list(args), ack=None)

    def call(self, event: str, *args: Any, timeout: float = 10) -> list[Any]:
        """Emit with an ack callback; returns the ack's arguments."""
        ack = next(self._ack_ids)
        self.command("emit", event=event, args=list(args), ack=ack)
        return self.expect("ack", timeout, id=ack)["args"]

    def answer(self, event: str, *reply: Any) -> None:
        """Ack server events named ``event`` with ``reply``."""
        self.command("answer", event=event, reply=list(reply))

    def expect(self, kind: str, timeout: float = 10, **match: Any) -> dict[str, Any]:
        """The first report of ``kind`` matching ``match``, in arrival order; fails on timeout.

        Reports that do not match stay for later ``expect`` calls.
        """

        def matches(report: dict[str, Any]) -> bool:
            return report["type"] == kind and all(report.get(k) == v for k, v in match.items())

        for report in self.backlog:
            if matches(report):
                self.backlog.remove(report)
                return report
        deadline = time.monotonic() + timeout
        try:
            while True:
                report = self.reports.get(timeout=max(0.0, deadline - time.monotonic()))
                if matches(report):
                    return report
                self.backlog.append(report)
        except queue.Empty:
            stderr = ""
            if self.process.poll() is not None and self.process.stderr is not None:
                stderr = self.process.stderr.read()
            raise AssertionError(
                f"no {kind!r} report {match} within {timeout}s; saw {self.backlog} {stderr}"
            ) from None

    def event(self, name: str, timeout: float = 10) -> list[Any]:
        return self.expect("event", timeout, event=name)["args"]

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.command("exit")
                self.process.wait(5)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()
