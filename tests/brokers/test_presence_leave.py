"""Presence across `tidings run` nodes on the machine's Redis (tests/brokers/app.py: ``pres-*`` channels
have presence, notices gathered for 0.5 s, and a dead node's entries go after 1.5 s): the joins and
leaves of one node reach the members of another in one notice, and so do those of a node that dies.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from tests.brokers.clients import Client, notice, told
from tests.brokers.cluster import running_nodes
from tests.brokers.test_recovery import process


def member(client: Client, name: str) -> dict[str, Any]:
    return {"session_id": client.session_id, "info": {"name": name}}


def view(*members: tuple[Client, str]) -> dict[str, Any]:
    return {client.session_id: {"name": name} for client, name in members}


async def joined(client: Client, name: str, *channels: str) -> Client:
    await client.call("iam", {"name": name})
    for channel in channels:
        await client.subscribe(channel)
    return client


def names(members: list[dict[str, Any]]) -> list[str]:
    return sorted(m["info"]["name"] for m in members)


async def test_the_joins_and_leaves_on_one_node_reach_another_s_members_in_one_notice(prefix: str) -> None:
    room = f"pres-{uuid.uuid4().hex[:8]}"
    with running_nodes(prefix, 2) as (busy, quiet):
        watcher = await joined(await Client.connect(quiet.url), "watcher", room)
        assert await notice(watcher, room) == {"count": 1, "joined": [member(watcher, "watcher")], "left": []}
        comers = await asyncio.gather(*(Client.connect(busy.url) for _ in range(6)))
        await asyncio.gather(*(joined(comer, f"comer{n}") for n, comer in enumerate(comers)))
        await asyncio.gather(*(comer.subscribe(room) for comer in comers))  # at once

        came = await notice(watcher, room)
        assert came["count"] == 7 and came["left"] == []
        assert names(came["joined"]) == [f"comer{n}" for n in range(6)]
        await watcher.nothing(1)
        answer = await watcher.call("presence", room)  # presence_max_list of them, and the count
        assert answer["ok"] is True and len(answer["presence"]) == 3 and answer["count"] == 7
        assert len(await watcher.call("whois", room)) == 7  # the server's own read has no limit

        await asyncio.gather(*(comer.close() for comer in comers))  # all at once
        went = await notice(watcher, room)
        assert went["count"] == 1 and went["joined"] == []
        assert names(went["left"]) == [f"comer{n}" for n in range(6)]
        await watcher.nothing(1)
        await watcher.close()


async def test_the_members_of_a_killed_node_leave_once_on_every_other_node(prefix: str) -> None:
    room, lobby = f"pres-{uuid.uuid4().hex[:8]}", f"pres-{uuid.uuid4().hex[:8]}"
    with running_nodes(prefix, 3) as (doomed, one, other):
        ada = await joined(await Client.connect(one.url), "ada", room, lobby)
        bob = await joined(await Client.connect(other.url), "bob", room)
        cat = await joined(await Client.connect(doomed.url), "cat", room, lobby)
        dan = await joined(await Client.connect(doomed.url), "dan", room)
        everyone = view((ada, "ada"), (bob, "bob"), (cat, "cat"), (dan, "dan"))
        await told(ada, room, everyone)
        await told(ada, lobby, view((ada, "ada"), (cat, "cat")))
        await told(bob, room, everyone)

        process(doomed).kill()
        process(doomed).wait(10)

        # The reaping node tells each channel once, in one notice for all its members that died.
        notices = {event[1]: event[2] for event in [await ada.event(), await ada.event()]}
        assert sorted(notices) == sorted([room, lobby])
        assert notices[room]["count"] == 2 and names(notices[room]["left"]) == ["cat", "dan"]
        assert notices[lobby] == {"count": 1, "joined": [], "left": [member(cat, "cat")]}
        assert await notice(bob, room) == notices[room]
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
        await told(bob, room, view((ada, "ada"), (bob, "bob")))

        await ada.emit("block", 4)  # longer than presence_timeout (1.5 s) and a reaping round after it
        assert await notice(bob, room) == {"count": 1, "joined": [], "left": [member(ada, "ada")]}
        assert [m["session_id"] for m in (await bob.call("presence", room))["presence"]] == [bob.session_id]
        # Its next heartbeat:
        assert await notice(bob, room) == {"count": 2, "joined": [member(ada, "ada")], "left": []}
        answer = await bob.call("presence", room)
        assert sorted(m["session_id"] for m in answer["presence"]) == sorted([ada.session_id, bob.session_id])
        await bob.nothing(1)
        await asyncio.gather(ada.close(), bob.close())
