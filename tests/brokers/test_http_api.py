"""The HTTP server API across nodes: two `tidings run` processes share channels through Redis, and the
API of one reaches, counts and disconnects the sockets of the other."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio

from tests.brokers.cluster import REDIS_URL, running_nodes
from tests.raw_client import RawClient
from tests.serving import TidingsProcess

KEY = "the-cluster-api-key"


@pytest.fixture(scope="module")
def nodes(prefix: str) -> Iterator[list[TidingsProcess]]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TIDINGS_API_KEY", KEY)  # the nodes take their api_key from it
        with running_nodes(prefix, 2) as servers:
            yield servers


async def api(node: TidingsProcess, method: str, body: dict[str, object]) -> dict[str, object]:
    async with httpx.AsyncClient(base_url=node.url) as http:
        response = await http.post(f"/api/{method}", json=body, headers={"Authorization": f"apikey {KEY}"})
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()["result"]
    return result


async def test_the_api_of_one_node_reaches_the_sockets_of_the_other(nodes: list[TidingsProcess]) -> None:
    a, b = nodes
    on_b = await RawClient.connect(b.url)
    on_a = await RawClient.connect(a.url)
    try:
        for client in (on_b, on_a):
            assert (await client.call("subscribe", "api-room"))[0]["ok"] is True
        assert (await on_b.call("subscribe", "api-b-only"))[0]["ok"] is True

        assert await api(a, "publish", {"channel": "api-b-only", "data": "to b"}) == {"reached": 1}
        assert await on_b.event() == ["message", "to b", "api-b-only"]
        assert await api(a, "send", {"session_id": on_b.session_id, "data": "you"}) == {"reached": 1}
        assert await on_b.event() == ["message", "you"]
        await api(a, "emit", {"event": "tick", "args": [1], "to": [on_b.session_id, "api-room"]})
        assert [await on_b.event(), await on_a.event()] == [["tick", 1], ["tick", 1]]  # on_b once

        channels = await api(a, "channels", {"prefix": "api-"})
        assert channels == {
            "channels": [
                {"channel": "api-b-only", "subscribers": 1},
                {"channel": "api-room", "subscribers": 2},
            ]
        }
        assert (await on_b.call("subscribe", "pres-api"))[0]["ok"] is True
        assert (await on_b.event())[:2] == ["presence", "pres-api"]  # its own join
        presence = await api(a, "presence", {"channel": "pres-api"})
        assert [member["session_id"] for member in presence["members"]] == [on_b.session_id]  # type: ignore[index]
        for number in range(3):
            await api(b, "publish", {"channel": "hist-api", "data": number})
        history = await api(a, "history", {"channel": "hist-api", "limit": 2})
        assert history["messages"] == [{"offset": 2, "data": 1}, {"offset": 3, "data": 2}]

        assert await api(a, "disconnect", {"session_id": on_b.session_id}) == {"disconnected": 1}
        assert await on_b.receive() == "41"
        channels = await api(b, "channels", {"prefix": "api-"})
        assert channels == {"channels": [{"channel": "api-room", "subscribers": 1}]}
    finally:
        await on_a.close()
        await on_b.close()


async def test_a_node_that_does_not_answer_is_left_out(nodes: list[TidingsProcess], prefix: str) -> None:
    """A third subscriber of the topic every node listens on, that never answers: the count comes from
    the nodes that did, once api_survey_timeout has passed."""
    silent = redis.asyncio.Redis.from_url(REDIS_URL)
    pubsub = silent.pubsub()
    await pubsub.subscribe(f"{prefix}all:nodes")
    confirmed = await pubsub.get_message(timeout=5)
    assert confirmed is not None and confirmed["type"] == "subscribe"
    on_b = await RawClient.connect(nodes[1].url)
    try:
        assert (await on_b.call("subscribe", "api-silent"))[0]["ok"] is True
        channels = await api(nodes[0], "channels", {"prefix": "api-silent"})
        assert channels == {"channels": [{"channel": "api-silent", "subscribers": 1}]}
        question = await pubsub.get_message(timeout=5)
        assert question is not None and question["data"].startswith(b"?")  # it was asked, too
    finally:
        await on_b.close()
        await pubsub.aclose()
        await silent.aclose()
