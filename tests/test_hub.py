"""The hub on its own: membership, fan-out, encode-once caching, and sends with no server running."""

from __future__ import annotations

import asyncio
import threading

import pytest

import tidings
from tidings.brokers import MemoryBroker
from tidings.channels import check_session_id
from tidings.hub import Hub
from tidings.message import Burst, Outgoing, Subscriber


class Recorder(Subscriber):
    """A subscriber that keeps what it is handed, in the wire form "text"."""

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        self.subscriptions: dict[str, None] = {}
        self.got: list[str] = []

    def deliver(self, outgoing: Outgoing) -> None:
        self.got.append(outgoing.encoded("text", lambda o: f"{o.message}@{o.channel}"))


def test_publish_reaches_members_but_the_excluded_one() -> None:
    hub = Hub()
    a, b, c = Recorder("a"), Recorder("b"), Recorder("c")
    for subscriber in (a, b, c):
        hub.join(subscriber, "/")
    assert hub.subscribe(a, "room") and hub.subscribe(b, "room")
    assert not hub.subscribe(a, "room")  # already in
    assert hub.publish(Outgoing("hi", "room"), exclude=a) == 1
    assert (a.got, b.got, c.got) == ([], ["hi@room"], [])
    assert hub.broadcast(Outgoing("all"), "/") == 3
    assert hub.send(Outgoing("you"), "c") == 1
    assert hub.send(Outgoing("nobody"), "zz") == 0
    assert c.got == ["all@None", "you@None"]


def test_leave_takes_a_subscriber_out_of_everything_in_join_order() -> None:
    hub = Hub()
    a = Recorder("a")
    hub.join(a, "/")
    for channel in ("z", "a", "m"):
        hub.subscribe(a, channel)
    assert hub.leave(a, "/") == ["z", "a", "m"]
    assert (hub.sessions, hub.groups, hub.channels, a.subscriptions) == ({}, {}, {}, {})
    assert hub.publish(Outgoing("x", "z")) == 0
    assert not hub.unsubscribe(a, "z")


def test_an_outgoing_message_is_encoded_once_per_wire_form() -> None:
    calls = []

    def encode(outgoing: Outgoing, suffix: str) -> str:
        calls.append(suffix)
        return f"{outgoing.message}{suffix}"

    outgoing = Outgoing("m")
    assert [outgoing.encoded("form-1", encode, "!") for _ in range(3)] == ["m!"] * 3
    assert outgoing.encoded("form-2", encode, "?") == "m?"
    assert calls == ["!", "?"]


def test_a_delivery_that_drops_a_member_does_not_break_the_fan_out() -> None:
    hub = Hub()

    class Dropper(Recorder):
        def deliver(self, outgoing: Outgoing) -> None:
            hub.leave(self, "/")  # what a full send buffer does: the session closes

    members = [Dropper("d1"), Recorder("r"), Dropper("d2")]
    for member in members:
        hub.join(member, "/")
        hub.subscribe(member, "room")
    assert hub.publish(Outgoing("x", "room")) == 3
    assert members[1].got == ["x@room"]
    assert list(hub.channels["room"]) == [members[1]]


class BurstTaker(Recorder):
    """A subscriber that takes bursts (as a WebSocket session does): what it is written, write by write."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.writes: list[bytes] = []

    def take_burst(self, burst: Burst) -> bool:
        burst.join(self, self, "text", lambda outgoing, _: f"{outgoing.message}|".encode(), "")
        return True

    def write_burst(self, data: bytes) -> None:
        self.writes.append(data)


async def test_a_channels_publishes_of_one_iteration_reach_a_burst_taker_in_one_write() -> None:
    hub = Hub()
    hub.bind_loop()
    taker, follower = BurstTaker("t"), Recorder("f")
    for member in (taker, follower):
        hub.join(member, "/")
        hub.subscribe(member, "room")
    assert [hub.publish(Outgoing(n, "room")) for n in range(3)] == [2, 2, 2]
    assert follower.got == ["0@room", "1@room", "2@room"]  # handed each as it comes
    assert taker.writes == []  # nothing before the end of the loop iteration
    await asyncio.sleep(0)
    assert taker.writes == [b"0|1|2|"]
    assert taker.got == []
    assert (hub.broadcasts, hub.deliveries) == (3, 6)

    late = Recorder("late")
    hub.publish(Outgoing(3, "room"))
    hub.subscribe(late, "room")  # a new member: the next publish makes a new burst
    hub.publish(Outgoing(4, "room"))
    await asyncio.sleep(0)
    assert taker.writes[1:] == [b"3|", b"4|"]
    assert late.got == ["4@room"]

    assert [hub.broadcast(Outgoing(n), "/") for n in (5, 6)] == [2, 2]  # a group's burst
    await asyncio.sleep(0)
    assert taker.writes[3:] == [b"5|6|"]
    assert follower.got[-2:] == ["5@None", "6@None"]


async def test_a_burst_encodes_each_message_once_for_its_form_whoever_leaves_it() -> None:
    hub = Hub()
    hub.bind_loop()
    encoded: list[object] = []
    bursts: list[Burst] = []

    def encode(outgoing: Outgoing, namespace: str) -> bytes:
        encoded.append(outgoing.message)
        return f"{outgoing.message}|".encode()

    class Taker(BurstTaker):
        def take_burst(self, burst: Burst) -> bool:
            burst.join(self, self, "text", encode, "")
            bursts.append(burst)
            return True

    stays, leaves = Taker("stays"), Taker("leaves")
    for member in (stays, leaves):
        hub.join(member, "/")
        hub.subscribe(member, "room")
    hub.publish(Outgoing(0, "room"))
    hub.publish(Outgoing(1, "room"))
    assert bursts[0].leave(leaves, "text") == b"0|1|"  # what a send to it first does
    assert bursts[0].leave(leaves, "text") == b""  # out already
    hub.publish(Outgoing(2, "room"))
    await asyncio.sleep(0)
    assert stays.writes == [b"0|1|2|"]
    assert (leaves.writes, leaves.got) == ([], ["2@room"])
    assert encoded == [0, 1, 2]


@pytest.mark.parametrize(
    "send",
    [
        lambda: tidings.broadcast("x"),
        lambda: tidings.broadcast_channel("x", "room"),
        lambda: tidings.send("some-session", "x"),
    ],
)
def test_out_of_band_sends_without_a_running_server_raise_no_socket(send) -> None:
    with pytest.raises(tidings.NoSocket, match="no tidings server is running"):
        send()


@pytest.mark.parametrize(
    ("send", "error"),
    [
        (lambda: tidings.broadcast_channel("x", ""), "channel must not be empty"),
        (lambda: tidings.broadcast_channel("x", None), "channel must be a string"),
        (lambda: tidings.broadcast_channel("x", "r" * 201), "longer than 200"),
        (lambda: tidings.send("node.id\n[null,null,1,[]]", "x"), "not a session id"),
        (lambda: tidings.send("", "x"), "not a session id"),
        (lambda: tidings.send(None, "x"), "not a session id"),
    ],
)
def test_out_of_band_sends_refuse_what_is_no_channel_or_session_id(send, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        send()


@pytest.mark.parametrize(
    "session_id", ["abc", "node1234.0123456789abcdefghij", "A-_." * 16, "x" * 65, "a b", "a:b", "é", "a\n"]
)
def test_session_ids_are_letters_digits_and_three_marks(session_id: str) -> None:
    valid = len(session_id) <= 64 and all(c.isascii() and (c.isalnum() or c in "-_.") for c in session_id)
    assert (check_session_id(session_id) is None) is valid


def test_a_message_json_cannot_hold_fails_at_the_caller() -> None:
    with pytest.raises(TypeError):
        tidings.broadcast_channel({1, 2}, "room")


def test_a_call_from_another_thread_waits_loop_call_timeout_for_a_blocked_loop() -> None:
    hub = Hub()
    hub.configure(tidings.Settings(loop_call_timeout=0.05))
    loop = asyncio.new_event_loop()
    bound, release = threading.Event(), threading.Event()

    async def blocking() -> None:
        hub.bind_loop()
        bound.set()
        release.wait()  # the loop runs nothing else meanwhile

    thread = threading.Thread(target=loop.run_until_complete, args=(blocking(),))
    thread.start()
    try:
        assert bound.wait(10)
        with pytest.raises(tidings.NoSocket, match=r"did not answer within 0\.05s"):
            hub.call(len, "x")
    finally:
        release.set()
        thread.join()
        hub.unbind()
        loop.close()


def test_the_settings_reach_a_broker_put_in_after_them() -> None:
    class Configured(MemoryBroker):
        settings: tidings.Settings | None = None

        def configure(self, settings: tidings.Settings) -> None:
            self.settings = settings

    hub, first, second = Hub(Configured()), Configured(), Configured()
    hub.use_broker(first)
    settings = tidings.Settings(max_channel_length=50, history=[("h-", 10, 60.0)])
    hub.configure(settings)
    hub.use_broker(second)  # what `tidings run --broker` does after the app made its server
    assert (first.settings, second.settings) == (settings, settings)
    assert second.options is hub.options and hub.options.history("h-1") is not None
    assert (hub.max_channel_length, hub.call_timeout) == (50, settings.loop_call_timeout)
