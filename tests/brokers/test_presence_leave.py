"""The members of a node that dies get their ``leave``: three `tidings run` nodes on the machine's Redis
(tests/brokers/app.py: ``pres-*`` channels have presence, and a dead node's entries go after 1.5 s).
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.brokers.clients import Client
from tests.brokers.cluster import running_nodes
from tests.brokers.test_recovery import process


def member(client: Client, name: str) -> dict[str, Any]:
    return {"session_id": client.session_id, "info": {"name": name}}


async def joined(client: Client, name: str, *channels: str) -> Client:
    await client.call("iam", {"name": name})
    for channel in channels:
        await client.subscribe(channel)
    return client


async def events(client: Client, count: int) -> list[list[Any]]:
    return [await client.event() for _ in range(count)]


def in_order(events: list[list[Any]]) -> list[list[Any]]:
    return sorted(events, key=lambda event: (event[1], event[2]["session_id"]))


async def test_the_members_of_a_killed_node_leave_once_on_every_other_node(prefix: str) -> None:
    room, lobby = f"pres-{uuid.uuid4().hex[:8]}", f"pres-{uuid.uuid4().hex[:8]}"
    with running_nodes(prefix, 3) as (doomed, one, other):
        ada = await joined(await Client.connect(one.url), "ada", room, lobby)
        bob = await joined(await Client.connect(other.url), "bob", room)
        cat = await joined(await Client.connect(doomed.url), "cat", room, lobby)
        dan = await joined(await Client.connect(doomed.url), "dan", room)
        # The joins of those who came after each: ada sees bob, cat (twice) and dan; bob, cat and dan.
        assert len(await events(ada, 4)) == 4 and len(await events(bob, 2)) == 2

        process(doomed).kill()
        process(doomed).wait(10)

        leaves = [["leave", room, member(cat, "cat")], ["leave", room, member(dan, "dan")]]
        assert in_order(await events(ada, 3)) == in_order([*leaves, ["leave", lobby, member(cat, "cat")]])
        assert in_order(await events(bob, 2)) == in_order(leaves)
        # Both nodes left go on reaping (every 0.5 s): nobody is told twice.
        await asyncio.gather(ada.nothing(2), bob.nothing(2))
        for client in (ada, bob):
            answer = await client.call("presence", room)
            assert sorted(m["session_id"] for m in answer["presence"]) == sorted(
                [ada.session_id, bob.session_id]
            )
        assert [m["session_id"] for m in (await ada.call("presence", lobby))["presence"]] == [ada.session_id]
        await asyncio.gather(ada.close(), bob.close(), cat.close(), dan.close())


async def test_a_node_taken_for_dead_while_its_loop_was_blocked_enters_its_members_again(prefix: str) -> None:
    room = f"pres-{uuid.uuid4().hex[:8]}"
    with running_nodes(prefix, 2) as (slow, fine):
        bob = await joined(await Client.connect(fine.url), "bob", room)
        ada = await joined(await Client.connect(slow.url), "ada", room)
        assert await bob.event() == ["join", room, member(ada, "ada")]

        await ada.emit("block", 4)  # longer than presence_timeout (1.5 s) and a reaping round after it
        assert await bob.event() == ["leave", room, member(ada, "ada")]
        assert [m["session_id"] for m in (await bob.call("presence", room))["presence"]] == [bob.session_id]
        assert await bob.event() == ["join", room, member(ada, "ada")]  # its next heartbeat
        answer = await bob.call("presence", room)
        assert sorted(m["session_id"] for m in answer["presence"]) == sorted([ada.session_id, bob.session_id])
        await bob.nothing(1)
        await asyncio.gather(ada.close(), bob.close())
