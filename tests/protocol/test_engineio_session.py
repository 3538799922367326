"""The Engine.IO session state machine, driven by packets and a fake clock (plain floats).

Spec: https://socket.io/docs/v4/engine-io-protocol/, EIO §"Heartbeat" and §"Upgrade".
"""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from tidings.errors import IllegalTransition
from tidings.protocol import ProtocolError
from tidings.protocol import engineio as eio
from tidings.protocol.engineio import (
    TRANSITIONS,
    Due,
    Packet,
    PacketType,
    Received,
    Session,
    State,
    Step,
    Timing,
)

TIMING = Timing(ping_interval=25.0, ping_timeout=20.0, upgrade_timeout=10.0)
START = 1000.0


def polling_session() -> Session:
    return Session("sid", "polling", TIMING, START)


def pong() -> Packet:
    return eio.decode_packet(eio.PONG)


# -- heartbeat (EIO §"Heartbeat") ------------------------------------------------------------------


def test_first_ping_is_due_one_interval_after_the_handshake() -> None:
    session = polling_session()
    assert session.next_deadline() == START + 25.0
    assert session.on_deadline(START + 24.0) is Due.NOTHING
    assert session.on_deadline(START + 25.0) is Due.PING


def test_after_a_ping_its_pong_is_due_within_ping_timeout() -> None:
    session = polling_session()
    assert session.on_deadline(START + 25.0) is Due.PING
    assert session.next_deadline() == START + 25.0 + 20.0
    assert session.on_deadline(START + 44.0) is Due.NOTHING


def test_silence_after_a_ping_is_a_ping_timeout() -> None:
    session = polling_session()
    assert session.on_deadline(START + 25.0) is Due.PING
    assert session.on_deadline(START + 45.0) is Due.PING_TIMEOUT
    assert session.state is State.OPEN  # the caller closes it, with that reason
    assert Due.PING_TIMEOUT.value == "ping timeout"


def test_answering_pings_keeps_the_session() -> None:
    session = polling_session()
    for _ in range(10):  # ten intervals: far past one ping timeout
        ping_at = session.next_deadline()
        assert session.on_deadline(ping_at) is Due.PING
        assert session.next_deadline() == ping_at + 20.0  # its PONG's deadline
        assert session.receive(pong()) is Received.PONG
        session.pong(ping_at + 3.0)
        assert session.next_deadline() == ping_at + 3.0 + 25.0  # the next PING: an interval after the PONG
        # A timer still set for the PONG's deadline would wake for nothing.
        assert session.on_deadline(ping_at + 20.0) is Due.NOTHING
    assert session.state is State.OPEN


def test_an_unasked_pong_puts_the_next_ping_off() -> None:
    # As the reference server: every PONG starts the interval to the next PING.
    session = polling_session()
    assert session.receive(pong()) is Received.PONG
    session.pong(START + 10.0)
    assert session.next_deadline() == START + 35.0
    assert session.on_deadline(START + 25.0) is Due.NOTHING
    assert session.on_deadline(START + 35.0) is Due.PING


def test_one_ping_at_a_time_even_with_a_ping_timeout_longer_than_the_interval() -> None:
    timing = Timing(ping_interval=25.0, ping_timeout=30.0, upgrade_timeout=10.0)
    session = Session("sid", "polling", timing, START)
    assert session.on_deadline(START + 25.0) is Due.PING
    assert session.next_deadline() == START + 55.0  # no PING before its PONG came ...
    assert session.on_deadline(START + 50.0) is Due.NOTHING
    assert session.on_deadline(START + 55.0) is Due.PING_TIMEOUT  # ... or its deadline passed


# -- packets -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "received"),
    [
        ('4["a"]', Received.MESSAGE),
        (b"\x01\x02", Received.MESSAGE),
        (eio.NOOP, Received.NOTHING),
        (eio.PONG, Received.PONG),
        (eio.CLOSE, Received.CLOSE),
    ],
)
def test_received_packets(raw: str | bytes, received: Received) -> None:
    assert polling_session().receive(eio.decode_packet(raw)) is received


@pytest.mark.parametrize("packet_type", [PacketType.OPEN, PacketType.PING, PacketType.UPGRADE])
def test_packets_a_client_does_not_send_are_protocol_errors(packet_type: PacketType) -> None:
    with pytest.raises(ProtocolError, match=f"unexpected {packet_type.name} packet"):
        polling_session().receive(Packet(packet_type))


# -- upgrade (EIO §"Upgrade") ----------------------------------------------------------------------


def upgrading_session() -> Session:
    session = polling_session()
    session.begin_upgrade(START + 1.0)
    assert session.probe(eio.PING + eio.PROBE) == eio.PONG_PROBE
    return session


def test_upgrade_probe_then_upgrade_packet() -> None:
    session = polling_session()
    session.begin_upgrade(START + 1.0)
    assert (session.state, session.transport) == (State.PROBING, "polling")
    assert session.next_deadline() == START + 11.0  # the upgrade's, before the heartbeat's
    assert session.probe("2probe") == "3probe"
    assert (session.state, session.transport) == (State.UPGRADING, "polling")
    session.upgrade("5")
    assert (session.state, session.transport) == (State.OPEN, "websocket")
    assert session.next_deadline() == START + 25.0  # the heartbeat goes on as it was
    assert session.on_deadline(START + 11.0) is Due.NOTHING


def test_upgrade_timeout_and_polling_goes_on() -> None:
    session = upgrading_session()
    assert session.on_deadline(START + 10.0) is Due.NOTHING
    assert session.on_deadline(START + 11.0) is Due.UPGRADE_TIMEOUT
    assert (session.state, session.transport) == (State.OPEN, "polling")
    assert session.receive(eio.decode_packet('4["still polling"]')) is Received.MESSAGE
    assert session.on_deadline(START + 25.0) is Due.PING
    with pytest.raises(IllegalTransition):
        session.upgrade("5")  # too late: the upgrade is over
    session.begin_upgrade(START + 30.0)  # a new one may come
    assert session.state is State.PROBING


def test_upgrade_timeout_while_waiting_for_the_probe() -> None:
    session = polling_session()
    session.begin_upgrade(START)
    assert session.on_deadline(START + 10.0) is Due.UPGRADE_TIMEOUT
    assert session.state is State.OPEN
    with pytest.raises(IllegalTransition):
        session.probe("2probe")


@pytest.mark.parametrize("text", ["2", "3probe", "5", "", None])
def test_anything_but_the_probe_fails_the_upgrade(text: str | None) -> None:
    session = polling_session()
    session.begin_upgrade(START)
    with pytest.raises(ProtocolError, match="expected a probe"):
        session.probe(text)
    assert session.state is State.PROBING  # until the caller abandons it
    session.abandon_upgrade()
    assert (session.state, session.transport) == (State.OPEN, "polling")
    assert session.next_deadline() == START + 25.0


@pytest.mark.parametrize("text", ["2probe", "6", "4x", None])
def test_anything_but_the_upgrade_packet_fails_the_upgrade(text: str | None) -> None:
    session = upgrading_session()
    with pytest.raises(ProtocolError, match="expected an upgrade packet"):
        session.upgrade(text)
    session.abandon_upgrade()
    assert (session.state, session.transport) == (State.OPEN, "polling")


def test_a_session_upgrades_from_polling_only_and_once_at_a_time() -> None:
    session = polling_session()
    assert session.begin_upgrade(START) is True
    assert session.begin_upgrade(START + 1.0) is False  # a second WebSocket is turned away
    assert session.state is State.PROBING
    assert session.next_deadline() == START + 10.0  # the first one's deadline, unchanged
    assert session.probe("2probe") == "3probe"
    assert session.begin_upgrade(START) is False
    session.upgrade("5")
    assert session.begin_upgrade(START) is False  # upgraded: it no longer polls
    assert (session.state, session.transport) == (State.OPEN, "websocket")
    websocket = Session("sid", "websocket", TIMING, START)
    assert websocket.begin_upgrade(START) is False
    assert websocket.state is State.OPEN


def test_upgrade_steps_out_of_order_are_illegal_transitions() -> None:
    session = polling_session()
    with pytest.raises(IllegalTransition):
        session.probe("2probe")
    with pytest.raises(IllegalTransition):
        session.upgrade("5")
    with pytest.raises(IllegalTransition):
        session.abandon_upgrade()
    session.begin_upgrade(START)
    with pytest.raises(IllegalTransition, match="cannot upgrade a session that is probing"):
        session.upgrade("5")  # before the probe
    assert session.state is State.PROBING
    assert issubclass(IllegalTransition, ProtocolError)  # a client's doing: its WebSocket is closed


# -- close -----------------------------------------------------------------------------------------


def test_close_ends_every_deadline() -> None:
    session = polling_session()
    assert session.end() is True
    assert session.state is State.CLOSED
    assert session.next_deadline() == math.inf
    assert session.on_deadline(START + 1e6) is Due.NOTHING
    assert session.end() is False  # a second close is no error


def test_close_during_an_upgrade() -> None:
    session = upgrading_session()
    assert session.end() is True
    assert session.next_deadline() == math.inf
    with pytest.raises(IllegalTransition):
        session.upgrade("5")
    with pytest.raises(IllegalTransition):
        session.abandon_upgrade()
    assert session.begin_upgrade(START) is False


def session_in(state: State) -> Session:
    session = polling_session()
    if state is not State.OPEN:
        session.begin_upgrade(START)
    if state is State.UPGRADING:
        session.probe("2probe")
    if state is State.CLOSED:
        session.end()
    assert session.state is state
    return session


TAKE: dict[Step, Callable[[Session], object]] = {
    Step.BEGIN_UPGRADE: lambda session: session.begin_upgrade(START),
    Step.PROBE: lambda session: session.probe("2probe"),
    Step.UPGRADE: lambda session: session.upgrade("5"),
    Step.ABANDON_UPGRADE: lambda session: session.abandon_upgrade(),
    Step.CLOSE: lambda session: session.end(),
}


@pytest.mark.parametrize("state", list(State))
@pytest.mark.parametrize("step", list(Step))
def test_every_step_in_every_state(state: State, step: Step) -> None:
    session = session_in(state)
    if (state, step) in TRANSITIONS:
        TAKE[step](session)
        assert session.state is TRANSITIONS[state, step]
    elif step is Step.CLOSE:
        assert session.end() is False  # closing a closed session is no error, and no step
    elif step is Step.BEGIN_UPGRADE:
        assert session.begin_upgrade(START) is False  # the WebSocket that asks is turned away
    else:
        with pytest.raises(IllegalTransition, match=f"cannot {step.value} a session that is {state.value}"):
            TAKE[step](session)
    if (state, step) not in TRANSITIONS:
        assert session.state is state


def test_closed_is_final() -> None:
    assert not [step for state, step in TRANSITIONS if state is State.CLOSED]
    assert all((state, Step.CLOSE) in TRANSITIONS for state in State if state is not State.CLOSED)
