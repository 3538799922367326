"""Connections at scale: N Socket.IO WebSocket subscribers on one server process (issue 18, goal 3).

Run: .venv/bin/python bench/scale.py [--connections 100000] [--servers tidings,node-socket.io]
                                     [--rounds 1] [--quick]

For each server, in its own fresh process (pinned as the suite pins it: server on CPU 0, the load
generator on CPU 1), the load generator's `scale` mode (bench/node/loadgen.mjs) connects N raw
Socket.IO clients, each subscribed to the one room, from several source addresses, then:

- **RSS per connection**: the server's RSS with all N connected, less its RSS after a warm-up of 100
  connections that came and went, divided by N (subscribed connections, not idle ones);
- **one broadcast to all**: a message published while nothing else is in flight, timed from its
  publish to its last delivery (the largest latency a subscriber saw), the median of 5;
- **steady rate to all**: deliveries/s (and messages/s to every subscriber) with `window` messages in
  flight to the slowest subscriber, publishing the next as soon as one has reached everyone.

What N needs from the machine, and what the script sets (it prints each):

- **open files**: the server holds N sockets. The script raises its own soft limit to the hard one
  (the server and the generator inherit it; `tidings run` and Node raise theirs to the hard one
  too). tidings keeps a tenth of its open files for other uses (`connection_capacity`), so with a
  hard limit H one process takes at most 0.9 H connections: N is clamped to that, less 100 (the
  publisher, the warm-up), with a message. Raising the hard limit needs privileges the script does
  not take (`ulimit -Hn`, or `LimitNOFILE` in a unit file).
- **ephemeral ports**: one source address has one range of them (ip_local_port_range) per
  destination; the clients are spread over 127.0.0.2, 127.0.0.3, ... (the loopback range), at most
  80% of that range on each, one address per generator process.
- **generator processes**: at most `--per-process` (2,500) clients each, which stays below their
  own open-files limit.
- **the server**: the suite's apps as they are (`bench/apps/tidings_app.py` lifts the per-address
  limits to 100,000; uvicorn's backlog is its default 2,048, Node's 511), and the generator opens at
  most 400 handshakes at once in all (`--concurrency`), below both backlogs.

`--quick` (2,000 connections, one broadcast, 1 s steady) is the smoke run of tests/bench. It writes
bench/results/scale-quick.*, which git ignores; a full run writes bench/results/scale.json and .png.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import resource
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.suite import (  # noqa: E402  (the repository root is put on the path first)
    RESULTS,
    SERVERS,
    BenchError,
    GeneratorMessages,
    Runner,
    Settings,
    check_peers,
    choose_cpus,
    hold_idle,
    machine,
    rss_kib,
    stop,
)

FULL = 100_000
QUICK = 2_000
#: File descriptors the server keeps beside its connections: the publisher, the warm-up, its own files.
SPARE_FILES = 100
#: The share of one source address's ephemeral ports the clients use.
PORT_SHARE = 0.8


def open_files_limit() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one (inherited by the processes started after);
    returns (soft, hard)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)


def capacity(open_files: int) -> int:
    """The connections one tidings process takes under ``open_files`` (as ``connection_capacity``
    computes it), less the spare files."""
    if open_files == resource.RLIM_INFINITY:
        return sys.maxsize
    return open_files - max(64, open_files // 10) - SPARE_FILES


def ports_per_address() -> int:
    low, high = (int(value) for value in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    return int((high - low + 1) * PORT_SHARE)


def source_addresses(connections: int, processes: int) -> list[str]:
    """127.0.0.2, 127.0.0.3, ...: enough that none carries more than its share of ports, at least one
    per generator process up to that; each checked by binding to it."""
    count = max(math.ceil(connections / ports_per_address()), 1)
    count = min(max(count, processes), 250)
    addresses = [f"127.0.0.{2 + i}" for i in range(count)]
    for address in addresses:
        with socket.socket() as probe:
            try:
                probe.bind((address, 0))
            except OSError as error:
                raise SystemExit(
                    f"scale: cannot bind to {address} ({error}): no loopback range here"
                ) from None
    return addresses


def scale_run(runner: Runner, key: str, options: dict[str, Any], settle: float) -> dict[str, Any]:
    """One server, fresh: the warm-up, the baseline RSS, N subscribers, their RSS, then the
    broadcasts and the steady phase."""
    spec = SERVERS[key]
    with runner.server(spec, "scale") as (port, pid):
        hold_idle(runner, port, pid, 100, f"{key}-scale-warmup", 0.1)
        time.sleep(settle / 2)
        before = rss_kib(pid)
        run = {"url": f"http://127.0.0.1:{port}", "serverPid": pid, **options}
        process = runner.generator("scale", run, f"{key}-scale")
        messages = GeneratorMessages(process, runner.logs / f"loadgen-{key}-scale.log")

        def next_message(what: str) -> dict[str, Any]:
            return messages.next(run["deadline"], what)

        try:
            started = time.monotonic()
            ready = next_message("ready")
            connect_s = time.monotonic() - started
            time.sleep(settle)
            after = rss_kib(pid)
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
            result = next_message("result")
            process.wait(30)
        finally:
            stop(process)
            messages.join(5)
    connected = ready["connected"]
    result.update(
        connect_s=round(connect_s, 1),
        rss_before_kib=before,
        rss_after_kib=after,
        kib_per_connection=round((after - before) / connected, 2),
    )
    return result


def summary(result: dict[str, Any]) -> str:
    steady = result["steady"]
    return (
        f"{result['subscribers']:,} subscribers (connected in {result['connect_s']} s), "
        f"{result['kib_per_connection']} KiB each; one broadcast: last delivery after "
        f"{result['broadcast']['last_ms']} ms (p50 {result['broadcast']['p50_ms']} ms); steady "
        f"{steady['deliveries_per_s']:,} deliveries/s = {steady['messages_per_s']} messages/s to all "
        f"(CPU: server {steady['server_cpu']}, generator {steady['generator_cpu']}, "
        f"other {steady['other_cpu']})"
    )


def table(document: dict[str, Any]) -> str:
    servers = document["servers"]
    rows = [
        ("subscribers", lambda s: f"{s['subscribers']:,}"),
        ("RSS per connection, KiB", lambda s: f"{s['kib_per_connection']}"),
        ("one broadcast: last delivery, ms", lambda s: f"{s['broadcast_last_ms']}"),
        ("one broadcast: p50 delivery, ms", lambda s: f"{s['broadcast_p50_ms']}"),
        ("one broadcast: server CPU, ms", lambda s: f"{s['broadcast_server_cpu_ms']}"),
        ("steady: deliveries/s", lambda s: f"{s['steady_deliveries_per_s']:,.0f}"),
        ("steady: messages/s to all", lambda s: f"{s['steady_messages_per_s']}"),
        ("steady: server CPU µs per delivery", lambda s: f"{s['steady_server_us_per_delivery']}"),
    ]
    lines = ["| measure | " + " | ".join(servers) + " |", "|---|" + "---:|" * len(servers)]
    for label, cell in rows:
        cells = [("failed" if "error" in s else cell(s)) for s in servers.values()]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def chart(document: dict[str, Any], path: Path) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    servers = {key: s for key, s in document["servers"].items() if "error" not in s}
    panels = [
        ("RSS per connection (KiB)", "kib_per_connection"),
        ("one broadcast: last delivery (ms)", "broadcast_last_ms"),
        ("one broadcast: server CPU (ms)", "broadcast_server_cpu_ms"),
        ("steady: messages/s to every subscriber", "steady_messages_per_s"),
        ("steady: server CPU per delivery (µs)", "steady_server_us_per_delivery"),
    ]
    figure, axes = plt.subplots(1, len(panels), figsize=(16, 3.8))
    for axis, (title, field) in zip(axes, panels, strict=True):
        values = [s[field] for s in servers.values()]
        bars = axis.bar(list(servers), values, color=["#2a7ab0", "#c0504d", "#7f7f7f"][: len(values)])
        axis.bar_label(bars, labels=[f"{value:,.0f}" if value >= 100 else f"{value:g}" for value in values])
        axis.set_title(title, fontsize=9)
        axis.margins(y=0.15)
    subscribers = max((s["subscribers"] for s in servers.values()), default=0)
    figure.suptitle(
        f"{subscribers:,} Socket.IO WebSocket subscribers on one server process ({document['date']})"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path.name


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/scale.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK:,} connections, one broadcast: a smoke run"
    )
    parser.add_argument(
        "--connections", type=int, help=f"subscribers (default {FULL:,}; clamped to the limits)"
    )
    parser.add_argument(
        "--servers", default="tidings,node-socket.io", help="comma-separated (the suite's names)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="runs per server, interleaved; medians reported"
    )
    parser.add_argument("--per-process", type=int, default=2500, help="clients per generator process")
    parser.add_argument("--concurrency", type=int, default=400, help="handshakes in flight, in all")
    parser.add_argument("--measure", type=float, help="seconds of the steady phase (default 3; --quick 1)")
    parser.add_argument("--output", type=Path, help="directory for the JSON and PNG (default bench/results)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and generator to cores")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    check_peers(servers)
    wanted = args.connections or (QUICK if args.quick else FULL)
    soft, hard = open_files_limit()
    limit = capacity(soft)
    connections = min(wanted, limit)
    print(
        f"scale: open files limit {soft} (hard {hard}), raised to the hard limit for the server and generator"
    )
    if connections < wanted:
        print(
            f"scale: {wanted:,} connections asked, {connections:,} run: one tidings process takes at most "
            f"{soft} - {max(64, soft // 10)} (a tenth kept for other files) - {SPARE_FILES} (spare) "
            f"connections under an open-files limit of {soft}; raising the hard limit needs privileges "
            "(ulimit -Hn, LimitNOFILE)"
        )
    processes = max(1, math.ceil(connections / args.per_process))
    addresses = source_addresses(connections, processes)
    print(
        f"scale: {connections:,} subscribers over {processes} generator processes (at most "
        f"{args.per_process:,} each) from {len(addresses)} source addresses "
        f"({addresses[0]}..{addresses[-1]}, "
        f"at most {ports_per_address():,} ephemeral ports each); {args.concurrency} handshakes in flight",
        flush=True,
    )
    settings = Settings.for_mode(args.quick)
    settings.per_process = args.per_process
    choose_cpus(settings, not args.no_pin)
    measure = args.measure or (1.0 if args.quick else 3.0)
    options = {
        "subscribers": connections,
        "sourceAddresses": addresses,
        "concurrency": max(1, args.concurrency // processes),
        "broadcasts": 1 if args.quick else 5,
        "window": max(2, round(100_000 / connections)),
        "warmup": 0.3 if args.quick else 1.0,
        "measure": measure,
        "connectTimeout": 600,
        "deadline": 900,
    }
    logs = Path(tempfile.mkdtemp(prefix="tidings-scale-"))
    runner = Runner(settings, logs)
    settle = 0.5 if args.quick else 3.0
    started = time.monotonic()
    info = machine(settings)
    runs: dict[str, list[dict[str, Any]]] = {key: [] for key in servers}
    errors: dict[str, str] = {}
    for index in range(args.rounds):  # interleaved: each round runs every server once
        for key in servers:
            if key in errors:
                continue
            try:
                result = scale_run(runner, key, options, settle)
            except BenchError as error:
                print(f"  {key}: FAILED: {error}", flush=True)
                errors[key] = str(error)
                continue
            runs[key].append(result)
            print(f"  {key} round {index + 1}: {summary(result)}", flush=True)
    results = {
        key: {"error": errors[key], "runs": runs[key]}
        if key in errors
        else {**run_summary(runs[key]), "runs": runs[key]}
        for key in servers
    }
    document = {
        "suite": "tidings connections at scale (bench/scale.py)",
        "mode": "quick" if args.quick else "default",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "machine": info,
        "limits": {
            "open_files_soft": soft,
            "open_files_hard": hard,
            "connections_asked": wanted,
            "connections_run": connections,
            "source_addresses": addresses,
            "ports_per_address": ports_per_address(),
            "generator_processes": processes,
            "handshakes_in_flight": args.concurrency,
        },
        "settings": {key: value for key, value in options.items() if key != "sourceAddresses"},
        "servers": results,
    }
    output = args.output or RESULTS
    output.mkdir(parents=True, exist_ok=True)
    name = "scale-quick" if args.quick else "scale"
    document["chart"] = chart(document, output / f"{name}.png")
    (output / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")
    print()
    print(table(document))
    print(f"wrote {output / name}.json (took {document['duration_s']} s)")
    return 1 if any("error" in result for result in results.values()) else 0


def run_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over a server's runs."""

    def median(values: list[float], places: int = 2) -> float:
        return round(statistics.median(values), places)

    return {
        "subscribers": runs[0]["subscribers"],
        "kib_per_connection": median([r["kib_per_connection"] for r in runs]),
        "broadcast_last_ms": median([r["broadcast"]["last_ms"] for r in runs], 1),
        "broadcast_p50_ms": median([r["broadcast"]["p50_ms"] for r in runs], 1),
        "broadcast_server_cpu_ms": median([r["broadcast"]["server_cpu_ms"] for r in runs], 1),
        "steady_deliveries_per_s": median([r["steady"]["deliveries_per_s"] for r in runs], 0),
        "steady_messages_per_s": median([r["steady"]["messages_per_s"] for r in runs], 1),
        "steady_server_us_per_delivery": median(
            [r["steady"]["server_cpu"] / r["steady"]["deliveries_per_s"] * 1e6 for r in runs]
        ),
    }


if __name__ == "__main__":
    sys.exit(main())
