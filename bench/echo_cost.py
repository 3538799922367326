"""What one echo round trip costs the server, in process: CPU time, or instructions.

Run: .venv/bin/python bench/echo_cost.py [--handler async|def] [--events 5000] [--rounds 5] [--instructions]

One connection, made as `connection_cost.py` makes them (uvicorn's HTTP protocol as `tidings run`
guards it, tidings' own WebSocket protocol, an in-memory transport, uvloop, the suite's app), sends
`42<id>["echo",<100 bytes>]` (or `"echo_def"`, answered by a ``def`` handler in the thread pool) and
waits for its ack before it sends the next: the suite's echo measure, one client, one round trip in
flight. No socket, kernel or load generator is involved.

- By default it prints the CPU time per round trip of each round and their median (this machine's
  noise reaches it).
- ``--instructions`` runs it under valgrind (cachegrind, no cache simulation) with no event and with
  ``--events``, and prints the difference per round trip: the instructions the CPU ran, in every
  thread. Valgrind runs one thread at a time, so the ``def`` handler's thread hops are counted but
  not their wake-up latency.

To compare with another tree, put that tree's ``src`` first on the path:
``PYTHONPATH=OTHER/src .venv/bin/python bench/echo_cost.py --instructions``.
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

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.connection_cost import MemoryTransport, open_session, protocol_factory  # noqa: E402
from bench.connection_cost import instructions as connection_instructions  # noqa: E402

EVENTS = {"async": "echo", "def": "echo_def"}
PAYLOAD = "x" * 100
WARMUP = 500


async def connect(loop: asyncio.AbstractEventLoop) -> MemoryTransport:
    transport = MemoryTransport(loop)
    await open_session(protocol_factory(), transport)
    return transport


def event_frame(event: str, ack: int) -> bytes:
    """The client's text frame of ``42<ack>["<event>",<payload>]``, masked with a zero key (RFC 6455
    §5.3): its payload as it is, so that the client costs nothing to speak of."""
    payload = f'42{ack}["{event}","{PAYLOAD}"]'.encode()
    assert len(payload) < 126
    return bytes((0x81, 0x80 | len(payload), 0, 0, 0, 0)) + payload


async def echoes(transport: MemoryTransport, event: str, first: int, count: int) -> None:
    """``count`` round trips, one at a time, with ack ids from ``first`` on."""
    for ack in range(first, first + count):
        answered = transport.expect(b"43%d[" % ack)
        transport.protocol.data_received(event_frame(event, ack))
        await answered


async def measure(handler: str, events: int, rounds: int) -> list[float]:
    """CPU µs per round trip of each round, after a warm-up."""
    loop = asyncio.get_running_loop()
    transport = await connect(loop)
    event = EVENTS[handler]
    await echoes(transport, event, 0, WARMUP)
    costs: list[float] = []
    sent = WARMUP
    for _ in range(rounds if events else 0):  # none: the baseline of --instructions
        gc.collect()
        started = time.process_time()
        await echoes(transport, event, sent, events)
        sent += events
        costs.append((time.process_time() - started) / events * 1e6)
    return costs


def instructions(handler: str, events: int) -> float:
    """Instructions per round trip: two runs under cachegrind, without and with the events."""
    return connection_instructions(__file__, ["--handler", handler, "--rounds", "1", "--events"], events)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--handler", choices=sorted(EVENTS), default="async", help="the echo handler")
    parser.add_argument("--events", type=int, default=5000, help="round trips per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind")
    options = parser.parse_args()
    logging.disable(logging.CRITICAL)
    import tidings

    source = Path(tidings.__file__).resolve().parent.parent
    handler = f"{options.handler} def handler" if options.handler == "async" else "def handler"
    if options.instructions:
        count = max(options.events, 1)
        print(f"{source}: {instructions(options.handler, count):,.0f} instructions per echo, {handler}")
        return
    import uvloop

    costs = uvloop.run(measure(options.handler, options.events, options.rounds))
    if not costs:
        return
    rounds = " ".join(f"{cost:.1f}" for cost in costs)
    print(f"{source}: {statistics.median(costs):.1f} µs CPU per echo, {handler} (median; rounds: {rounds})")


if __name__ == "__main__":
    main()
