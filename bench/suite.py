"""The benchmark suite: every server in its own process, driven by the Node load generator.

`python -m bench` (from the repository root) runs, for each server, each measure on a fresh server
process pinned to one core while the generator (bench/node/loadgen.mjs, raw `ws` clients) runs on
another, then prints one table and writes a JSON file and a PNG chart. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib.metadata
import json
import os
import platform
import queue
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
NODE_DIR = BENCH / "node"
LOADGEN = NODE_DIR / "loadgen.mjs"
RESULTS = BENCH / "results"
NODE_PACKAGES = ("socket.io", "ws")
PYTHON_PACKAGES = (
    "tidings",
    "uvicorn",
    "uvloop",
    "httptools",
    "websockets",
    "python-socketio",
    "python-engineio",
)

#: `echo` and `echo_def` are named after the event the load generator emits: the apps answer the
#: first with an `async def` handler, the second with a `def` one.
MEASURES = ("fanout", "idle_memory", "connection_rate", "echo", "echo_def", "polling")
#: Latency at equal load: every server's fan-out (and long-polling fan-out) gets a latency phase at one
#: common rate, this share of the reference server's peak there. The reference is the server tidings is
#: held against, Node socket.io, or the first server of the run without it; it is measured first.
EQUAL_LOAD_SHARE = 0.5
EQUAL_LOAD_REFERENCE = "node-socket.io"


class BenchError(Exception):
    """A measure could not be taken (the server died, the generator failed or timed out)."""


# -- the servers ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServerSpec:
    key: str
    label: str
    command: Callable[[int | str], list[str]]
    needs_node: bool = False
    #: What it can be measured on; the others are recorded as skipped.
    measures: tuple[str, ...] = MEASURES


#: The limit servers speak WebSocket only.
WEBSOCKET_MEASURES = tuple(measure for measure in MEASURES if measure != "polling")


def _python(*args: str) -> Callable[[int | str], list[str]]:
    return lambda port: [sys.executable, *[arg.format(port=port) for arg in args]]


SERVERS: dict[str, ServerSpec] = {
    spec.key: spec
    for spec in (
        ServerSpec(
            "tidings",
            "tidings (tidings run)",
            _python(
                "-m",
                "tidings",
                "run",
                "bench/apps/tidings_app.py:app",
                "--port={port}",
                "--log-level=warning",
            ),
        ),
        ServerSpec(
            "python-socketio",
            "python-socketio AsyncServer (uvicorn)",
            _python("bench/apps/psio_app.py", "{port}"),
        ),
        ServerSpec(
            "node-socket.io",
            "Node socket.io 4.8",
            lambda port: ["node", str(NODE_DIR / "sio_server.mjs"), str(port)],
            needs_node=True,
        ),
        ServerSpec(
            "limit",
            "limit (bare uvloop, pre-built frames)",
            _python("bench/apps/limit_server.py", "{port}"),
            measures=WEBSOCKET_MEASURES,
        ),
        # Not in the default set: the limit without coalescing, one write per message and socket.
        ServerSpec(
            "limit-per-frame",
            "limit, one write per frame",
            _python("bench/apps/limit_server.py", "{port}", "--per-frame"),
            measures=WEBSOCKET_MEASURES,
        ),
        # Not in the default set: uvicorn + websockets under an ASGI app that does nothing.
        ServerSpec(
            "uvicorn-floor",
            "uvicorn + websockets, empty app",
            _python("bench/apps/asgi_floor.py", "{port}"),
            measures=("idle_memory", "connection_rate"),
        ),
    )
}
DEFAULT_SERVERS = ("tidings", "python-socketio", "node-socket.io", "limit")


# -- settings of a run ----------------------------------------------------------------------------


@dataclass
class Settings:
    quick: bool
    sizes: tuple[int, ...]
    #: Peak sweep: messages in flight = these deliveries in flight / subscribers (at least 1 message),
    #: in turn, while a window gains at least 5% on the best before it.
    in_flight: tuple[int, ...]
    warmup: float
    measure: float
    latency: float
    load: float
    idle_connections: int
    #: Long-polling clients of the one room of the `polling` measure.
    polling_clients: int
    echo_clients: int
    connect_concurrency: int
    quiet_wait: float
    #: Measures that saw other processes use this many cores are taken again (up to `retries` times).
    noisy: float = 0.25
    retries: int = 1
    settle: float = 2.0
    per_process: int = 2500
    server_cpus: str | None = None
    generator_cpus: str | None = None
    #: If set, the latency phase runs at this many deliveries/s for every server (equal load),
    #: instead of at `load` of each server's own peak.
    latency_rate: float | None = None
    #: The measures to take (`--measures`); the others are recorded as skipped.
    measures: tuple[str, ...] = MEASURES
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_mode(cls, quick: bool) -> Settings:
        if quick:
            return cls(
                quick=True,
                sizes=(100,),
                in_flight=(20_000,),
                warmup=0.3,
                measure=0.7,
                latency=0.7,
                load=0.5,
                idle_connections=1000,
                polling_clients=100,
                echo_clients=100,
                connect_concurrency=50,
                quiet_wait=0.0,
                retries=0,
                settle=0.5,
            )
        return cls(
            quick=False,
            sizes=(100, 1000, 5000),
            in_flight=(5_000, 20_000, 50_000, 100_000),
            warmup=1.0,
            measure=1.5,
            latency=2.0,
            load=0.5,
            idle_connections=10_000,
            polling_clients=1000,
            echo_clients=100,
            connect_concurrency=50,
            quiet_wait=30.0,
        )

    def windows(self, subscribers: int) -> list[int]:
        return sorted({max(1, round(deliveries / subscribers)) for deliveries in self.in_flight})


# -- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[Any], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"the server exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise BenchError(f"nothing listens on port {port} after {timeout}s")


def pinned(command: list[str], cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus, *command] if cpus else command


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


class Runner:
    """Starts servers and the generator, with their logs in one temporary directory."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.ticks = os.sysconf("SC_CLK_TCK")
        self.background: list[float] = []

    @contextlib.contextmanager
    def server(self, spec: ServerSpec, tag: str) -> Iterator[tuple[int, int]]:
        """A fresh server process for one measure: yields (port, pid)."""
        port = free_port()
        log = self.logs / f"{spec.key}-{tag}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                pinned(spec.command(port), self.settings.server_cpus),
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            try:
                wait_for_port(port, process)
            except BenchError as error:
                raise BenchError(f"{error}; its log ends:\n{tail(log)}") from None
            yield port, process.pid
            if process.poll() is not None:
                raise BenchError(f"the server exited with {process.returncode}; its log ends:\n{tail(log)}")
        finally:
            stop(process)

    def generator(self, mode: str, options: dict[str, Any], tag: str) -> subprocess.Popen[str]:
        deadline = options.setdefault("deadline", 300)
        options.setdefault("clockTicks", self.ticks)
        options.setdefault("perProcess", self.settings.per_process)
        options["deadline"] = deadline
        log = self.logs / f"loadgen-{tag}.log"
        with log.open("w") as err:
            return subprocess.Popen(
                pinned(["node", str(LOADGEN), mode, json.dumps(options)], self.settings.generator_cpus),
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )

    def generate(self, mode: str, options: dict[str, Any], tag: str) -> dict[str, Any]:
        """Run the generator to its end; its last line is the result."""
        process = self.generator(mode, options, tag)
        try:
            out, _ = process.communicate(timeout=options["deadline"] + 15)
        except subprocess.TimeoutExpired:
            raise BenchError(f"the load generator ran past {options['deadline'] + 15}s") from None
        finally:
            stop(process)
        return last_result(out, self.logs / f"loadgen-{tag}.log")

    def wait_quiet(self) -> float:
        """Wait (up to quiet_wait) for the cores to be idle; returns the background load seen last."""
        deadline = time.monotonic() + self.settings.quiet_wait
        while True:
            load = busy_cores(0.5)
            if load < 0.15 or time.monotonic() >= deadline:
                self.background.append(load)
                return load
            time.sleep(1.0)


def last_result(out: str, log: Path) -> dict[str, Any]:
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        raise BenchError(f"the load generator printed no result; its log ends:\n{tail(log)}")
    result: dict[str, Any] = json.loads(lines[-1])
    if "error" in result:
        raise BenchError(f"load generator: {result['error']}")
    return result


def busy_cores(seconds: float) -> float:
    """How many cores' worth of CPU the whole machine used over `seconds`."""

    def sample() -> tuple[int, int]:
        fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    busy0, total0 = sample()
    time.sleep(seconds)
    busy1, total1 = sample()
    return round((busy1 - busy0) / max(1, total1 - total0) * (os.cpu_count() or 1), 2)


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for process {pid}")


# -- the measures ---------------------------------------------------------------------------------


def measure_fanout(
    runner: Runner,
    spec: ServerSpec,
    subscribers: int,
    rates: dict[str, float] | None,
    transport: str = "websocket",
) -> dict[str, Any]:
    """Fan-out to one room of `subscribers` on `transport` (the publisher is on a WebSocket): the peak,
    the latency at a share of it (WebSocket only), and the latency at equal load: at the rate `rates`
    holds for it, or, for the reference server (`rates` None), at EQUAL_LOAD_SHARE of its own peak.
    No rate in `rates` (the reference failed there): no equal-load phase."""
    s = runner.settings
    tag = str(subscribers)
    with runner.server(spec, f"{transport}-{tag}") as (port, pid):
        before = runner.wait_quiet()
        options = {
            "url": f"http://127.0.0.1:{port}",
            "serverPid": pid,
            "subscribers": subscribers,
            "transport": transport,
            "windows": s.windows(subscribers),
            "warmup": s.warmup,
            "measure": s.measure,
            "latency": s.latency,
            "load": s.load if transport == "websocket" else 0,
            "latencyRate": s.latency_rate if transport == "websocket" else None,
            "equalRate": None if rates is None else rates.get("polling" if transport == "polling" else tag),
            "equalShare": EQUAL_LOAD_SHARE if rates is None else None,
            "concurrency": 100,
            "behindTimeout": 5 if s.quick else 60,
            "deadline": 240,
        }
        result = runner.generate("fanout", options, f"{spec.key}-{transport}-{tag}")
    result["background_before"] = before
    return result


class GeneratorMessages:
    """The JSON lines a running load generator prints, read by a thread so that a wait for the next
    one can time out."""

    def __init__(self, process: subprocess.Popen[str], log: Path) -> None:
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._log = log
        self._reader = threading.Thread(target=self._read, args=(process,), daemon=True)
        self._reader.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def next(self, timeout: float, what: str) -> dict[str, Any]:
        """The next message; :class:`BenchError` if none comes within ``timeout`` seconds, if the
        generator ends first (with its log's end), or if the message is an error."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise BenchError(f"no {what} from the load generator in time") from None
            if line is None:
                raise BenchError(f"the load generator ended before {what}; its log ends:\n{tail(self._log)}")
            if line.startswith("{"):
                message: dict[str, Any] = json.loads(line)
                if "error" in message:
                    raise BenchError(f"load generator: {message['error']}")
                return message

    def join(self, timeout: float) -> None:
        self._reader.join(timeout)


def hold_idle(runner: Runner, port: int, pid: int, connections: int, tag: str, settle: float) -> int:
    """Connect `connections` idle clients, wait `settle` seconds, return the server's RSS, disconnect."""
    options = {"url": f"http://127.0.0.1:{port}", "serverPid": pid, "connections": connections}
    options.update(concurrency=100, hold=120, deadline=200)
    process = runner.generator("idle", options, tag)
    messages = GeneratorMessages(process, runner.logs / f"loadgen-{tag}.log")
    try:
        deadline = time.monotonic() + 150
        message: dict[str, Any] = {}
        while message.get("event") != "ready":
            message = messages.next(deadline - time.monotonic(), f"{connections} idle clients ready")
        time.sleep(settle)
        rss = rss_kib(pid)
        assert process.stdin is not None
        process.stdin.write("stop\n")
        process.stdin.flush()
        process.wait(30)
        return rss
    finally:
        stop(process)
        messages.join(5)


def measure_idle(runner: Runner, spec: ServerSpec) -> dict[str, Any]:
    count = runner.settings.idle_connections
    with runner.server(spec, "idle") as (port, pid):
        runner.wait_quiet()
        # Warm up first (lazy imports, first-connection allocations), then take the baseline.
        hold_idle(runner, port, pid, 100, f"{spec.key}-idle-warmup", 0.1)
        time.sleep(runner.settings.settle / 2)
        before = rss_kib(pid)
        after = hold_idle(runner, port, pid, count, f"{spec.key}-idle", runner.settings.settle)
    return {
        "connections": count,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_connection": round((after - before) / count, 2),
    }


def measure_connection_rate(runner: Runner, spec: ServerSpec) -> dict[str, Any]:
    s = runner.settings
    with runner.server(spec, "connrate") as (port, pid):
        before = runner.wait_quiet()
        options = {
            "url": f"http://127.0.0.1:{port}",
            "serverPid": pid,
            "concurrency": s.connect_concurrency,
            "warmup": s.warmup,
            "measure": s.measure,
            "deadline": 120,
        }
        result = runner.generate("connrate", options, f"{spec.key}-connrate")
    result["background_before"] = before
    return result


def measure_echo(runner: Runner, spec: ServerSpec, measure: str) -> dict[str, Any]:
    s = runner.settings
    with runner.server(spec, measure) as (port, pid):
        before = runner.wait_quiet()
        options = {
            "url": f"http://127.0.0.1:{port}",
            "serverPid": pid,
            "clients": s.echo_clients,
            "warmup": s.warmup,
            "measure": s.measure,
            "concurrency": 100,
            "event": measure,
            "deadline": 120,
        }
        result = runner.generate("echo", options, f"{spec.key}-{measure}")
    result["background_before"] = before
    return result


def interference(result: dict[str, Any]) -> float:
    """The most CPU other processes took while `result` was measured, in cores."""
    parts = [result, result.get("peak") or {}, result.get("latency") or {}, result.get("equal_load") or {}]
    return max(float(part.get("other_cpu") or 0.0) for part in parts)


def attempt(runner: Runner, label: str, take: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Take a measure; again (once, by default) if other processes disturbed it."""
    best: dict[str, Any] | None = None
    for attempt in range(1 + runner.settings.retries):
        started = time.monotonic()
        try:
            result = take()
        except BenchError as error:
            print(f"  {label}: FAILED: {error}", flush=True)
            return {"error": str(error)}
        result["wall_s"] = round(time.monotonic() - started, 1)
        result["attempts"] = attempt + 1
        noise = interference(result)
        if best is None or noise < interference(best):
            best = result
        if noise < runner.settings.noisy or attempt == runner.settings.retries:
            break
        print(f"  {label}: other processes used {noise:.2f} cores; measuring again", flush=True)
    assert best is not None
    print(f"  {label}: {summary(best)}", flush=True)
    return best


def summary(result: dict[str, Any]) -> str:
    if "peak" in result:
        peak = result["peak"]
        parts = [
            f"{peak['deliveries_per_s']:,} deliveries/s (window {peak['window']}, server CPU "
            f"{peak['server_cpu']}, generator CPU {peak['generator_cpu']})"
        ]
        for latency in (result["latency"], result["equal_load"]):
            if latency:
                at = (
                    f"{latency['load']:.0%}"
                    if latency.get("load")
                    else f"{latency['deliveries_per_s_asked']:,}/s"
                )
                if latency.get("behind_messages"):
                    parts.append(
                        f"at {at}: behind, {latency['behind_messages']:,} messages not delivered in time"
                    )
                else:
                    parts.append(f"at {at}: p50 {latency['p50_ms']} ms, p99 {latency['p99_ms']} ms")
        return "; ".join(parts)
    if "kib_per_connection" in result:
        return f"{result['kib_per_connection']} KiB per connection ({result['connections']:,} connections)"
    if "connections_per_s" in result:
        return (
            f"{result['connections_per_s']:,} connections/s (server CPU {result['server_cpu']}, "
            f"generator CPU {result['generator_cpu']})"
        )
    return (
        f"p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms, {result['round_trips_per_s']:,} round trips/s"
        f" (server CPU {result['server_cpu']}, generator CPU {result['generator_cpu']})"
    )


def run_server(runner: Runner, spec: ServerSpec, rates: dict[str, float] | None) -> dict[str, Any]:
    """Every measure of one server. `rates`: the equal-load rates (deliveries/s by size, and
    "polling"); None for the reference server, whose own peaks set them."""
    print(f"{spec.label}:", flush=True)

    def take(measure: str, label: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        if measure not in spec.measures:
            return {"skipped": f"{spec.key} does not serve this measure"}
        if measure not in runner.settings.measures:
            return {"skipped": "not asked for (--measures)"}
        return attempt(runner, label, run)

    fanout = {
        str(size): take(
            "fanout",
            f"fan-out to {size:,}",
            lambda size=size: measure_fanout(runner, spec, size, rates),
        )
        for size in (runner.settings.sizes if "fanout" in runner.settings.measures else ())
    }
    return {
        "label": spec.label,
        "command": " ".join(spec.command("PORT")).replace(sys.executable, "python").replace(f"{ROOT}/", ""),
        "fanout": fanout,
        "idle_memory": take("idle_memory", "idle memory", lambda: measure_idle(runner, spec)),
        "connection_rate": take(
            "connection_rate", "connection rate", lambda: measure_connection_rate(runner, spec)
        ),
        "echo": take("echo", "echo", lambda: measure_echo(runner, spec, "echo")),
        "echo_def": take("echo_def", "echo, def handler", lambda: measure_echo(runner, spec, "echo_def")),
        "polling": take(
            "polling",
            f"long-polling, {runner.settings.polling_clients:,} clients",
            lambda: measure_fanout(runner, spec, runner.settings.polling_clients, rates, "polling"),
        ),
    }


def equal_load_rates(reference: dict[str, Any]) -> dict[str, float]:
    """The rates the reference server's run set: EQUAL_LOAD_SHARE of its peak at each size, and on
    long-polling. At half its capacity the reference runs unsaturated; a server slower than it queues,
    and its latency says so. A size where the reference failed has no rate (its phase is skipped)."""
    measured = {str(size): result for size, result in reference["fanout"].items()}
    measured["polling"] = reference["polling"]
    return {
        key: float(result["equal_load"]["deliveries_per_s_asked"])
        for key, result in measured.items()
        if (result.get("equal_load") or {}).get("deliveries_per_s_asked")
    }


# -- the machine ----------------------------------------------------------------------------------


def machine(settings: Settings) -> dict[str, Any]:
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), "")
    meminfo = Path("/proc/meminfo").read_text().splitlines()
    mem_kib = next((int(line.split()[1]) for line in meminfo if line.startswith("MemTotal:")), 0)

    def version(package: str) -> str | None:
        try:
            return importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return None

    def node_package(name: str) -> str | None:
        try:
            return str(json.loads((NODE_DIR / "node_modules" / name / "package.json").read_text())["version"])
        except (OSError, ValueError, KeyError):
            return None

    node = subprocess.run(["node", "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"], cwd=ROOT, capture_output=True, text=True, timeout=10
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": node,
        "tidings_commit": commit or None,
        "versions": {name: version(name) for name in PYTHON_PACKAGES}
        | {f"npm:{name}": node_package(name) for name in NODE_PACKAGES},
        "pinning": {"server_cpus": settings.server_cpus, "generator_cpus": settings.generator_cpus},
    }


def choose_cpus(settings: Settings, pin: bool) -> None:
    """Server on CPU 0, generator (and this process) on CPU 1, where there are two and taskset."""
    cpus = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if not pin or len(cpus) < 2 or shutil.which("taskset") is None:
        return
    settings.server_cpus = str(cpus[0])
    settings.generator_cpus = ",".join(str(cpu) for cpu in cpus[1:])
    os.sched_setaffinity(0, set(cpus[1:]))


def raise_file_limit(needed: int) -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        with contextlib.suppress(ValueError, OSError):  # raising the hard limit needs privileges
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
            return needed
    target = needed if hard == resource.RLIM_INFINITY else min(hard, max(soft, needed))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def check_peers(servers: list[str]) -> None:
    if shutil.which("node") is None:
        raise SystemExit("bench: `node` is not on PATH (the load generator is Node)")
    missing = [name for name in NODE_PACKAGES if not (NODE_DIR / "node_modules" / name).is_dir()]
    if missing:
        raise SystemExit(f"bench: npm packages {missing} missing: run `npm ci` in {NODE_DIR}")
    unknown = [name for name in servers if name not in SERVERS]
    if unknown:
        raise SystemExit(f"bench: unknown servers {unknown}; known: {sorted(SERVERS)}")


# -- entry ----------------------------------------------------------------------------------------


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a smoke run in under a minute (fan-out to 100)")
    parser.add_argument(
        "--servers",
        default=",".join(DEFAULT_SERVERS),
        help="comma-separated; also: limit-per-frame, uvicorn-floor",
    )
    parser.add_argument("--sizes", help="fan-out subscriber counts, comma-separated (default 100,1000,5000)")
    parser.add_argument("--idle-connections", type=int, help="idle connections (default 10000; --quick 1000)")
    parser.add_argument("--output", type=Path, help="directory for the JSON and PNG (default bench/results)")
    parser.add_argument("--name", help="file name stem of the JSON and PNG (default bench, or quick)")
    parser.add_argument("--no-pin", action="store_true", help="do not pin server and generator to cores")
    parser.add_argument("--quiet-wait", type=float, help="seconds to wait for idle cores before each measure")
    parser.add_argument("--measures", help=f"comma-separated, of {','.join(MEASURES)} (default: all)")
    parser.add_argument(
        "--latency-rate",
        type=float,
        help="run every server's latency phase at this many deliveries/s (default: 50%% of its own peak)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    servers = [name.strip() for name in args.servers.split(",") if name.strip()]
    check_peers(servers)
    settings = Settings.for_mode(args.quick)
    if args.sizes:
        settings.sizes = tuple(int(size) for size in args.sizes.split(","))
    if args.idle_connections:
        settings.idle_connections = args.idle_connections
    if args.quiet_wait is not None:
        settings.quiet_wait = args.quiet_wait
    if args.latency_rate:
        settings.latency_rate = args.latency_rate
    if args.measures:
        settings.measures = tuple(name.strip() for name in args.measures.split(",") if name.strip())
        unknown = sorted(set(settings.measures) - set(MEASURES))
        if unknown:
            raise SystemExit(f"bench: unknown measures {unknown}; known: {list(MEASURES)}")
    choose_cpus(settings, not args.no_pin)
    files = raise_file_limit(max(settings.idle_connections, *settings.sizes) * 2 + 1024)
    output = args.output or RESULTS
    name = args.name or ("quick" if args.quick else "bench")
    output.mkdir(parents=True, exist_ok=True)

    from bench import report  # matplotlib is imported only when the chart is drawn

    started = time.monotonic()
    info = machine(settings)
    pinning = (
        f"server on CPU {settings.server_cpus}, load generator on CPU {settings.generator_cpus} (taskset)"
        if settings.server_cpus
        else "not pinned (fewer than 2 CPUs, no taskset, or --no-pin)"
    )
    mode = "quick" if args.quick else "default"
    print(f"bench: {mode} mode; {pinning}; open files limit {files}", flush=True)
    logs = Path(tempfile.mkdtemp(prefix="tidings-bench-"))
    runner = Runner(settings, logs)
    reference = EQUAL_LOAD_REFERENCE if EQUAL_LOAD_REFERENCE in servers else servers[0]
    measured = {reference: run_server(runner, SERVERS[reference], None)}
    rates = equal_load_rates(measured[reference])
    for key in servers:
        if key != reference:
            measured[key] = run_server(runner, SERVERS[key], rates)
    results = {key: measured[key] for key in servers}
    document = {
        "suite": "tidings benchmark suite",
        "mode": mode,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - started, 1),
        "machine": info,
        "pinning": pinning,
        "settings": {
            "sizes": list(settings.sizes),
            "in_flight_deliveries": list(settings.in_flight),
            "windows": {str(size): settings.windows(size) for size in settings.sizes},
            "warmup_s": settings.warmup,
            "measure_s": settings.measure,
            "latency_s": settings.latency,
            "latency_load": settings.load,
            "latency_rate": settings.latency_rate,
            "payload_bytes": 100,
            "idle_connections": settings.idle_connections,
            "polling_clients": settings.polling_clients,
            "echo_clients": settings.echo_clients,
            "connect_concurrency": settings.connect_concurrency,
            "connections_per_generator_process": settings.per_process,
        },
        "equal_load": {"reference": reference, "share": EQUAL_LOAD_SHARE, "deliveries_per_s": rates},
        "background_cpu_before_measures": {"max": max(runner.background, default=0.0)},
        "servers": results,
    }
    json_path = output / f"{name}.json"
    png_path = output / f"{name}.png"
    document["chart"] = report.chart(document, png_path)
    json_path.write_text(json.dumps(document, indent=2) + "\n")
    print()
    print(report.table(document))
    print()
    print(report.notes(document))
    chart = f" and {png_path}" if document["chart"] else " (no chart: matplotlib is missing)"
    print(f"wrote {json_path}{chart}")
    print(f"took {document['duration_s']} s")
    failed = [
        f"{key} {measure}"
        for key, server in results.items()
        for measure in MEASURES
        for result in (server[measure].values() if measure == "fanout" else [server[measure]])
        if "error" in result
    ]
    if failed:
        print(f"bench: FAILED measures: {', '.join(failed)}; logs in {logs}", file=sys.stderr)
        return 1
    shutil.rmtree(logs, ignore_errors=True)
    return 0
