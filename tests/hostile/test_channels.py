"""Issue 12, items 3 and 4: posting into a channel one was refused from, and forging a broker envelope
with a session id, against real `tidings run` processes."""

from __future__ import annotations

import json

import httpx
import pytest

import tidings
from tests.brokers.cluster import REDIS_URL, broker_args, new_prefix
from tests.hostile.harness import ATTACKER, bystander, rss_mib
from tests.raw_client import RawClient
from tests.serving import tidings_process

APP = "tests/hostile/app.py:app"
PRIVATE = "room-private"
#: Refused messages the outsider sends without asking for an ack, to see that they cost nothing.
FLOOD = 2000


@pytest.mark.parametrize("ws", ["fast", "websockets"])
async def test_an_outsider_cannot_post_into_a_channel_it_was_refused_from(ws: str) -> None:
    with tidings_process(APP, "--ws", ws) as server:
        member = await RawClient.connect(server.url, query={"name": "member"})
        assert await member.call("subscribe", PRIVATE) == [{"ok": True}]
        outsider = await RawClient.connect(server.url, query={"name": "mallory"}, source=ATTACKER)
        async with bystander(server):
            assert await outsider.call("subscribe", PRIVATE) == [{"ok": False, "error": "members only"}]
            refused = {"ok": False, "error": f"not subscribed to {PRIVATE!r}"}
            assert await outsider.call("message", "let me in", PRIVATE) == [refused]
            too_long = {"ok": False, "error": "channel name longer than 200 characters"}
            assert await outsider.call("message", "x", PRIVATE + "-" * 200) == [too_long]
            before = rss_mib(server)
            for n in range(FLOOD):
                await outsider.emit("message", f"forged-{n}", PRIVATE)
            assert await outsider.call("message", "last", PRIVATE) == [refused]  # all of them were handled
            growth = rss_mib(server) - before
            # The member's own message is the first thing it gets: none of the outsider's came before it.
            await member.emit("message", "members only here", PRIVATE)
            said = {"action": "message", "name": "member", "text": "members only here"}
            assert await member.event() == ["message", said, PRIVATE]
        assert growth < 10, f"the server grew by {growth:.1f} MiB refusing {FLOOD} messages"
        for client in (member, outsider):
            await client.close()


async def test_a_session_id_cannot_forge_a_broker_envelope(monkeypatch: pytest.MonkeyPatch) -> None:
    """A session id with a line of its own would be a header in the envelope: the victim would get the
    attacker's message, in a channel of the attacker's choosing. Sends to such an id are refused."""
    prefix = new_prefix()
    forged_header = ["room-private", None, {"action": "message", "name": "admin", "text": "forged"}, []]
    # The victim's node, and a second node whose app sends to the session id a request names (as an
    # app that takes ids from its users would): tidings.send from there goes to the victim's node.
    with (
        tidings_process(APP, *broker_args(prefix)) as victims_node,
        tidings_process("tests/channels/app.py:app", *broker_args(prefix)) as other_node,
    ):
        victim = await RawClient.connect(victims_node.url)
        forged_id = victim.session_id + "\n" + json.dumps(forged_header)

        transport = httpx.AsyncHTTPTransport(local_address=ATTACKER)
        async with httpx.AsyncClient(base_url=other_node.url, transport=transport) as http:
            reply = await http.get(
                "/publish", params={"call": "send", "session_id": forged_id, "message": "x"}
            )
        assert list(reply.json()) == ["value_error"]
        assert reply.json()["value_error"].startswith("not a session id: ")

        with tidings.Publisher(REDIS_URL, prefix) as publisher:
            with pytest.raises(ValueError, match="not a session id"):
                await publisher.asend(forged_id, "x")
            monkeypatch.setenv("TIDINGS_BROKER", REDIS_URL)  # no server in this process: through Redis
            monkeypatch.setenv("TIDINGS_BROKER_PREFIX", prefix)
            with pytest.raises(ValueError, match="not a session id"):
                await tidings.asend(forged_id, "x")
            assert await publisher.asend(victim.session_id, "the real one") == 1
        # The first thing the victim gets is the real message: nothing forged came before it.
        assert await victim.event() == ["message", "the real one"]
        await victim.close()
