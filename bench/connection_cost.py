"""What one Socket.IO connection costs the server, in process: CPU time, or instructions.

Run: .venv/bin/python bench/connection_cost.py [--connections 2000] [--rounds 5] [--instructions]

Each connection goes through uvicorn's HTTP protocol (as `tidings run` guards it) and tidings' own
WebSocket protocol over an in-memory transport, on uvloop, with the benchmark suite's app
(apps/tidings_app.py): the upgrade request, the Engine.IO open packet, a namespace CONNECT and its
answer, then the client's close frame and the close of the transport. No socket, kernel or load
generator is involved, so what is left is the Python of the connection path.

- By default it prints the CPU time per connection of each round and their median. This machine's
  noise still reaches it (±10% from run to run).
- ``--instructions`` runs the measure under valgrind (cachegrind, no cache simulation) with no
  connection and with ``--connections``, and prints the difference per connection: the
  instructions the CPU ran, the same from run to run within ~0.5%. It takes ~1 minute.

To compare with another tree, put that tree's ``src`` first on the path:
``PYTHONPATH=OTHER/src .venv/bin/python bench/connection_cost.py --instructions``.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import gc
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HEAD = (
    b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: 127.0.0.1:8000\r\n"
    b"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
)
WARMUP = 300


def client_frame(opcode: int, payload: bytes) -> bytes:
    """A masked client frame (RFC 6455 §5.3) with a payload under 126 bytes."""
    key = b"\x01\x02\x03\x04"
    masked = bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + masked


CONNECT = client_frame(0x1, b"40")
CLOSE = client_frame(0x8, (1000).to_bytes(2, "big"))


class MemoryTransport(asyncio.Transport):
    """A transport that keeps nothing: it resolves ``waiting`` once a write holds ``marker``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        self.protocol: Any = None
        self.closed = False
        self.marker = b""
        self.waiting: asyncio.Future[None] | None = None

    def expect(self, marker: bytes) -> asyncio.Future[None]:
        self.marker = marker
        self.waiting = self.loop.create_future()
        return self.waiting

    def write(self, data: Any) -> None:
        if self.waiting is not None and self.marker in data:
            self.waiting.set_result(None)
            self.waiting = None

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.loop.call_soon(self.protocol.connection_lost, None)
            if self.waiting is not None and self.marker == b"":
                self.waiting.set_result(None)
                self.waiting = None

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 40000), "sockname": ("127.0.0.1", 8000)}.get(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    def is_closing(self) -> bool:
        return self.closed

    def abort(self) -> None:
        self.close()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0


def protocol_factory() -> Any:
    """uvicorn's HTTP protocol as `tidings run` configures it, for the suite's app."""
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from bench.apps.tidings_app import app
    from tidings.server.cli import connection_settings
    from tidings.server.guard import GuardedHttpToolsProtocol

    try:
        from tidings.server.websocket import FastWebSocketProtocol
    except ImportError:  # a tree from before issue 13, where it was server/fastws.py
        from tidings.server.fastws import FastWebSocketProtocol  # type: ignore[no-redef]

    settings = connection_settings(app.settings)
    config = Config(
        app,
        http=functools.partial(GuardedHttpToolsProtocol, settings=settings),
        ws=functools.partial(FastWebSocketProtocol, settings=settings),
        ws_ping_interval=None,
        ws_per_message_deflate=False,
        ws_max_size=settings.max_payload,
        lifespan="off",
    )
    config.load()
    state = ServerState()
    return functools.partial(config.http_protocol_class, config=config, server_state=state, app_state={})


async def open_session(make_protocol: Any, transport: MemoryTransport) -> None:
    """A client's start on ``transport``: the WebSocket upgrade, the Engine.IO open and the namespace
    CONNECT, each answered."""
    transport.protocol = make_protocol(_loop=transport.loop)
    transport.protocol.connection_made(transport)
    opened = transport.expect(b'0{"sid"')
    transport.protocol.data_received(HEAD)
    await opened
    connected = transport.expect(b'40{"sid"')
    transport.protocol.data_received(CONNECT)
    await connected


async def one_connection(make_protocol: Any, loop: asyncio.AbstractEventLoop) -> None:
    transport = MemoryTransport(loop)
    await open_session(make_protocol, transport)
    closed = transport.expect(b"")
    transport.protocol.data_received(CLOSE)
    await closed
    await asyncio.sleep(0)  # connection_lost


async def measure(connections: int, rounds: int) -> list[float]:
    """CPU µs per connection of each round, after a warm-up."""
    loop = asyncio.get_running_loop()
    make_protocol = protocol_factory()
    for _ in range(WARMUP):
        await one_connection(make_protocol, loop)
    costs: list[float] = []
    for _ in range(rounds if connections else 0):  # none: the baseline of --instructions
        gc.collect()
        started = time.process_time()
        for _ in range(connections):
            await one_connection(make_protocol, loop)
        costs.append((time.process_time() - started) / connections * 1e6)
    return costs


def instructions(script: str, arguments: list[str], count: int) -> float:
    """Instructions per unit of `script`'s work: two runs of `script ARGUMENTS COUNT` under cachegrind,
    with COUNT 0 (the set-up alone) and with `count`; their difference divided by `count`."""

    def total(count: int) -> int:
        command = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
        command += [sys.executable, script, *arguments, str(count)]
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        run = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
        found = re.search(r"I\s+refs:\s+([\d,]+)", run.stderr)
        if found is None:
            raise RuntimeError(f"no instruction count in valgrind's output:\n{run.stderr[-2000:]}")
        return int(found.group(1).replace(",", ""))

    return (total(count) - total(0)) / count


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=2000, help="per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind")
    options = parser.parse_args()
    logging.disable(logging.CRITICAL)  # uvicorn logs each accepted connection; not what is measured
    import tidings

    source = Path(tidings.__file__).resolve().parent.parent
    if options.instructions:
        count = max(options.connections, 1)
        per_connection = instructions(__file__, ["--rounds", "1", "--connections"], count)
        print(f"{source}: {per_connection:,.0f} instructions per connection ({count} connections)")
        return
    import uvloop

    costs = uvloop.run(measure(options.connections, options.rounds))
    if not costs:
        return
    rounds = " ".join(f"{cost:.0f}" for cost in costs)
    print(f"{source}: {statistics.median(costs):.1f} µs CPU per connection (median; rounds: {rounds})")


if __name__ == "__main__":
    main()
