"""Soak: two workers behind the Redis broker, many WebSocket clients on history channels, for a while.

    .venv/bin/python bench/soak.py [--duration 600] [--clients 10000] [--channels 100] [--rate 100]
                                   [--quick] [--write-docs] [--json PATH]

Starts its own Redis (append-only file, fsync always, in a temporary directory, so that the history
streams survive its restart) and two `tidings run bench/apps/tidings_soak.py` workers on two ports
with `--broker` that Redis. bench/node/soak_client.mjs connects the clients, spread over the two
workers and over Node processes of 2,500, each subscribed to one of the `soak-N` channels. A
`tidings.Publisher` then publishes numbered messages (0, 1, 2 ... per channel) at `--rate` in all,
round the channels. A quarter into the run one worker is killed (SIGKILL) and started again on its
port: its clients reconnect to the other worker and recover from the history. At 60% Redis is
stopped (SIGTERM) and started again with the same data directory. The RSS of every process is
sampled every few seconds. At the end each client has counted the numbers of its channel it missed
or got twice (or out of order); the figures, as a table and as JSON, say whether that is zero (the
script exits 1 if not). `--write-docs` puts the figures into docs/cluster.md between the soak
markers (a rerun replaces them) and draws the RSS chart to docs/images/soak.png. `--quick`: 20 s,
500 clients, 10 channels.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import tidings  # noqa: E402 - after the path is set
from tests.serving import wait_for_port  # noqa: E402

APP = "bench/apps/tidings_soak.py:app"
CLIENT = ROOT / "bench" / "node" / "soak_client.mjs"
CHART = ROOT / "docs" / "images" / "soak.png"
DOCS = ROOT / "docs" / "cluster.md"
BEGIN, END = "<!-- soak: begin (bench/soak.py --write-docs) -->", "<!-- soak: end -->"
PER_PROCESS = 2500
SAMPLE_EVERY = 2.0  # seconds between RSS samples
KILL_AT, REDIS_RESTART_AT = 0.25, 0.6  # fractions of the duration


def free_low_port() -> int:
    """A free port below the ephemeral range (32768+), which the clients' own ports come from."""
    for port in range(20000 + os.getpid() % 5000, 32768):
        with socket.socket() as sock:
            try:
                sock.bind(("", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below 32768")


def rss_mb(pid: int) -> float | None:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    found = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(found.group(1)) / 1024 if found else None


class Cluster:
    """Redis and the two workers, each restartable in place."""

    def __init__(self, data_dir: str) -> None:
        self.data_dir = data_dir
        self.redis_port = free_low_port()
        self.redis = self._start_redis()
        self.url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.ports: list[int] = []
        self.workers: list[subprocess.Popen[bytes]] = []
        for _ in range(2):
            port = free_low_port()
            self.ports.append(port)
            self.workers.append(self._start_worker(port))

    def _start_redis(self) -> subprocess.Popen[bytes]:
        command = ["redis-server", "--port", str(self.redis_port), "--save", "", "--appendonly", "yes"]
        command += ["--appendfsync", "always", "--dir", self.data_dir]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        wait_for_port(self.redis_port, 20, process)
        return process

    def _start_worker(self, port: int) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "tidings", "run", APP, "--port", str(port)]
        command += ["--broker", self.url, "--log-level", "warning"]  # a refused recovery says why
        process = subprocess.Popen(command, cwd=ROOT)
        wait_for_port(port, 30, process)
        return process

    def kill_worker(self, index: int) -> None:
        self.workers[index].send_signal(signal.SIGKILL)
        self.workers[index].wait()
        self.workers[index] = self._start_worker(self.ports[index])

    def restart_redis(self) -> None:
        self.redis.terminate()
        self.redis.wait(30)
        self.redis = self._start_redis()

    def processes(self) -> dict[str, int]:
        named = {f"worker {i + 1}": worker.pid for i, worker in enumerate(self.workers)}
        return {**named, "redis": self.redis.pid}

    def stop(self) -> None:
        for process in [*self.workers, self.redis]:
            process.terminate()
        for process in [*self.workers, self.redis]:
            process.wait(30)


def run(duration: float, clients: int, channels: int, rate: float) -> dict[str, Any]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 2 * clients + 4096)), hard))
    with tempfile.TemporaryDirectory(prefix="tidings-soak-") as data_dir:
        cluster = Cluster(data_dir)
        try:
            return soak(cluster, duration, clients, channels, rate)
        finally:
            cluster.stop()


def soak(cluster: Cluster, duration: float, clients: int, channels: int, rate: float) -> dict[str, Any]:
    options = {"ports": cluster.ports, "clients": clients, "channels": channels, "perProcess": PER_PROCESS}
    node = subprocess.Popen(
        ["node", str(CLIENT), json.dumps(options)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        return observe(cluster, node, duration, channels, rate)
    finally:
        node.kill()
        node.wait()


def observe(
    cluster: Cluster, node: subprocess.Popen[str], duration: float, channels: int, rate: float
) -> dict[str, Any]:
    assert node.stdin is not None and node.stdout is not None
    lines = iter(node.stdout.readline, "")
    node_pids = json.loads(next(lines))["pids"]
    started = time.monotonic()
    samples: list[dict[str, Any]] = []
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.is_set():
            named = {**cluster.processes(), "publisher (this script)": os.getpid()}
            named.update({f"clients {i + 1}": pid for i, pid in enumerate(node_pids)})
            rss = {name: rss_mb(pid) for name, pid in named.items()}
            samples.append({"t": round(time.monotonic() - started, 1), "rss_mb": rss})
            stop_sampling.wait(SAMPLE_EVERY)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    if json.loads(next(lines))["event"] != "ready":
        raise RuntimeError("the clients did not connect")
    connected_at = round(time.monotonic() - started, 1)
    events: list[dict[str, Any]] = []
    published = publish(cluster, duration, channels, rate, started, events)
    node.stdin.write(json.dumps({"expected": published}) + "\n")
    node.stdin.flush()
    result = json.loads(next(lines))
    node.wait(30)
    stop_sampling.set()
    sampler.join()
    clients = result["clients"]
    return {
        "duration_s": duration,
        "clients": clients,
        "channels": channels,
        "rate_per_s": rate,
        "connected_at_s": connected_at,
        "published": sum(published),
        "expected_deliveries": sum(published) * clients // channels,
        "deliveries": result["deliveries"],
        "lost": result["lost"],
        "duplicated": result["duplicated"],
        "client_reconnects": result["reconnects"],
        "unrecovered": result["unrecovered"],
        "events": events,
        "samples": samples,
    }


def publish(
    cluster: Cluster,
    duration: float,
    channels: int,
    rate: float,
    started: float,
    events: list[dict[str, Any]],
) -> list[int]:
    """Numbered messages round the channels at `rate`; the worker kill and the Redis restart on the way.
    The restarts run in a thread of their own, so that the publishing goes on meanwhile."""
    published = [0] * channels
    disruptions = [(KILL_AT, "worker 1 killed", lambda: cluster.kill_worker(0))]
    disruptions.append((REDIS_RESTART_AT, "redis restarted", cluster.restart_redis))
    begin = time.monotonic()
    pending: list[threading.Thread] = []
    with tidings.Publisher(cluster.url) as publisher:
        sent = 0
        while (elapsed := time.monotonic() - begin) < duration:
            if disruptions and elapsed >= disruptions[0][0] * duration:
                _, name, action = disruptions.pop(0)
                pending.append(threading.Thread(target=timed, args=(name, action, started, events)))
                pending[-1].start()
            channel = sent % channels
            # Kept in the history even when no client is in the channel at this moment (NoSocket).
            with contextlib.suppress(tidings.NoSocket):
                publisher.broadcast_channel(published[channel], f"soak-{channel}")
            published[channel] += 1
            sent += 1
            time.sleep(max(0.0, begin + sent / rate - time.monotonic()))
    for thread in pending:
        thread.join()
    return published


def timed(name: str, action: Any, started: float, events: list[dict[str, Any]]) -> None:
    at = time.monotonic() - started
    action()
    events.append(
        {"event": name, "at_s": round(at, 1), "back_after_s": round(time.monotonic() - started - at, 1)}
    )


def table(result: dict[str, Any]) -> str:
    rows = [
        ("duration", f"{result['duration_s']:g} s of publishing"),
        (
            "clients / channels",
            f"{result['clients']:,} WebSocket clients in {result['channels']} history channels",
        ),
        ("publish rate", f"{result['rate_per_s']:g} messages/s"),
        ("clients connected and subscribed after", f"{result['connected_at_s']} s"),
        ("messages published", f"{result['published']:,}"),
        ("deliveries (expected)", f"{result['deliveries']:,} ({result['expected_deliveries']:,})"),
        ("lost / duplicated or out of order", f"{result['lost']} / {result['duplicated']}"),
        ("client reconnects", f"{result['client_reconnects']:,}"),
        ("recoveries refused", json.dumps(result["unrecovered"]) if result["unrecovered"] else "none"),
    ]
    rows += [(e["event"], f"at {e['at_s']} s, back after {e['back_after_s']} s") for e in result["events"]]
    rows += [(f"RSS of {name}", text) for name, text in rss_summary(result["samples"]).items()]
    lines = ["| | |", "| --- | --- |", *(f"| {name} | {value} |" for name, value in rows)]
    return "\n".join(lines)


def rss_summary(samples: list[dict[str, Any]]) -> dict[str, str]:
    """Per process: its RSS after warm-up (the first sample past a fifth of the run) and at the end,
    and the peak between."""
    summary = {}
    warm = samples[len(samples) // 5 :]
    for name in samples[-1]["rss_mb"]:
        values = [s["rss_mb"][name] for s in warm if s["rss_mb"].get(name) is not None]
        if values:
            summary[name] = (
                f"{values[0]:.0f} MB after warm-up, {values[-1]:.0f} MB at the end, peak {max(values):.0f} MB"
            )
    return summary


def chart(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(9, 4.5))
    for name in result["samples"][-1]["rss_mb"]:
        points = [(s["t"], s["rss_mb"].get(name)) for s in result["samples"]]
        axes.plot(
            [t for t, v in points if v is not None], [v for t, v in points if v is not None], label=name
        )
    for event in result["events"]:
        axes.axvline(event["at_s"], color="grey", linestyle="--", linewidth=0.8)
        axes.annotate(event["event"], (event["at_s"], axes.get_ylim()[1]), rotation=90, va="top", fontsize=8)
    axes.set_xlabel("seconds")
    axes.set_ylabel("RSS (MB)")
    axes.set_title(
        f"soak: {result['clients']:,} clients, {result['channels']} channels, {result['rate_per_s']:g} msg/s"
    )
    axes.legend(fontsize=7, loc="center right")
    figure.tight_layout()
    CHART.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(CHART, dpi=100)


def write_docs(result: dict[str, Any]) -> None:
    section = f"{BEGIN}\n{table(result)}\n\n![RSS of every process over the soak](images/soak.png)\n{END}"
    text = DOCS.read_text()
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
    else:
        text = text.rstrip("\n") + "\n\n## Soak\n\n" + section + "\n"
    DOCS.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600, help="seconds of publishing (default 600)")
    parser.add_argument("--clients", type=int, default=10_000, help="WebSocket clients (default 10000)")
    parser.add_argument("--channels", type=int, default=100, help="history channels (default 100)")
    parser.add_argument("--rate", type=float, default=100, help="messages/s in all (default 100)")
    parser.add_argument("--quick", action="store_true", help="the smoke run: 20 s, 500 clients, 10 channels")
    parser.add_argument("--write-docs", action="store_true", help="write the figures into docs/cluster.md")
    parser.add_argument("--json", type=Path, help="write the result (with every RSS sample) to this file")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.clients, args.channels = 20, 500, 10
    result = run(args.duration, args.clients, args.channels, args.rate)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result))
    if args.write_docs:
        chart(result)
        write_docs(result)
    if result["lost"] or result["duplicated"] or result["unrecovered"]:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
