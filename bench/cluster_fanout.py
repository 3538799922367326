"""Fan-out across worker processes: deliveries/s, memory broker against Redis on 1 and 2 workers.

    .venv/bin/python bench/cluster_fanout.py [--clients 1000] [--messages 50] [--rounds 5]
                                             [--redis redis://127.0.0.1:6379/0] [--compare-src DIR]

Serves bench/apps/tidings_fanout.py (its `burst` handler calls `app.emit` once per message) with
`tidings run` in each configuration, then runs bench/node/fanout_client.mjs against each in turn,
round after round (interleaved, so that a busy machine slows every configuration alike). The
client connects CLIENTS raw WebSocket sockets, which the kernel spreads over the workers, asks one of
them for MESSAGES broadcasts and prints the deliveries per second once every socket got every one.
With the Redis broker each broadcast goes through Redis to every worker, the sender's own included.
`--compare-src DIR` adds a memory-broker server run from another source tree (e.g. an older commit
unpacked with `git archive`), for before/after figures on the in-process path.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.serving import free_port, wait_for_port  # noqa: E402 - after the path is set

APP = "bench/apps/tidings_fanout.py:app"
CLIENT = ROOT / "bench" / "node" / "fanout_client.mjs"


def start(extra: list[str], src: str | None = None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = src
    command = [sys.executable, "-m", "tidings", "run", APP, "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen([*command, *extra], cwd=ROOT, env=env)
    wait_for_port(port, 20, process)
    return process, port


def fan_out(port: int, clients: int, messages: int) -> int:
    result = subprocess.run(
        ["node", str(CLIENT), f"http://127.0.0.1:{port}", str(clients), str(messages)],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    return int(json.loads(result.stdout.strip().splitlines()[-1])["per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--compare-src", metavar="DIR", help="another source tree, served with memory")
    args = parser.parse_args()

    prefix = f"bench-{uuid.uuid4().hex[:8]}:"
    redis = ["--broker", args.redis, "--broker-prefix", prefix]
    configurations: list[tuple[str, list[str], str | None]] = [
        ("memory, 1 process", [], None),
        ("redis, 1 worker", redis, None),
        ("redis, 2 workers", [*redis, "--workers", "2"], None),
    ]
    if args.compare_src:
        configurations.insert(0, (f"memory, 1 process ({args.compare_src})", [], args.compare_src))
    servers = [start(extra, src) for _, extra, src in configurations]
    results: dict[str, list[int]] = {name: [] for name, _, _ in configurations}
    try:
        for _ in range(args.rounds):
            for (name, _, _), (_, port) in zip(configurations, servers, strict=True):
                results[name].append(fan_out(port, args.clients, args.messages))
    finally:
        for process, _ in servers:
            process.terminate()
            process.wait(10)
    print(f"{args.clients} clients x {args.messages} messages, {args.rounds} rounds (deliveries/s)")
    print(f"{'configuration':45} {'median':>9} {'best':>9}  all")
    for name, figures in results.items():
        print(f"{name:45} {statistics.median(figures):>9.0f} {max(figures):>9}  {figures}")


if __name__ == "__main__":
    main()
