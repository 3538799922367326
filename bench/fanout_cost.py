"""What one delivery of a broadcast costs the server, in process: CPU time, or instructions.

Run: .venv/bin/python bench/fanout_cost.py [--subscribers 1000] [--messages 200] [--burst 10]
                                           [--rounds 5] [--instructions]

The suite's fan-out, without sockets: ``--subscribers`` Socket.IO connections go through uvicorn's
HTTP protocol (as `tidings run` guards it) and tidings' own WebSocket protocol over in-memory
transports (``connection_cost.MemoryTransport``), on uvloop, with the suite's app
(apps/tidings_app.py), and each subscribes to the room. A publisher connection then sends
``--messages`` publishes, ``--burst`` of them in each read (as the load generator's window makes them
arrive), and each read is awaited until every subscriber's transport was written every message of it.
What is measured is the Python of the fan-out path: the publish event, the hub's recipient loop, the
per-socket delivery, and the flush of each connection's frames in one write.

- By default it prints the CPU time per delivery of each round and their median (this machine's
  noise reaches it: ±10% from run to run).
- ``--instructions`` runs it under valgrind (cachegrind, no cache simulation) with no message and with
  ``--messages``, and prints the difference per delivery: the same from run to run within ~0.5%.

To compare with another tree, put that tree's ``src`` first on the path:
``PYTHONPATH=OTHER/src .venv/bin/python bench/fanout_cost.py --instructions``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.connection_cost import MemoryTransport, client_frame, open_session, protocol_factory  # noqa: E402
from bench.connection_cost import instructions as connection_instructions  # noqa: E402

SUBSCRIBE = client_frame(0x1, b'421["subscribe","room"]')
PADDING = "x" * 73
WARMUP_BURSTS = 5


class CountingTransport(MemoryTransport):
    """A subscriber's transport: counts the delivery frames written to it (each of them is
    ``frame_size`` bytes) into ``counter``."""

    def __init__(self, loop: asyncio.AbstractEventLoop, counter: Counter) -> None:
        super().__init__(loop)
        self.counter = counter

    def write(self, data: Any) -> None:
        super().write(data)
        self.counter.wrote(len(data))


class Counter:
    """Delivery frames written to every subscriber; resolves ``waiting`` at ``target``."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.counting = False
        self.bytes = 0
        self.frame_size = 1
        self.target = 0
        self.waiting: asyncio.Future[None] | None = None

    def expect(self, deliveries: int) -> asyncio.Future[None]:
        self.target = self.bytes // self.frame_size + deliveries
        self.waiting = self.loop.create_future()
        return self.waiting

    def wrote(self, size: int) -> None:
        if not self.counting:
            return
        self.bytes += size
        if self.waiting is not None and self.bytes // self.frame_size >= self.target:
            self.waiting.set_result(None)
            self.waiting = None


def publish_frame(seq: int) -> bytes:
    message = f"S{seq:010d}T{0:015d}{PADDING}"
    return client_frame(0x1, f'42["publish","{message}"]'.encode())


async def connect(make_protocol: Any, transport: MemoryTransport, subscribe: bool) -> None:
    await open_session(make_protocol, transport)
    if subscribe:
        joined = transport.expect(b"431[")
        transport.protocol.data_received(SUBSCRIBE)
        await joined


async def measure(subscribers: int, messages: int, burst: int, rounds: int) -> list[float]:
    """CPU ns per delivery of each round, after a warm-up."""
    loop = asyncio.get_running_loop()
    make_protocol = protocol_factory()
    counter = Counter(loop)
    for _ in range(subscribers):
        await connect(make_protocol, CountingTransport(loop, counter), subscribe=True)
    publisher = MemoryTransport(loop)
    await connect(make_protocol, publisher, subscribe=False)
    # The delivery frame: 42["message","<100 bytes>","room"] as a text frame with a 2-byte header.
    counter.frame_size = 2 + len('42["message","","room"]') + 100
    counter.counting = True
    seq = 0

    async def bursts(count: int) -> None:
        nonlocal seq
        for _ in range(count):
            frames = b"".join(publish_frame(seq + i) for i in range(burst))
            seq += burst
            arrived = counter.expect(burst * subscribers)
            publisher.protocol.data_received(frames)
            await arrived

    await bursts(WARMUP_BURSTS)
    costs: list[float] = []
    for _ in range(rounds if messages else 0):  # none: the baseline of --instructions
        gc.collect()
        started = time.process_time()
        await bursts(max(1, messages // burst))
        deliveries = max(1, messages // burst) * burst * subscribers
        costs.append((time.process_time() - started) / deliveries * 1e9)
    return costs


def instructions(subscribers: int, messages: int, burst: int) -> float:
    """Instructions per delivery: two runs under cachegrind, without and with the messages."""
    arguments = ["--subscribers", str(subscribers), "--burst", str(burst), "--rounds", "1", "--messages"]
    deliveries = max(1, messages // burst) * burst * subscribers
    return connection_instructions(__file__, arguments, messages) * messages / deliveries


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--subscribers", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=200, help="per round")
    parser.add_argument("--burst", type=int, default=10, help="publishes in one read")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind")
    options = parser.parse_args()
    logging.disable(logging.CRITICAL)  # uvicorn logs each accepted connection; not what is measured
    import tidings

    source = Path(tidings.__file__).resolve().parent.parent
    if options.instructions:
        count = max(options.messages, options.burst)
        cost = instructions(options.subscribers, count, options.burst)
        print(
            f"{source}: {cost:,.0f} instructions per delivery "
            f"({options.subscribers} subscribers, {count} messages in reads of {options.burst})"
        )
        return
    import uvloop

    costs = uvloop.run(measure(options.subscribers, options.messages, options.burst, options.rounds))
    if not costs:
        return
    rounds = " ".join(f"{cost:.0f}" for cost in costs)
    print(f"{source}: {statistics.median(costs):.0f} ns CPU per delivery (median; rounds: {rounds})")


if __name__ == "__main__":
    main()
