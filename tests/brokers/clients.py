"""A raw Socket.IO client for the broker tests that keeps the events that arrive before an ack."""

from __future__ import annotations

import json
from collections import deque
from typing import Any

from tests.raw_client import RawClient


class Client:
    """:class:`RawClient` with a backlog: with a broker, a broadcast can overtake its sender's ack."""

    def __init__(self, raw: RawClient) -> None:
        self.raw = raw
        self.session_id = raw.session_id
        self.node = raw.session_id.partition(".")[0]
        self.backlog: deque[list[Any]] = deque()
        self._ack_ids = iter(range(1, 1 << 30))

    @classmethod
    async def connect(cls, url: str) -> Client:
        return cls(await RawClient.connect(url))

    async def emit(self, event: str, *args: Any) -> None:
        await self.raw.emit(event, *args)

    async def call(self, event: str, *args: Any, timeout: float = 10) -> Any:
        """Emit with an ack id; the ack's first argument. Events meanwhile go to the backlog."""
        ack_id = next(self._ack_ids)
        await self.raw.emit(event, *args, ack_id=ack_id)
        prefix = f"43{ack_id}"
        while True:
            packet = await self.raw.receive(timeout)
            if packet.startswith("42"):
                self.backlog.append(json.loads(packet[2:]))
            elif packet.startswith(prefix) and packet[len(prefix)] == "[":
                answer = json.loads(packet[len(prefix) :])
                return answer[0] if answer else None

    async def subscribe(self, channel: str, since: dict[str, Any] | None = None) -> dict[str, Any]:
        """Subscribe (recovering after ``since``); the ack, checked to be ok (a channel with history
        adds its position to it)."""
        answer = await self.call("subscribe", channel, *([{"since": since}] if since else []))
        assert isinstance(answer, dict) and answer["ok"] is True, answer
        assert set(answer) <= {"ok", "offset", "epoch", "recovered", "reason"}, answer
        return answer

    async def event(self, timeout: float = 10) -> list[Any]:
        """The next event's ``[name, *args]``."""
        if self.backlog:
            return self.backlog.popleft()
        while True:
            packet = await self.raw.receive(timeout)
            if packet.startswith("42"):
                return json.loads(packet[2:])

    async def messages(self, count: int, timeout: float = 10) -> list[Any]:
        """The arguments of the next ``count`` ``message`` events (after the event name)."""
        got = []
        while len(got) < count:
            event = await self.event(timeout)
            assert event[0] == "message", event
            got.append(event[1:])
        return got

    async def nothing(self, wait: float = 0.3) -> None:
        """Assert that no event arrives within ``wait`` seconds."""
        assert not self.backlog, self.backlog
        try:
            packet = await self.raw.receive(wait)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected packet {packet!r}")

    async def close(self) -> None:
        await self.raw.close()


async def notice(client: Client, channel: str, timeout: float = 10) -> dict[str, Any]:
    """The next event, checked to be a ``presence`` notice of ``channel``: its notice."""
    event = await client.event(timeout)
    assert event[:2] == ["presence", channel] and len(event) == 3, event
    notice: dict[str, Any] = event[2]
    return notice


async def told(
    client: Client, channel: str, expected: dict[str, Any], seen: dict[str, Any] | None = None
) -> int:
    """Read ``client``'s presence notices of ``channel`` into ``seen`` (session id: info; empty at
    first) until it is ``expected``, and each notice's count says so too; how many notices it took.
    The other events that came meanwhile are left for the next reads, in order."""
    seen = {} if seen is None else seen
    notices, count, others = 0, len(seen), []
    while seen != expected or count != len(expected):
        event = await client.event()
        if event[:2] != ["presence", channel]:
            others.append(event)
            continue
        notices += 1
        for member in event[2]["joined"]:
            seen[member["session_id"]] = member["info"]
        for member in event[2]["left"]:
            seen.pop(member["session_id"], None)
        count = event[2]["count"]
    client.backlog.extendleft(reversed(others))
    return notices
