"""What connection state recovery keeps, and its bounds: kept sessions, and the memory broker's packet
log, by count and by age (a clock of the test's own)."""

from __future__ import annotations

from tidings.api.routing import Send, route
from tidings.brokers.memory.sessions import MemorySessions, new_offset
from tidings.channels import HistoryRule, KeptSession, RecoveryRule
from tidings.hub import Hub
from tidings.message import Audience, Outgoing, Position, Subscriber
from tidings.settings import Settings

SESSION = KeptSession("sid-1", "/", ("room",), {"user": "ada"}, {"name": "Ada"})


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def logged(sessions: MemorySessions, message: object, channel: str = "room") -> str:
    outgoing = Outgoing(message, channel)
    outgoing.log_offset = new_offset()
    sessions.append(outgoing, "channel", channel, None)
    return outgoing.log_offset


def test_a_kept_session_is_json_and_only_its_own_json_reads_back() -> None:
    assert KeptSession.from_json(SESSION.to_json()) == SESSION
    for junk in (b"", b"{}", b"[1, 2]", b'["a\\nb", "/", [], {}, {}]', b'["s", "/", [1], {}, {}]', b"\xff"):
        assert KeptSession.from_json(junk) is None


def test_which_packets_were_a_sessions() -> None:
    assert SESSION.addressed("channel", "room", None)
    assert not SESSION.addressed("channel", "room", "sid-1")  # its own broadcast
    assert not SESSION.addressed("channel", "other", None)
    assert SESSION.addressed("group", "/", "sid-2")
    assert not SESSION.addressed("group", "/chat", None)
    assert SESSION.addressed("session", "sid-1", "sid-1")
    assert not SESSION.addressed("session", "sid-2", "sid-2")


def test_which_emits_were_a_sessions() -> None:
    """An emit's audience: its channels and session ids reach a session, its exclusions leave it out,
    whatever route the emit took (several targets, or one channel, session or namespace)."""

    def audience(to: tuple[str, ...] = (), sessions: tuple[str, ...] = (), **leave_out: set[str]) -> Audience:
        channels, ids = leave_out.get("channels", set()), leave_out.get("ids", set())
        return Audience(to, sessions, frozenset(channels), frozenset(ids))

    assert SESSION.addressed("audience", "", None, audience(("room", "other")))
    assert SESSION.addressed("audience", "", None, audience(("other",), ("sid-1",)))
    assert not SESSION.addressed("audience", "", None, audience(("other",), ("sid-2",)))
    assert not SESSION.addressed("audience", "", None, None)
    assert not SESSION.addressed("audience", "", None, audience(("room",), ids={"sid-1"}))
    assert not SESSION.addressed("audience", "", None, audience(("room", "other"), channels={"room"}))
    assert not SESSION.addressed("channel", "room", None, audience(channels={"room"}))
    assert not SESSION.addressed("group", "/", None, audience(channels={"room"}))
    assert SESSION.addressed("group", "/", None, audience(channels={"other"}, ids={"sid-2"}))


def test_the_log_holds_at_most_max_packets() -> None:
    sessions = MemorySessions(RecoveryRule(60, 3), max_sessions=10, clock=Clock())
    offsets = [logged(sessions, number) for number in range(5)]
    assert len(sessions.log) == len(sessions.numbers) == 3
    assert sessions.missed(SESSION, offsets[1]) is None  # dropped
    missed = sessions.missed(SESSION, offsets[2])
    assert missed is not None
    assert [outgoing.message for outgoing in missed[0]] == [3, 4]
    assert missed[1] == offsets[4]


def test_the_log_and_the_sessions_go_with_age() -> None:
    clock = Clock()
    sessions = MemorySessions(RecoveryRule(60, 100), max_sessions=10, clock=clock)
    old = logged(sessions, "old")
    sessions.keep("pid-old", SESSION.to_json())
    clock.now += 61
    recent = logged(sessions, "new")
    assert list(sessions.numbers) == [recent]
    assert sessions.take("pid-old", old) is None
    assert not sessions.kept


def test_kept_sessions_are_at_most_max_sessions_and_taken_once() -> None:
    sessions = MemorySessions(RecoveryRule(60, 100), max_sessions=2, clock=Clock())
    offset = logged(sessions, "m")
    for pid in ("a", "b", "c"):
        sessions.keep(pid, SESSION.to_json())
    assert list(sessions.kept) == ["b", "c"]
    assert sessions.take("a", offset) is None
    assert sessions.take("b", "no such offset") is None  # and it is gone: a pid is taken once
    assert sessions.take("b", offset) is None
    assert sessions.take("c", offset) == SESSION
    assert sessions.take("c", offset) is None


class Member(Subscriber):
    session_id = "member-1"

    def __init__(self) -> None:
        self.subscriptions: dict[str, None] = {}
        self.got: list[Outgoing] = []

    def deliver(self, outgoing: Outgoing) -> None:
        self.got.append(outgoing)


async def test_a_history_replay_carries_no_log_offset() -> None:
    """A channel's history is replayed out of the log's order: its offsets would send the client's
    last offset back in time (and a recovery would hand it again what it had since)."""
    hub = Hub()
    hub.configure(Settings(history=[("^h-", 10, 60)], connection_state_recovery=60))
    member = Member()
    hub.subscribe(member, "h-1")
    send = Send("hello", channel="h-1")
    route(send, hub.broker, lambda hand_over, broker, send: hand_over(broker, send))
    [live] = member.got
    assert live.log_offset is not None and live.position is not None
    recovery = await hub.broker.recover("h-1", HistoryRule(10, 60), Position(0, live.position.epoch))
    [replayed] = recovery.messages
    assert (replayed.message, replayed.position, replayed.log_offset) == ("hello", live.position, None)
