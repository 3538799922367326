"""Reconnect storm: many connected and subscribed clients, the server killed and started again.

    .venv/bin/python bench/reconnect_storm.py [--clients 10000] [--setups tidings+tidings.js,...]
                                              [--quick] [--json PATH] [--profile DIR]

For each setup, a server (`tidings run bench/apps/tidings_app.py:app`, or Node socket.io 4.8,
bench/node/sio_server.mjs) and `--clients` clients of a real client library (bench/node/storm_client.mjs,
Node processes of 2,500 clients), each subscribed to one of 100 channels. When every client is
subscribed, the server is killed (SIGKILL: a crash, or a restart that says no goodbye) and started again
at once on the same port. Every client reconnects with its library's own backoff and subscribes again;
each reports when the server acknowledged its new subscription. The result: the time from the kill
until every client is subscribed again (and its p50 / p99 over the clients), the same from the moment
the new server listened, the failed attempts, and the give-ups, which must be 0 (the script exits 1
otherwise, or when a client is not back within `--timeout`).

Setups: tidings+tidings.js (tidings.js' backoff), tidings+socket.io-client and
node-socket.io+socket.io-client (the official client's backoff). The open-files limit of this process,
which the servers and the clients inherit, is raised to its hard limit. Nothing is pinned to a core.
`--quick`: 500 clients. `--profile DIR`: py-spy records the restarted tidings server through each
storm, into DIR/SETUP.raw.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.suite import BenchError, free_port, stop, wait_for_port  # noqa: E402 - after the path is set

CLIENT = ROOT / "bench" / "node" / "storm_client.mjs"
SERVERS = {
    "tidings": lambda port: [
        sys.executable,
        *("-m", "tidings", "run", "bench/apps/tidings_app.py:app", f"--port={port}", "--log-level=warning"),
    ],
    "node-socket.io": lambda port: ["node", str(ROOT / "bench" / "node" / "sio_server.mjs"), str(port)],
}
SETUPS = ("tidings+tidings.js", "tidings+socket.io-client", "node-socket.io+socket.io-client")
CHANNELS = 100
PER_PROCESS = 2500


@dataclass
class Setup:
    server: str
    library: str

    @classmethod
    def parse(cls, name: str) -> Setup:
        server, _, library = name.partition("+")
        if server not in SERVERS or library not in ("tidings.js", "socket.io-client"):
            raise SystemExit(f"reconnect_storm: unknown setup {name!r}; known: {', '.join(SETUPS)}")
        return cls(server, library)


def raise_file_limit() -> int:
    """The soft open-files limit up to the hard one; the servers and the clients inherit it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


class Lines:
    """The client coordinator's JSON lines, read in a thread; `wait` for an event, with a deadline."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process
        self.latest: dict[str, dict[str, Any]] = {}
        self.changed = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.startswith("{"):
                message = json.loads(line)
                with self.changed:
                    self.latest[message["event"]] = message
                    self.changed.notify_all()

    def wait(self, event: str, timeout: float) -> dict[str, Any] | None:
        deadline = time.monotonic() + timeout
        with self.changed:
            while event not in self.latest and self.process.poll() is None:
                if (
                    not self.changed.wait(max(0.0, deadline - time.monotonic()))
                    and time.monotonic() >= deadline
                ):
                    return None
            return self.latest.get(event)


def start_server(server: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(SERVERS[server](port), cwd=ROOT, stdin=subprocess.DEVNULL)
    wait_for_port(port, process, timeout=60)
    return process


def profiler(pid: int, output: Path | None) -> subprocess.Popen[bytes] | None:
    """py-spy (the bench extra) recording the restarted server through the storm, if asked for."""
    if output is None:
        return None
    command = [
        shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy",
        "record",
        "-p",
        str(pid),
        "-r",
        "200",
        "-f",
        "raw",
        "-o",
        str(output),
        "--nonblocking",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def storm(setup: Setup, clients: int, timeout: float, profile: Path | None = None) -> dict[str, Any]:
    port = free_port()
    server = start_server(setup.server, port)
    options = {"url": f"http://127.0.0.1:{port}", "library": setup.library, "clients": clients}
    options.update(channels=CHANNELS, perProcess=PER_PROCESS)
    node = subprocess.Popen(
        ["node", str(CLIENT), json.dumps(options)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        lines = Lines(node)
        began = time.monotonic()
        ready = lines.wait("ready", timeout)
        if ready is None or ready["subscribed"] != clients:
            raise BenchError(f"the clients did not all subscribe: {ready or lines.latest.get('progress')}")
        subscribed_in = time.monotonic() - began
        time.sleep(1.0)  # settled: pings, acks
        killed = time.monotonic()
        server.send_signal(signal.SIGKILL)
        server.wait()
        server = start_server(setup.server, port)
        listening = time.monotonic()
        spy = profiler(server.pid, profile)
        recovered = lines.wait("recovered", timeout)
        if spy is not None:
            spy.send_signal(signal.SIGINT)  # py-spy writes what it recorded
            spy.wait(30)
        progress = lines.latest.get("progress") or {}
        if recovered is None:
            raise BenchError(f"not every client was back within {timeout} s: {progress}")
    finally:
        stop(server)
        node.kill()
        node.wait()
    times = sorted(at - killed for at in recovered["times"])

    def percentile(share: float) -> float:
        return round(times[min(len(times) - 1, int(share * len(times)))], 2)

    return {
        "setup": f"{setup.server}+{setup.library}",
        "clients": clients,
        "first_subscribe_s": round(subscribed_in, 1),
        "server_listening_after_s": round(listening - killed, 2),
        "all_back_after_kill_s": round(times[-1], 2),
        "all_back_after_listening_s": round(times[-1] - (listening - killed), 2),
        "back_p50_s": percentile(0.5),
        "back_p99_s": percentile(0.99),
        "back": len(times),
        "failed_attempts": recovered["failures"],
        "giveups": recovered["giveups"],
    }


def table(results: list[dict[str, Any]]) -> str:
    rows = [
        "| setup | clients | server listening after | all back after the kill | after listening | p50 / p99 "
        "| failed attempts | give-ups |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['setup']} | error: {r['error']} | | | | | | |")
            continue
        rows.append(
            f"| {r['setup']} | {r['clients']:,} | {r['server_listening_after_s']} s | "
            f"{r['all_back_after_kill_s']} s | {r['all_back_after_listening_s']} s | "
            f"{r['back_p50_s']} / {r['back_p99_s']} s | {r['failed_attempts']:,} | {r['giveups']} |"
        )
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=10_000, help="clients (default 10000; --quick 500)")
    parser.add_argument(
        "--setups", default=",".join(SETUPS), help=f"comma-separated (default {','.join(SETUPS)})"
    )
    parser.add_argument(
        "--timeout", type=float, default=180, help="seconds to wait for the clients (default 180)"
    )
    parser.add_argument("--quick", action="store_true", help="the smoke run: 500 clients")
    parser.add_argument("--json", type=Path, help="write the results to this file")
    parser.add_argument(
        "--profile",
        type=Path,
        help="a directory: py-spy records each restarted Python server through its storm (SETUP.raw)",
    )
    args = parser.parse_args()
    if args.quick:
        args.clients, args.timeout = 500, 60
    files = raise_file_limit()
    print(f"reconnect storm: {args.clients:,} clients a setup; open files limit {files}", flush=True)
    results = []
    for name in args.setups.split(","):
        try:
            setup = Setup.parse(name.strip())
            profile = None
            if args.profile and setup.server == "tidings":
                args.profile.mkdir(parents=True, exist_ok=True)
                profile = args.profile / f"{name.strip()}.raw"
            result = storm(setup, args.clients, args.timeout, profile)
        except BenchError as error:
            result = {"setup": name.strip(), "error": str(error)}
        print(json.dumps(result), flush=True)
        results.append(result)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps({"clients": args.clients, "open_files": files, "results": results}))
    if any("error" in r or r["giveups"] for r in results):
        raise SystemExit(1)


if __name__ == "__main__":
    main()
