"""The Engine.IO v4 session as a state machine: packets in, what to do out; no I/O.

Spec: https://socket.io/docs/v4/engine-io-protocol/, EIO §"Heartbeat" and §"Upgrade".

Time is a float passed in (``now``, seconds on any monotonic clock). The session says when it next
needs to be woken (:meth:`Session.next_deadline`) and, when woken, what is due
(:meth:`Session.on_deadline`): the server sends what it is told and keeps one timer per session.

The packets it takes are those of the session's transport; the WebSocket that comes to take a polling
session over speaks to :meth:`Session.probe` and :meth:`Session.upgrade` until it has.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from tidings.errors import IllegalTransition, ProtocolError
from tidings.protocol.engineio.packets import (
    PING,
    PONG_PROBE,
    PROBE,
    UPGRADE,
    Packet,
    PacketType,
)
from tidings.protocol.states import StateEnum


class State(StateEnum):
    OPEN = "open"  # packets flow on the session's transport
    PROBING = "probing"  # a WebSocket came to take over this polling session: waiting for its probe
    UPGRADING = "upgrading"  # probe answered: polls get a NOOP until the client's UPGRADE packet
    CLOSED = "closed"


class Step(StateEnum):
    """What moves a session from one state to another."""

    BEGIN_UPGRADE = "begin an upgrade of"  # a WebSocket came to take the polling session over
    PROBE = "answer a probe on"  # its probe PING came, and is answered
    UPGRADE = "upgrade"  # its UPGRADE packet came: the WebSocket is the transport from now on
    ABANDON_UPGRADE = "abandon the upgrade of"  # it failed or took too long: polling goes on
    CLOSE = "close"


#: The legal transitions, and the only ones: any other step raises :class:`IllegalTransition`.
TRANSITIONS: dict[tuple[State, Step], State] = {
    (State.OPEN, Step.BEGIN_UPGRADE): State.PROBING,
    (State.OPEN, Step.CLOSE): State.CLOSED,
    (State.PROBING, Step.PROBE): State.UPGRADING,
    (State.PROBING, Step.ABANDON_UPGRADE): State.OPEN,
    (State.PROBING, Step.CLOSE): State.CLOSED,
    (State.UPGRADING, Step.UPGRADE): State.OPEN,
    (State.UPGRADING, Step.ABANDON_UPGRADE): State.OPEN,
    (State.UPGRADING, Step.CLOSE): State.CLOSED,
}


class Received(enum.Enum):
    """What :meth:`Session.receive` leaves to the caller."""

    NOTHING = "nothing"  # NOOP
    MESSAGE = "message"  # pass the packet's data to the layer above
    PONG = "pong"  # call pong() with the time
    CLOSE = "close"  # the client closes the session


class Due(enum.Enum):
    """What :meth:`Session.on_deadline` asks of the caller."""

    NOTHING = "nothing"  # woken early: set the timer for next_deadline() again
    PING = "ping"  # send a PING
    PING_TIMEOUT = "ping timeout"  # no PONG in time: close the session
    UPGRADE_TIMEOUT = "upgrade timeout"  # the upgrade has failed: end its WebSocket; polling goes on


@dataclass(frozen=True, slots=True)
class Timing:
    """The session's intervals, in seconds; one object shared by every session of a server."""

    ping_interval: float
    ping_timeout: float
    upgrade_timeout: float


_NEVER = math.inf
# Read once for receive(), which runs once per packet: on Python 3.11, reading an Enum member off its
# class costs ~70 ns.
_PACKET_MESSAGE = PacketType.MESSAGE
_RECEIVED_MESSAGE = Received.MESSAGE


class Session:
    """One Engine.IO session's protocol state, from the handshake to the close.

    ``transport`` is ``"polling"`` or ``"websocket"``; a polling session may become a WebSocket one,
    never the reverse (EIO §"Upgrade"). ``state`` is a :class:`State`; it changes only along
    :data:`TRANSITIONS`, by the :class:`Step` of each method.
    """

    # The server's session extends this class rather than holding one: an idle session then costs
    # no object more, and its hot path reads ``state`` as an attribute of its own.
    __slots__ = (
        "_ping_deadline",
        "_pong_deadline",
        "_upgrade_deadline",
        "sid",
        "state",
        "timing",
        "transport",
    )

    def __init__(self, sid: str, transport: str, timing: Timing, now: float) -> None:
        self.sid = sid
        self.transport = transport
        self.timing = timing
        self.state = State.OPEN
        # EIO §"Heartbeat": the server sends a PING ping_interval after the handshake and after
        # each PONG (as the reference server does), and the client has ping_timeout to answer it.
        self._ping_deadline = now + timing.ping_interval
        self._pong_deadline = _NEVER  # none awaited
        self._upgrade_deadline = _NEVER

    def _take(self, step: Step) -> None:
        try:
            self.state = TRANSITIONS[self.state, step]
        except KeyError:
            raise IllegalTransition(f"cannot {step.value} a session that is {self.state.value}") from None

    # -- packets ---------------------------------------------------------------------------------

    def receive(self, packet: Packet) -> Received:
        """Take one packet from the client on the session's transport."""
        packet_type = packet.type
        if packet_type is _PACKET_MESSAGE:
            return _RECEIVED_MESSAGE
        if packet_type is PacketType.PONG:
            return Received.PONG
        if packet_type is PacketType.CLOSE:
            return Received.CLOSE
        if packet_type is PacketType.NOOP:
            return Received.NOTHING
        raise ProtocolError(f"unexpected {packet_type.name} packet")

    def pong(self, now: float) -> None:
        """The client's PONG came at ``now``: the next PING is due ping_interval from now."""
        self._pong_deadline = _NEVER
        self._ping_deadline = now + self.timing.ping_interval

    # -- time ------------------------------------------------------------------------------------

    def next_deadline(self) -> float:
        """When :meth:`on_deadline` has something to do (``inf`` once closed).

        Only :meth:`on_deadline` and :meth:`begin_upgrade` move it earlier; everything else moves it
        later, so a timer set for it stays good: at worst it wakes the caller early, for nothing.
        """
        if self.state is State.CLOSED:
            return _NEVER
        return min(self._ping_deadline, self._pong_deadline, self._upgrade_deadline)

    def on_deadline(self, now: float) -> Due:
        """What is due at ``now``; one thing at a time: ask again (at next_deadline) for the next."""
        if self.state is State.CLOSED:
            return Due.NOTHING
        if now >= self._upgrade_deadline:
            self._end_upgrade()
            return Due.UPGRADE_TIMEOUT
        if now >= self._pong_deadline:
            return Due.PING_TIMEOUT
        if now >= self._ping_deadline:
            self._ping_deadline = _NEVER  # the next one once its PONG came
            self._pong_deadline = now + self.timing.ping_timeout
            return Due.PING
        return Due.NOTHING

    # -- upgrade (EIO §"Upgrade") ----------------------------------------------------------------

    def begin_upgrade(self, now: float) -> bool:
        """A WebSocket came to take over this session; it has upgrade_timeout to finish.

        False if the session cannot be taken over: it does not poll (it has upgraded, or began on a
        WebSocket), another WebSocket is taking it over, or it is closed. That WebSocket is turned
        away, and the session goes on as it was.
        """
        if self.transport != "polling" or self.state is not State.OPEN:
            return False
        self._take(Step.BEGIN_UPGRADE)
        self._upgrade_deadline = now + self.timing.upgrade_timeout
        return True

    def probe(self, text: str | None) -> str:
        """The first message of the upgrading WebSocket, which must be the probe PING; returns the
        answer to send on that WebSocket. Polls are then answered with a NOOP (the client pauses
        polling) until :meth:`upgrade`."""
        if text != PING + PROBE:
            raise ProtocolError("expected a probe")
        self._take(Step.PROBE)
        return PONG_PROBE

    def upgrade(self, text: str | None) -> None:
        """The second message of the upgrading WebSocket, which must be the UPGRADE packet: the
        WebSocket is the session's transport from now on."""
        if text != UPGRADE:
            raise ProtocolError("expected an upgrade packet")
        self._take(Step.UPGRADE)
        self.transport = "websocket"
        self._upgrade_deadline = _NEVER

    def abandon_upgrade(self) -> None:
        """The upgrading WebSocket failed (it left, or broke the protocol): the session goes on
        polling."""
        self._end_upgrade()

    def _end_upgrade(self) -> None:
        self._take(Step.ABANDON_UPGRADE)
        self._upgrade_deadline = _NEVER

    # -- close -----------------------------------------------------------------------------------

    def end(self) -> bool:
        """Close the session, from any state; False if it already was (closing twice is no error:
        the client, a timeout and the transport may each end it)."""
        if self.state is State.CLOSED:
            return False
        self._take(Step.CLOSE)
        self._upgrade_deadline = _NEVER
        return True
