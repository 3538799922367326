"""A WebSocket connection, server side, as a sans-I/O state machine (RFC 6455).

No sockets, no asyncio: bytes and clock values in, events and bytes out. A :class:`ServerConnection`
reads the upgrade request (§4.2.1), takes the client's frames through a :class:`~.frames.Parser`,
limits its control frames, answers its pings (§5.5.2, §5.5.3) and runs the closing handshake (§7.1).
Each method that decides what to send returns those bytes and moves :attr:`~ServerConnection.state`
along :data:`TRANSITIONS`, the one table of legal moves; any other raises
:class:`~tidings.errors.IllegalTransition`.

tidings' asyncio protocol (:class:`tidings.server.websocket.FastWebSocketProtocol`) is a subclass: it
writes the bytes, runs the timers and the app, and its send path, taken once per recipient of every
broadcast, reads the state as one attribute.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tidings.errors import IllegalTransition
from tidings.protocol.states import StateEnum
from tidings.protocol.websocket.frames import (
    NO_STATUS,
    POLICY_VIOLATION,
    Close,
    Event,
    Message,
    Parser,
    Ping,
    WebSocketError,
    close_frame,
    pong_frame,
)
from tidings.protocol.websocket.handshake import (
    HandshakeError,
    Request,
    accept_response,
    check_request,
    parse_request,
)

CONTROL_WINDOW = 60.0  # seconds: control_frames_per_minute counts the pings and pongs of a minute


class State(StateEnum):
    HANDSHAKE = "handshake"  # reading the request head
    CONNECTING = "connecting"  # the app decides: accept, close or an HTTP response
    OPEN = "open"
    CLOSING = "closing"  # our close frame is out, waiting for the client's
    CLOSED = "closed"  # the TCP connection is closing or gone: nothing more is read or sent


# Read once for receive_data, which runs once per read: on Python 3.11, reading an Enum member off its
# class costs ~70 ns.
_CLOSED = State.CLOSED

#: Every legal move; :meth:`ServerConnection._move` raises
#: :class:`~tidings.errors.IllegalTransition` for any other.
TRANSITIONS: dict[State, frozenset[State]] = {
    # A valid head (§4.2.1) / a refused one, or the peer gone.
    State.HANDSHAKE: frozenset({State.CONNECTING, State.CLOSED}),
    # The app accepts (§4.2.2) / refuses with an HTTP answer, the client closes or fails, or is gone.
    State.CONNECTING: frozenset({State.OPEN, State.CLOSED}),
    # Our close frame goes out (§7.1.2: ours, an answer to the client's, or a failure's) / the peer is gone.
    State.OPEN: frozenset({State.CLOSING, State.CLOSED}),
    # The client's close frame comes (§7.1.1: the server then closes the TCP connection), or a timeout.
    State.CLOSING: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}


@dataclass
class Failure:
    """The client broke the protocol or a limit: fail the connection with ``code`` (§7.1.7)."""

    code: int
    reason: str


class ControlFrameFlood(Failure):
    """More pings and pongs in a minute than ``control_frames_per_minute``: closes with 1008."""

    def __init__(self) -> None:
        super().__init__(POLICY_VIOLATION, "too many control frames")


class ServerConnection:
    """One WebSocket connection, server side, from the upgrade request to the end.

    ``max_size`` bounds one incoming message in bytes (1009 past it), ``max_head`` the upgrade
    request's head (431 past it), ``control_frames_per_minute`` the pings and pongs the client may
    send in a minute, counted from its first (1008 past it).
    """

    __slots__ = (
        "_accept_key",
        "_control_frames",
        "_control_window_end",
        "_head",
        "control_frames_per_minute",
        "max_head",
        "parser",
        "state",
    )

    def __init__(self, *, max_size: int | None, max_head: int, control_frames_per_minute: int) -> None:
        self.state = State.HANDSHAKE
        self.parser = Parser(max_size)
        self.max_head = max_head
        self.control_frames_per_minute = control_frames_per_minute
        self._head = b""  # the request head so far
        self._accept_key = b""  # Sec-WebSocket-Accept, from the whole head until accept()
        self._control_frames = 0  # pings and pongs received in the current minute
        self._control_window_end = 0.0

    def _move(self, new: State) -> None:
        if new not in TRANSITIONS[self.state]:
            raise IllegalTransition(
                f"a WebSocket connection cannot go from {self.state.value} to {new.value}"
            )
        self.state = new

    # -- the opening handshake (§4.2) ----------------------------------------------------------------

    def receive_head(self, data: bytes) -> tuple[Request, bytes] | None:
        """Take bytes of the upgrade request; once its head is whole, the request and what follows
        the head (the client's first frames, if any), and the state is CONNECTING: the app decides.

        Raises :class:`HandshakeError`: 431 once the head passes ``max_head`` unfinished, 400 or 426
        for a head that is no valid opening handshake (§4.2.1). Answer it, then :meth:`end`.
        """
        head, found, rest = (self._head + data).partition(b"\r\n\r\n")
        if not found:
            if len(head) > self.max_head:
                raise HandshakeError(431, "request head too large")
            self._head = head
            return None
        self._head = b""
        request = parse_request(head)
        accept = check_request(request)
        self._move(State.CONNECTING)
        self._accept_key = accept
        return request, rest

    def accept(self, headers: list[tuple[bytes, bytes]]) -> bytes:
        """The ``101`` answer with extra ``headers`` (§4.2.2): the connection is open."""
        self._move(State.OPEN)
        response = accept_response(self._accept_key, headers)
        self._accept_key = b""
        return response

    # -- the client's frames ---------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> Sequence[Event | Failure]:
        """The events that the client's ``data`` completes, in order:

        - :class:`Message`: for the app;
        - :class:`Close`: the client's close frame; send :meth:`answer_close`, then :meth:`end`;
        - :class:`Failure`: last; send :meth:`fail`, then :meth:`end`;
        - :class:`Ping` and :class:`Pong`, while ``parser.control_frames`` is not 0 after this call:
          pass the events through :meth:`count_control_frames` then. That one needs the time: the
          caller reads its clock only for the reads that bring pings or pongs.

        Nothing once CLOSED.
        """
        if self.state is _CLOSED:
            return ()
        try:
            return self.parser.receive(data)
        except WebSocketError as error:
            return [Failure(error.code, error.reason)]

    def count_control_frames(self, events: Sequence[Event | Failure], now: float) -> list[Event | Failure]:
        """``events`` with their pings and pongs counted against the limit (``now``: a monotonic clock,
        in seconds), cut at the one past it (a :class:`ControlFrameFlood`, last), and the last ping
        kept, at the end: pings that come together get one pong (§5.5.3); send :meth:`pong_for`. A
        pong needs no answer: we send no pings, and an unsolicited pong is ignored (§5.5.3)."""
        self.parser.control_frames = 0
        if now >= self._control_window_end:
            self._control_window_end = now + CONTROL_WINDOW
            self._control_frames = 0
        kept: list[Event | Failure] = []
        ping = None
        for event in events:
            kind = type(event)
            if kind is Message:
                kept.append(event)
            elif kind is Close:
                # The parser's last event. The pings before it get no pong: the answer to a close
                # frame is the last frame we send (§5.5.1).
                kept.append(event)
                return kept
            else:
                self._control_frames += 1
                if self._control_frames > self.control_frames_per_minute:
                    kept.append(ControlFrameFlood())
                    return kept
                if kind is Ping:
                    ping = event
        if ping is not None:
            kept.append(ping)
        return kept

    def pong_for(self, ping: Ping) -> bytes | None:
        """The pong that answers ``ping`` (§5.5.2); None unless the connection is open (before the
        ``101`` nothing is sent, and after our close frame nothing follows it, §5.5.1)."""
        if self.state is State.OPEN:
            return pong_frame(ping.payload)
        return None

    # -- closing (§7) ----------------------------------------------------------------------------------

    def start_closing(self, code: int | None, reason: str = "") -> bytes:
        """Our close frame (§5.5.1, §7.1.2; ``code=None`` sends none): the connection is closing. It
        ends on the client's close frame, or on the caller's timeout."""
        self._move(State.CLOSING)
        return close_frame(code, reason)

    def answer_close(self, close: Close) -> bytes | None:
        """The answer to the client's close frame: ours, echoing its code (§5.5.1), unless ours is
        out already (or the connection never opened). Then :meth:`end`: the server closes the TCP
        connection first (§7.1.1)."""
        if self.state is not State.OPEN:
            return None
        return self.start_closing(None if close.code == NO_STATUS else close.code)

    def fail(self, code: int, reason: str) -> bytes | None:
        """Fail the connection (§7.1.7): our close frame with ``code``, unless ours is out already
        (or the connection never opened). Then :meth:`end`."""
        if self.state is not State.OPEN:
            return None
        return self.start_closing(code, reason)

    def end(self) -> None:
        """The TCP connection is being closed, by us or by the peer: nothing more is read or sent."""
        self._move(State.CLOSED)
