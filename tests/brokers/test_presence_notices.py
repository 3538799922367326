"""Presence notices over real sockets, memory broker: the joins and leaves of a window reach each
member in one ``presence`` notice (a plain WebSocket as JSON text); past ``presence_max_diff`` the
notice gives the count alone; the answer to ``emit("presence")`` stops at ``presence_max_list``.
Windows of 1 s here, so that the sockets a test moves at once land in one."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from websockets.asyncio.client import connect

import tidings
from tests.brokers.clients import Client, notice, told
from tests.serving import ThreadedServer
from tidings.channels import PresenceBatching

handlers = tidings.Handlers()


@handlers.on("iam")
def iam(request, socket, context, info):  # type: ignore[no-untyped-def]
    socket.presence_info = info


@handlers.websocket("/room")
def room(ws):  # type: ignore[no-untyped-def]
    """A plain WebSocket member of ?channel=...: it says its session id, then stays."""
    ws.subscribe(ws.request.query["channel"])
    ws.send(ws.session_id)
    while ws.receive() is not None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    app = tidings.Server(
        handlers=handlers,
        presence=["^pres-"],
        presence_batch_interval=1.0,
        presence_max_diff=10,
        presence_max_list=5,
    )
    with ThreadedServer(app) as running:
        yield running


async def named(server: ThreadedServer, count: int, prefix: str) -> list[Client]:
    clients = await asyncio.gather(*(Client.connect(server.url) for _ in range(count)))
    await asyncio.gather(*(client.call("iam", {"name": f"{prefix}{n}"}) for n, client in enumerate(clients)))
    return list(clients)


async def watching(server: ThreadedServer, channel: str) -> Client:
    """A member of ``channel`` that has had the notice of its own join."""
    (watcher,) = await named(server, 1, "watcher")
    await watcher.subscribe(channel)
    assert await notice(watcher, channel) == {
        "count": 1,
        "joined": [{"session_id": watcher.session_id, "info": {"name": "watcher0"}}],
        "left": [],
    }
    return watcher


def names(members: list[dict[str, object]]) -> list[str]:
    return sorted(str(member["info"]["name"]) for member in members)  # type: ignore[index]


def test_a_big_channel_gathers_its_changes_for_longer() -> None:
    batching = PresenceBatching(interval=0.05, fanout_rate=20_000, max_diff=100)
    assert batching.window(0) == batching.window(1000) == 0.05
    assert batching.window(10_000) == 0.5  # 10,000 members, a notice every 0.5 s: 20,000 a second


async def test_the_joins_of_a_window_reach_each_member_in_one_notice(server: ThreadedServer) -> None:
    channel = "pres-joins"
    watcher = await watching(server, channel)
    comers = await named(server, 6, "comer")
    await asyncio.gather(*(comer.subscribe(channel) for comer in comers))

    told_watcher = await notice(watcher, channel)
    assert told_watcher["count"] == 7 and told_watcher["left"] == []
    assert names(told_watcher["joined"]) == [f"comer{n}" for n in range(6)]
    # The comers get the same notice (their own join in it): one each, and nothing more.
    assert await notice(comers[3], channel) == told_watcher
    await asyncio.gather(watcher.nothing(1.5), comers[3].nothing(0.1))
    await asyncio.gather(watcher.close(), *(comer.close() for comer in comers))


async def test_a_notice_of_more_than_presence_max_diff_changes_gives_the_count(
    server: ThreadedServer,
) -> None:
    channel = "pres-crowd"
    watcher = await watching(server, channel)
    crowd = await named(server, 12, "crowd")
    await asyncio.gather(*(member.subscribe(channel) for member in crowd))

    assert await notice(watcher, channel) == {"count": 13}
    answer = await watcher.call("presence", channel)  # at most presence_max_list, and the count of all
    assert answer["ok"] is True and answer["count"] == 13 and len(answer["presence"]) == 5
    assert len(await tidings.apresence(channel)) == 13  # the server's own read has no limit
    await asyncio.gather(watcher.close(), *(member.close() for member in crowd))


async def test_a_mass_disconnect_reaches_a_bystander_in_one_notice(server: ThreadedServer) -> None:
    channel = "pres-exodus"
    bystander = await watching(server, channel)
    leavers = await named(server, 8, "leaver")
    await asyncio.gather(*(leaver.subscribe(channel) for leaver in leavers))
    seen = {bystander.session_id: {"name": "watcher0"}}
    everyone = {**seen, **{leaver.session_id: {"name": f"leaver{n}"} for n, leaver in enumerate(leavers)}}
    await told(bystander, channel, everyone, seen)

    await asyncio.gather(*(leaver.close() for leaver in leavers))  # all at once
    gone = await notice(bystander, channel)
    assert gone["count"] == 1 and gone["joined"] == []
    assert names(gone["left"]) == [f"leaver{n}" for n in range(8)]
    await bystander.nothing(1.5)
    await bystander.close()


async def test_a_plain_websocket_member_gets_the_notice_as_json_text(server: ThreadedServer) -> None:
    channel = "pres-plain"
    async with connect(f"ws://127.0.0.1:{server.port}/room?channel={channel}") as plain:
        session_id = await asyncio.wait_for(plain.recv(), 10)
        own = {"count": 1, "joined": [{"session_id": session_id, "info": {}}], "left": []}
        assert json.loads(await asyncio.wait_for(plain.recv(), 10)) == [channel, own]
        (ada,) = await named(server, 1, "ada")
        await ada.subscribe(channel)
        came = {"count": 2, "joined": [{"session_id": ada.session_id, "info": {"name": "ada0"}}], "left": []}
        assert json.loads(await asyncio.wait_for(plain.recv(), 10)) == [channel, came]
        await ada.close()
        went = {"count": 1, "joined": [], "left": [{"session_id": ada.session_id, "info": {"name": "ada0"}}]}
        assert json.loads(await asyncio.wait_for(plain.recv(), 10)) == [channel, went]
