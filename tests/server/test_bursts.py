"""A channel's publishes of one loop iteration reach each WebSocket in one write (a burst): what
every connection receives, and in which order, is what it would receive one message at a time.

Over real sockets, against `tidings run` with its default WebSocket protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from tests.hostile.harness import bystander, server_frames
from tests.hostile.test_transport import engineio_listener
from tests.raw_client import RawClient
from tests.serving import TidingsProcess


@pytest.fixture(scope="module")
def server() -> Iterator[TidingsProcess]:
    running = TidingsProcess("tests/server/apps/bursts.py:app").start()
    yield running
    running.stop()


async def subscribed(server: TidingsProcess, *channels: str) -> RawClient:
    client = await RawClient.connect(server.url)
    for channel in channels:
        assert await client.call("subscribe", channel) == [{"ok": True}]
    return client


async def events(client: RawClient, count: int) -> list[list[object]]:
    return [await client.event() for _ in range(count)]


async def test_each_connection_gets_its_messages_in_the_order_they_were_sent(server: TidingsProcess) -> None:
    """Publishes to two channels, with a direct send between them: a member of both channels (in
    one burst per channel at most, and sent to directly) still gets all of them in order."""
    both = await subscribed(server, "a", "b")
    only_a = await subscribed(server, "a")
    sender = await RawClient.connect(server.url)
    steps = [
        ["publish", 1, "a"],
        ["publish", 2, "b"],
        ["publish", 3, "a"],
        ["send", both.session_id, 4],
        ["publish", 5, "a"],
        ["publish", 6, "b"],
        ["publish", 7, "a"],
    ]
    assert await sender.call("script", steps) == ["done"]
    assert await events(both, 7) == [
        ["message", 1, "a"],
        ["message", 2, "b"],
        ["message", 3, "a"],
        ["message", 4],
        ["message", 5, "a"],
        ["message", 6, "b"],
        ["message", 7, "a"],
    ]
    assert await events(only_a, 4) == [["message", n, "a"] for n in (1, 3, 5, 7)]
    for client in (both, only_a, sender):
        await client.close()


async def test_broadcasts_to_everyone_and_a_channels_publishes_keep_their_order(
    server: TidingsProcess,
) -> None:
    """A namespace's broadcasts make a burst too (of the group): interleaved with a channel's."""
    member = await subscribed(server, "d")
    other = await RawClient.connect(server.url)
    steps = [
        ["publish", 1, "d"],
        ["broadcast", 2],
        ["publish", 3, "d"],
        ["broadcast", 4],
        ["publish", 5, "d"],
    ]
    await other.emit("script", steps, ack_id=3)
    assert [await other.receive() for _ in range(3)] == ['42["message",2]', '42["message",4]', '433["done"]']
    assert await events(member, 5) == [
        ["message", 1, "d"],
        ["message", 2],
        ["message", 3, "d"],
        ["message", 4],
        ["message", 5, "d"],
    ]
    await member.close()
    await other.close()


async def test_a_member_gets_what_was_published_while_it_was_in_the_channel(server: TidingsProcess) -> None:
    """Joining and leaving within one iteration: the burst of the channel's earlier publishes is not
    the later ones'; the ack of the event comes after the messages published before it."""
    member = await subscribed(server, "c")
    joiner = await RawClient.connect(server.url)
    steps = [
        ["publish", 1, "c"],
        ["join", "c"],
        ["publish", 2, "c"],
        ["publish", 3, "c"],
        ["leave", "c"],
        ["publish", 4, "c"],
    ]
    await joiner.emit("script", steps, ack_id=7)
    packets = [await joiner.receive() for _ in range(3)]
    assert packets == ['42["message",2,"c"]', '42["message",3,"c"]', '437["done"]']
    assert await events(member, 4) == [["message", n, "c"] for n in (1, 2, 3, 4)]
    sentinel = await subscribed(server, "c")  # nothing else is on its way to the joiner
    await sentinel.close()
    await member.close()
    await joiner.close()


async def test_a_burst_past_max_buffer_closes_only_the_connection_that_does_not_read(
    server: TidingsProcess,
) -> None:
    """Bursts of 30 messages of 1.5 KB (45 KB, within the app's max_buffer of 64 KiB), 4 MB in all:
    more than the kernel buffers of a member that reads nothing. That member is closed with 1008
    "send buffer full"; the bystander and a reading member of the same channel get every message."""
    async with bystander(server):
        listener = await asyncio.to_thread(engineio_listener, server, "flood")
        reader = await subscribed(server, "flood")
        sender = await RawClient.connect(server.url)
        payload = "x" * 1500
        for burst in range(90):
            steps = [["publish", f"{burst}.{n}.{payload}", "flood"] for n in range(30)]
            assert await sender.call("script", steps) == ["done"]
            got = [event[1] for event in await events(reader, 30)]
            assert got == [f"{burst}.{n}.{payload}" for n in range(30)]

        def close_frame() -> tuple[int, str]:
            data = b""
            while not (closes := [p for opcode, p in server_frames(data) if opcode == 0x8]):
                chunk = listener.recv(65536)
                assert chunk, "closed without a close frame"
                data += chunk
            return int.from_bytes(closes[0][:2], "big"), closes[0][2:].decode()

        listener.settimeout(10)
        assert await asyncio.to_thread(close_frame) == (1008, "send buffer full")
        listener.close()
        await reader.close()
        await sender.close()
