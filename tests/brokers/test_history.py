"""History, recovery and presence in one process: the sans-I/O rules, then the memory broker serving
real clients."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

import tidings
from tests.brokers.clients import Client, notice, told
from tests.serving import ThreadedServer
from tidings.brokers.memory.history import MemoryHistory
from tidings.channels import EPOCH_CHANGED, TRIMMED, ChannelOptions, HistoryRule
from tidings.message import Outgoing, Position

handlers = tidings.Handlers()


@handlers.on("publish")
def publish(request, socket, context, channel, message):  # type: ignore[no-untyped-def]
    return tidings.broadcast_channel(message, channel)


@handlers.on("iam")
def iam(request, socket, context, info):  # type: ignore[no-untyped-def]
    socket.presence_info = info


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    app = tidings.Server(handlers=handlers, history=[("^hist-", 5, 60)], presence=["^pres-"])
    with ThreadedServer(app) as running:
        yield running


def test_the_ring_buffer_recovers_in_order_or_says_why_not() -> None:
    history, rule = MemoryHistory(), HistoryRule(3, 60)
    start = history.recover("c", rule, None)
    assert start.position.offset == 0 and start.messages == [] and start.reason is None
    positions = [history.append(Outgoing(n, "c"), rule) for n in range(5)]
    assert [p.offset for p in positions] == [1, 2, 3, 4, 5]
    assert {p.epoch for p in positions} == {start.position.epoch}  # reading started the history

    recovery = history.recover("c", rule, positions[1])
    assert ([o.message for o in recovery.messages], recovery.position) == ([2, 3, 4], positions[4])
    assert history.recover("c", rule, positions[4]).messages == []  # nothing missed
    assert history.recover("c", rule, positions[0]).reason == TRIMMED  # offset 2 is gone
    assert history.recover("c", rule, Position(2, "other")).reason == EPOCH_CHANGED
    assert history.recover("c", rule, Position(9, positions[0].epoch)).reason == EPOCH_CHANGED


def test_the_ttl_starts_a_new_epoch() -> None:
    history, rule = MemoryHistory(), HistoryRule(3, 0.01)
    first = history.append(Outgoing("a", "c"), rule)
    assert Position.parse(first.wire()) == first
    history.streams["c"].expires = 0  # expired
    again = history.append(Outgoing("b", "c"), rule)
    assert again.offset == 1 and again.epoch != first.epoch
    assert history.recover("c", rule, first).reason == EPOCH_CHANGED


def test_options_match_the_first_rule_and_are_checked() -> None:
    options = ChannelOptions([("^a-", 2, 5), ("^a", 9, 9)], ["^p-"])
    assert options.history("a-1") == HistoryRule(2, 5) and options.history("ab") == HistoryRule(9, 9)
    assert options.history("b") is None and options.presence("p-1") and not options.presence("a-1")
    assert not ChannelOptions().any
    assert ChannelOptions.from_json(options.to_json()).history("a-1") == HistoryRule(2, 5)
    with pytest.raises(ValueError, match="history"):
        tidings.Settings(history=[("^x", 0, 5)])
    with pytest.raises(ValueError, match="presence"):
        tidings.Settings(presence=[3])  # type: ignore[list-item]


async def test_a_client_that_comes_back_recovers_what_it_missed(server: ThreadedServer) -> None:
    channel = "hist-memory"
    stays, leaves = await asyncio.gather(Client.connect(server.url), Client.connect(server.url))
    await stays.subscribe(channel)
    answer = await leaves.call("subscribe", channel)
    assert answer["ok"] and answer["offset"] == 0
    epoch = answer["epoch"]
    await stays.call("publish", channel, "one")
    assert await leaves.messages(1) == [["one", channel, {"offset": 1, "epoch": epoch}]]
    await leaves.close()
    for n in range(3):
        await stays.call("publish", channel, n)

    back = await Client.connect(server.url)
    since = {"offset": 1, "epoch": epoch}
    assert await back.call("subscribe", channel, {"since": since}) == {
        "ok": True,
        "offset": 4,
        "epoch": epoch,
        "recovered": True,
    }
    assert [event[1] for event in back.backlog] == [0, 1, 2]  # before the ack, in order
    back.backlog.clear()
    await stays.call("publish", channel, "live")
    assert await back.messages(1) == [["live", channel, {"offset": 5, "epoch": epoch}]]

    await stays.call("publish", channel, "sixth")
    assert await back.messages(1) == [["sixth", channel, {"offset": 6, "epoch": epoch}]]
    late = await Client.connect(server.url)  # missed more than the history holds (5)
    answer = await late.call("subscribe", channel, {"since": {"offset": 0, "epoch": epoch}})
    assert (answer["recovered"], answer["reason"], answer["offset"]) == (False, TRIMMED, 6)
    other = await Client.connect(server.url)
    answer = await other.call("subscribe", channel, {"since": {"offset": 3, "epoch": "gone"}})
    assert (answer["recovered"], answer["reason"]) == (False, EPOCH_CHANGED)
    assert not late.backlog and not other.backlog
    plain = await Client.connect(server.url)  # a channel without history: told so, no third argument
    answer = await plain.call("subscribe", "plain", {"since": since})
    assert answer == {"ok": True, "recovered": False, "reason": "no history for this channel"}
    await plain.call("publish", "plain", "x")
    assert await plain.messages(1) == [["x", "plain"]]
    assert (await plain.call("subscribe", "hist-2", {"since": 3}))["ok"] is False
    await asyncio.gather(*(c.close() for c in (stays, back, late, other, plain)))


async def test_presence_join_and_leave(server: ThreadedServer) -> None:
    channel = "pres-memory"
    ada, bob = await asyncio.gather(Client.connect(server.url), Client.connect(server.url))
    await ada.call("iam", {"name": "ada"})
    await bob.call("iam", {"name": "bob"})
    await ada.subscribe(channel)
    await bob.subscribe(channel)
    both = {ada.session_id: {"name": "ada"}, bob.session_id: {"name": "bob"}}
    await told(ada, channel, both)
    answer = await bob.call("presence", channel)
    assert answer["ok"] and sorted(m["info"]["name"] for m in answer["presence"]) == ["ada", "bob"]
    assert answer["count"] == 2
    assert len(await tidings.apresence(channel)) == 2
    assert await asyncio.to_thread(tidings.presence, channel) == answer["presence"]
    with pytest.raises(ValueError):
        await tidings.apresence("no-presence")
    assert (await ada.call("presence", "pres-other"))["error"] == "not subscribed to 'pres-other'"
    await bob.close()
    left = await notice(ada, channel)
    assert left == {
        "count": 1,
        "joined": [],
        "left": [{"session_id": bob.session_id, "info": {"name": "bob"}}],
    }
    assert [m["session_id"] for m in (await ada.call("presence", channel))["presence"]] == [ada.session_id]
    await ada.close()
