"""What one long-poll costs the server, in process: CPU time, or instructions.

Run: .venv/bin/python bench/polling_cost.py [--clients 100] [--messages 100] [--rounds 5] [--instructions]

`--clients` Engine.IO long-polling clients of the suite's app (apps/tidings_app.py), subscribed to its
room, each on a kept-alive connection through uvicorn's HTTP protocol as `tidings run` guards it, over an
in-memory transport, on uvloop. A publisher (one more polling client) then posts `--messages`
messages, one at a time: each is a response to every client's pending GET, and the client's next GET.
That poll cycle (the broadcast's delivery to the client included) is what is measured, as in the
suite's long-polling latency phase at a low rate, where every message is a poll cycle of its own. No
socket, kernel or load generator is involved. As bench/connection_cost.py: CPU time per poll of each
round and their median, or with ``--instructions`` the instructions per poll under valgrind, the same
from run to run within ~0.5%. Compare trees by putting the other's ``src`` first on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.connection_cost import MemoryTransport, instructions, protocol_factory  # noqa: E402

PATH = b"/socket.io/?EIO=4&transport=polling"
WARMUP = 20


class Client:
    """One polling client on its own kept-alive connection: a request, and its response's body."""

    def __init__(self, make_protocol: Any, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = RecordingTransport(loop)
        self.transport.protocol = make_protocol(_loop=loop)
        self.transport.protocol.connection_made(self.transport)
        self.query = b""

    def request(self, method: bytes, body: bytes = b"") -> asyncio.Future[bytes]:
        answered = self.transport.next_response()
        length = (
            b"Content-Length: %d\r\nContent-Type: text/plain\r\n" % len(body) if method == b"POST" else b""
        )
        head = b"%s %s%s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s\r\n" % (method, PATH, self.query, length)
        self.transport.protocol.data_received(head + body)
        return answered

    async def open(self, subscribe: bool) -> None:
        opened = await self.request(b"GET")
        self.query = b"&sid=" + json.loads(opened[1:])["sid"].encode()
        await self.request(b"POST", b"40")
        assert (await self.request(b"GET")).startswith(b"40")
        if subscribe:
            await self.request(b"POST", b'421["subscribe","room"]')
            assert (await self.request(b"GET")).startswith(b"431")


class RecordingTransport(MemoryTransport):
    """A MemoryTransport that hands each whole response's body to the future of its request."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(loop)
        self.received = b""
        self.answered: asyncio.Future[bytes] | None = None

    def next_response(self) -> asyncio.Future[bytes]:
        self.answered = self.loop.create_future()
        return self.answered

    def write(self, data: Any) -> None:
        self.received += bytes(data)
        head, found, body = self.received.partition(b"\r\n\r\n")
        if not found:
            return
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        if len(body) >= length and self.answered is not None:
            self.received = body[length:]
            answered, self.answered = self.answered, None
            answered.set_result(body[:length])


async def polls(clients: list[Client], publisher: Client, messages: int) -> None:
    """`messages` rounds: every client's GET waits, one message is published, every GET is answered."""
    for _ in range(messages):
        waiting = [client.request(b"GET") for client in clients]
        await asyncio.sleep(0)
        await publisher.request(b"POST", b'42["publish","' + b"x" * 100 + b'"]')
        for body in await asyncio.gather(*waiting):
            assert b'42["message"' in body, body


async def measure(count: int, messages: int, rounds: int) -> list[float]:
    """CPU µs per poll of each round, after a warm-up."""
    loop = asyncio.get_running_loop()
    make_protocol = protocol_factory()
    clients = [Client(make_protocol, loop) for _ in range(count)]
    for client in clients:
        await client.open(subscribe=True)
    publisher = Client(make_protocol, loop)
    await publisher.open(subscribe=False)
    await polls(clients, publisher, WARMUP)
    costs: list[float] = []
    for _ in range(rounds if messages else 0):  # none: the baseline of --instructions
        gc.collect()
        started = time.process_time()
        await polls(clients, publisher, messages)
        costs.append((time.process_time() - started) / (count * messages) * 1e6)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--messages", type=int, default=100, help="per round (0: set up only)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind")
    options = parser.parse_args()
    logging.disable(logging.CRITICAL)
    import tidings

    source = Path(tidings.__file__).resolve().parent.parent
    if options.instructions:
        arguments = ["--clients", str(options.clients), "--rounds", "1", "--messages"]
        per_poll = instructions(__file__, arguments, options.messages) / options.clients
        print(f"{source}: {per_poll:,.0f} instructions per poll ({options.clients} clients)")
        return
    import uvloop

    costs = uvloop.run(measure(options.clients, options.messages, options.rounds))
    if not costs:
        return
    rounds = " ".join(f"{cost:.1f}" for cost in costs)
    print(f"{source}: {statistics.median(costs):.1f} µs CPU per poll (median; rounds: {rounds})")


if __name__ == "__main__":
    main()
