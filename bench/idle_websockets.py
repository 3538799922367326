"""What idle plain WebSocket endpoints cost: threads and memory of the server per connection.

Run: .venv/bin/python bench/idle_websockets.py [--connections 1000] [--quick]
Starts `tidings run bench/apps/idle_endpoints.py:app`, opens N connections to the async endpoint,
then N to the blocking (def) one, checks each echoes, and prints the server's thread count and RSS
(from /proc) before and after, with the cost per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import subprocess
import sys
import time
from pathlib import Path

from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.serving import free_port, wait_for_port  # noqa: E402


def proc_status(pid: int) -> tuple[int, int]:
    """(threads, RSS in KiB) of a process."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0])


async def hold(url: str, count: int) -> list:
    connections = []
    for start in range(0, count, 100):  # in batches: the listen backlog is finite
        batch = await asyncio.gather(*(connect(url) for _ in range(start, min(count, start + 100))))
        connections.extend(batch)
    for ws in connections[:: max(1, count // 20)]:
        await ws.send("ping")
        assert await ws.recv() == "ping"
    return connections


async def measure(port: int, pid: int, count: int) -> None:
    base = proc_status(pid)
    print(f"server at rest: {base[0]} threads, {base[1] / 1024:.1f} MiB RSS")
    for kind in ("async", "sync"):
        before = proc_status(pid)
        connections = await hold(f"ws://127.0.0.1:{port}/{kind}", count)
        time.sleep(0.5)
        after = proc_status(pid)
        print(
            f"{count} idle {kind:5} endpoints: {after[0]} threads (+{after[0] - before[0]}), "
            f"{after[1] / 1024:.1f} MiB RSS (+{(after[1] - before[1]) / count:.1f} KiB per connection)"
        )
        await asyncio.gather(*(ws.close() for ws in connections))
        time.sleep(0.5)
        print(f"  closed: {proc_status(pid)[0]} threads")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--quick", action="store_true", help="100 connections, for a smoke test")
    args = parser.parse_args()
    count = 100 if args.quick else args.connections
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4 * count + 1024)), hard))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tidings", "run", "bench/apps/idle_endpoints.py:app", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port, process=server)
        asyncio.run(measure(port, server.pid, count))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
