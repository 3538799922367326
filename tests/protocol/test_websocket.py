"""RFC 6455 framing and handshake, sans-I/O: byte strings in, frames and events out."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hostile.harness import client_frame, server_frames
from tidings.errors import IllegalTransition
from tidings.protocol import websocket as ws
from tidings.protocol.websocket import frames


def unmasked_frame(opcode: int, payload: bytes) -> bytes:
    return bytes((0x80 | opcode, len(payload))) + payload


def error_of(data: bytes, max_size: int | None = None) -> ws.WebSocketError:
    parser = ws.Parser(max_size)
    with pytest.raises(ws.WebSocketError) as caught:
        parser.receive(data)
    assert parser.closed
    assert parser.receive(client_frame(ws.TEXT, b"after")) == []
    return caught.value


# -- server frames -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
    ],
)
def test_text_frame_lengths(size: int, header: bytes) -> None:
    assert ws.text_frame("a" * size) == header + b"a" * size


def test_binary_text_and_utf8() -> None:
    assert ws.binary_frame(b"\x00\xff") == b"\x82\x02\x00\xff"
    assert ws.text_frame("é") == b"\x81\x02\xc3\xa9"


def test_close_and_pong_frames() -> None:
    assert ws.close_frame(1000, "bye") == b"\x88\x05\x03\xe8bye"
    assert ws.close_frame(None) == b"\x88\x00"
    assert ws.pong_frame(b"hi") == b"\x8a\x02hi"
    long_reason = ws.close_frame(1008, "é" * 100)  # cut to 125 bytes, on a character boundary
    assert len(long_reason) - 2 <= 125
    long_reason[4:].decode()


# -- client frames ----------------------------------------------------------------------------------------


def test_text_and_binary_messages() -> None:
    parser = ws.Parser()
    data = client_frame(ws.TEXT, "héllo".encode()) + client_frame(ws.BINARY, b"\x00\x01")
    assert parser.receive(data) == [ws.Message("héllo"), ws.Message(b"\x00\x01")]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_lengths_round_trip(size: int) -> None:
    payload = os.urandom(size)
    assert ws.Parser().receive(client_frame(ws.BINARY, payload)) == [ws.Message(payload)]


def test_byte_by_byte() -> None:
    parser = ws.Parser()
    data = client_frame(ws.TEXT, b"x" * 300) + client_frame(ws.PING, b"p")
    events: list[ws.Event] = []
    for i in range(len(data)):
        events += parser.receive(data[i : i + 1])
    assert events == [ws.Message("x" * 300), ws.Ping(b"p")]


def test_a_frame_trickling_in_is_parsed_once_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large frame in many small reads is held until it is whole, not parsed (and copied) at each
    read: a 1 MB message in reads of ten bytes cost 1.3 s of CPU that way."""
    headers_read = 0
    check_header = ws.Parser._check_header

    def counting(parser: ws.Parser, first: int, second: int, length: int) -> None:
        nonlocal headers_read
        headers_read += 1
        check_header(parser, first, second, length)

    monkeypatch.setattr(ws.Parser, "_check_header", counting)
    payload = os.urandom(100_000)
    data = client_frame(ws.BINARY, payload) + client_frame(ws.PING, b"p")
    parser = ws.Parser(max_size=200_000)
    events: list[ws.Event] = []
    for i in range(0, len(data), 100):
        events += parser.receive(data[i : i + 100])
    assert events == [ws.Message(payload), ws.Ping(b"p")]
    assert headers_read <= 4  # once when its header is in, once when it is whole; the same for the ping


@given(st.binary(max_size=2000), st.lists(st.integers(1, 50), max_size=30))
def test_any_split(payload: bytes, cuts: list[int]) -> None:
    data = client_frame(ws.BINARY, payload) * 2
    parser = ws.Parser()
    events: list[ws.Event] = []
    position = 0
    for cut in cuts:
        events += parser.receive(data[position : position + cut])
        position += cut
    events += parser.receive(data[position:])
    assert events == [ws.Message(payload), ws.Message(payload)]


def test_fragmented_message_with_control_frames_between() -> None:
    parser = ws.Parser()
    data = (
        client_frame(ws.TEXT, b"hel", fin=False)
        + client_frame(ws.PING, b"1")
        + client_frame(ws.CONTINUATION, b"lo ", fin=False)
        + client_frame(ws.PONG, b"2")
        + client_frame(ws.CONTINUATION, "wörld".encode())
    )
    assert parser.receive(data) == [ws.Ping(b"1"), ws.Pong(b"2"), ws.Message("hello wörld")]


def test_fragmented_utf8_split_inside_a_character() -> None:
    encoded = "é".encode()
    data = client_frame(ws.TEXT, encoded[:1], fin=False) + client_frame(ws.CONTINUATION, encoded[1:])
    assert ws.Parser().receive(data) == [ws.Message("é")]


def test_close_frames() -> None:
    assert ws.Parser().receive(client_frame(ws.CLOSE, b"")) == [ws.Close(1005, "")]
    parser = ws.Parser()
    data = client_frame(ws.CLOSE, struct.pack("!H", 4001) + b"bye") + client_frame(ws.TEXT, b"late")
    assert parser.receive(data) == [ws.Close(4001, "bye")]
    assert parser.closed
    assert parser.receive(client_frame(ws.TEXT, b"later")) == []


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (unmasked_frame(ws.TEXT, b"hi"), 1002),  # §5.1: clients mask
        (client_frame(ws.TEXT, b"hi", rsv=0x40), 1002),  # RSV1 without an extension
        (client_frame(ws.TEXT, b"hi", rsv=0x10), 1002),
        (client_frame(0x3, b"hi"), 1002),  # reserved data opcode
        (client_frame(0xB, b"hi"), 1002),  # reserved control opcode
        (client_frame(ws.PING, b"x" * 126), 1002),  # control payload > 125
        (client_frame(ws.PING, b"x", fin=False), 1002),  # fragmented control frame
        (client_frame(ws.CONTINUATION, b"x"), 1002),  # continuation without a start
        (client_frame(ws.TEXT, b"a", fin=False) + client_frame(ws.BINARY, b"b"), 1002),
        (client_frame(ws.CLOSE, b"\x03"), 1002),  # 1-byte close payload
        (client_frame(ws.CLOSE, struct.pack("!H", 1005)), 1002),  # reserved close code
        (client_frame(ws.CLOSE, struct.pack("!H", 999)), 1002),
        (client_frame(ws.CLOSE, struct.pack("!H", 5000)), 1002),
        (client_frame(ws.CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),  # reason not UTF-8
        (client_frame(ws.TEXT, b"\xc3"), 1007),  # invalid UTF-8 text
        (b"\x82\xff" + b"\x80" + b"\x00" * 7 + b"mask", 1002),  # 64-bit length, high bit set
    ],
)
def test_protocol_errors(data: bytes, code: int) -> None:
    assert error_of(data).code == code


def test_size_limit_is_1009_even_before_the_payload_is_in() -> None:
    assert ws.Parser(10).receive(client_frame(ws.TEXT, b"x" * 10)) == [ws.Message("x" * 10)]
    assert error_of(client_frame(ws.TEXT, b"x" * 11)[:8], max_size=10).code == 1009
    fragments = client_frame(ws.TEXT, b"x" * 6, fin=False) + client_frame(ws.CONTINUATION, b"x" * 6)
    assert error_of(fragments, max_size=10).code == 1009


def test_valid_close_codes_pass() -> None:
    for code in (1000, 1001, 1003, 1007, 1011, 1014, 3000, 4999):
        assert ws.Parser().receive(client_frame(ws.CLOSE, struct.pack("!H", code))) == [ws.Close(code, "")]


@pytest.mark.parametrize("speedups", [True, False])
def test_unmask(speedups: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    if not speedups:
        monkeypatch.setattr(frames, "_c_apply_mask", None)
    for size in (0, 1, 3, 4, 5, 1001):
        payload, mask = os.urandom(size), os.urandom(4)
        expected = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
        assert ws.unmask(payload, mask) == expected


# -- the opening handshake ------------------------------------------------------------------------------

HEAD = (
    b"GET /chat?x=1 HTTP/1.1\r\nhost: example.com\r\nupgrade: websocket\r\n"
    b"connection: keep-alive, Upgrade\r\n"
    b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n"
    b"sec-websocket-protocol: chat, superchat"
)


def test_handshake_rfc_example() -> None:
    request = ws.parse_request(HEAD)
    assert (request.method, request.target) == ("GET", "/chat?x=1")
    assert request.tokens(b"sec-websocket-protocol") == [b"chat", b"superchat"]
    accept = ws.check_request(request)
    assert accept == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3
    response = ws.accept_response(accept, [(b"server", b"x")])
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert response.endswith(b"server: x\r\n\r\n")


@pytest.mark.parametrize(
    ("old", "new", "status"),
    [
        (b"GET ", b"POST ", 400),
        (b"upgrade: websocket", b"upgrade: h2c", 400),
        (b"keep-alive, Upgrade", b"keep-alive", 400),
        (b"version: 13", b"version: 8", 426),
        (b"dGhlIHNhbXBsZSBub25jZQ==", b"short", 400),
        (b"dGhlIHNhbXBsZSBub25jZQ==", b"not base64!!", 400),
        (b"HTTP/1.1", b"HTTP/1.0", 400),
        (b"host: example.com", b"host example.com", 400),
    ],
)
def test_handshake_errors(old: bytes, new: bytes, status: int) -> None:
    with pytest.raises(ws.HandshakeError) as caught:
        ws.check_request(ws.parse_request(HEAD.replace(old, new)))
    assert caught.value.status == status


def test_http_response() -> None:
    response = ws.http_response(403, "Forbidden", [(b"content-type", b"application/json")], b"{}")
    assert response == (
        b"HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: 2\r\n"
        b"connection: close\r\n\r\n{}"
    )


# -- the server connection: a state machine ----------------------------------------------------------------

State = ws.State
UPGRADE = HEAD + b"\r\n\r\n"
LIMIT = 5  # control frames per minute


def connection(state: ws.State = State.HANDSHAKE) -> ws.ServerConnection:
    """A connection driven to ``state`` through its legal moves."""
    conn = ws.ServerConnection(max_size=1000, max_head=1024, control_frames_per_minute=LIMIT)
    steps = {
        State.CONNECTING: [State.CONNECTING],
        State.OPEN: [State.CONNECTING, State.OPEN],
        State.CLOSING: [State.CONNECTING, State.OPEN, State.CLOSING],
        State.CLOSED: [State.CONNECTING, State.OPEN, State.CLOSING, State.CLOSED],
    }
    for step in steps.get(state, []):
        move_to(conn, step)
    assert conn.state is state
    return conn


def move_to(conn: ws.ServerConnection, state: ws.State) -> object:
    """Ask ``conn`` for the move to ``state``, through the method that makes it."""
    if state is State.CONNECTING:
        return conn.receive_head(UPGRADE)
    if state is State.OPEN:
        return conn.accept([])
    if state is State.CLOSING:
        return conn.start_closing(1000, "bye")
    assert state is State.CLOSED
    return conn.end()


def frames_of(data: bytes | None) -> list[tuple[int, bytes]]:
    assert data is not None
    return server_frames(data)


# The legal moves, written out here again so that a change to the table has to change this too.
MOVES = {
    State.HANDSHAKE: {State.CONNECTING, State.CLOSED},
    State.CONNECTING: {State.OPEN, State.CLOSED},
    State.OPEN: {State.CLOSING, State.CLOSED},
    State.CLOSING: {State.CLOSED},
    State.CLOSED: set(),
}
LEGAL = [(old, new) for old in State for new in MOVES[old]]
# No method moves back to HANDSHAKE, so the other targets are the moves a caller can ask for.
ILLEGAL = [(old, new) for old in State for new in State if new not in {*MOVES[old], State.HANDSHAKE}]


def test_the_table_of_moves() -> None:
    assert ws.TRANSITIONS == MOVES


@pytest.mark.parametrize(("old", "new"), LEGAL)
def test_legal_moves(old: ws.State, new: ws.State) -> None:
    conn = connection(old)
    move_to(conn, new)
    assert conn.state is new


@pytest.mark.parametrize(("old", "new"), ILLEGAL)
def test_illegal_moves_raise(old: ws.State, new: ws.State) -> None:
    conn = connection(old)
    with pytest.raises(
        IllegalTransition, match=f"^a WebSocket connection cannot go from {old.value} to {new.value}$"
    ):
        move_to(conn, new)
    assert conn.state is old


def test_the_opening_handshake_in_pieces() -> None:
    conn = connection()
    first = client_frame(ws.TEXT, b"early")
    assert conn.receive_head(UPGRADE[:10]) is None
    assert conn.receive_head(UPGRADE[10:-1]) is None
    received = conn.receive_head(UPGRADE[-1:] + first)
    assert received is not None
    request, rest = received
    assert (request.target, rest, conn.state) == ("/chat?x=1", first, State.CONNECTING)
    response = conn.accept([(b"server", b"x")])
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response  # RFC 6455 §1.3
    assert conn.state is State.OPEN


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (UPGRADE.replace(b"GET ", b"POST "), 400),
        (UPGRADE.replace(b"version: 13", b"version: 8"), 426),
        (b"GET / HTTP/1.1\r\nx-padding: " + b"x" * 1024, 431),  # no end of head within max_head
    ],
)
def test_a_refused_upgrade_ends_the_connection(data: bytes, status: int) -> None:
    conn = connection()
    with pytest.raises(ws.HandshakeError) as caught:
        conn.receive_head(data)
    assert caught.value.status == status
    assert conn.state is State.HANDSHAKE  # the caller answers with HTTP, then ends it
    conn.end()
    assert conn.state is State.CLOSED


def test_messages_come_through_as_parsed() -> None:
    conn = connection(State.OPEN)
    data = client_frame(ws.TEXT, b"hi") + client_frame(ws.BINARY, b"\x00")
    assert conn.receive_data(data) == [ws.Message("hi"), ws.Message(b"\x00")]
    assert conn.parser.control_frames == 0  # no pings or pongs: nothing to count


def test_pings_of_one_read_get_one_pong_after_the_messages() -> None:
    conn = connection(State.OPEN)
    data = client_frame(ws.PING, b"1") + client_frame(ws.TEXT, b"m") + client_frame(ws.PING, b"2")
    events = conn.receive_data(data)
    assert conn.parser.control_frames == 2
    events = conn.count_control_frames(events, 0.0)
    assert events == [ws.Message("m"), ws.Ping(b"2")]  # §5.5.3: the most recent one is answered
    assert conn.parser.control_frames == 0
    assert frames_of(conn.pong_for(ws.Ping(b"2"))) == [(ws.PONG, b"2")]


def test_pongs_are_counted_and_dropped() -> None:
    conn = connection(State.OPEN)
    events = conn.receive_data(client_frame(ws.PONG, b"unsolicited") + client_frame(ws.TEXT, b"m"))
    assert conn.count_control_frames(events, 0.0) == [ws.Message("m")]


def test_pings_before_a_close_get_no_pong() -> None:
    conn = connection(State.OPEN)
    data = client_frame(ws.PING, b"p") + client_frame(ws.CLOSE, struct.pack("!H", 1001))
    events = conn.count_control_frames(conn.receive_data(data), 0.0)
    assert events == [ws.Close(1001, "")]


@pytest.mark.parametrize("state", [State.CONNECTING, State.CLOSING])
def test_no_pong_unless_open(state: ws.State) -> None:
    assert connection(state).pong_for(ws.Ping(b"p")) is None


def test_the_control_frame_limit_counts_a_minute_on_the_clock_given() -> None:
    conn = connection(State.OPEN)
    now = 100.0
    for n in range(LIMIT):  # pings and pongs alike
        opcode = ws.PING if n % 2 else ws.PONG
        events = conn.count_control_frames(conn.receive_data(client_frame(opcode, b"x")), now)
        assert events == ([ws.Ping(b"x")] if opcode == ws.PING else [])
        now += 10.0
    # The minute began at 100.0; at 150.0 one more is one too many: what came before it still counts.
    data = client_frame(ws.TEXT, b"m") + client_frame(ws.PING, b"x") + client_frame(ws.TEXT, b"n")
    events = conn.count_control_frames(conn.receive_data(data), now)
    assert events == [ws.Message("m"), ws.ControlFrameFlood()]
    assert (events[-1].code, events[-1].reason) == (ws.POLICY_VIOLATION, "too many control frames")


def test_a_new_minute_starts_a_new_count() -> None:
    conn = connection(State.OPEN)
    pings = client_frame(ws.PING, b"x") * LIMIT
    assert conn.count_control_frames(conn.receive_data(pings), 0.0) == [ws.Ping(b"x")]
    assert conn.count_control_frames(conn.receive_data(pings), 60.0) == [ws.Ping(b"x")]
    assert conn.count_control_frames(conn.receive_data(pings[: len(pings) // LIMIT]), 119.9) == [
        ws.ControlFrameFlood()
    ]


def test_the_client_closes_first_and_its_code_is_echoed() -> None:
    conn = connection(State.OPEN)
    [close] = conn.receive_data(client_frame(ws.CLOSE, struct.pack("!H", 4001) + b"bye"))
    assert close == ws.Close(4001, "bye")
    assert isinstance(close, ws.Close)
    assert frames_of(conn.answer_close(close)) == [(ws.CLOSE, struct.pack("!H", 4001))]  # §5.5.1
    assert conn.state is State.CLOSING
    conn.end()  # §7.1.1: the server closes the TCP connection first
    assert conn.receive_data(client_frame(ws.TEXT, b"late")) == ()


def test_a_close_without_a_code_is_answered_without_one() -> None:
    conn = connection(State.OPEN)
    assert frames_of(conn.answer_close(ws.Close(ws.NO_STATUS, ""))) == [(ws.CLOSE, b"")]


@pytest.mark.parametrize("state", [State.CONNECTING, State.CLOSING])
def test_a_close_is_answered_only_while_open(state: ws.State) -> None:
    conn = connection(state)
    assert conn.answer_close(ws.Close(1000, "")) is None  # before the 101, or ours is out already
    assert conn.state is state
    conn.end()


def test_we_close_first() -> None:
    conn = connection(State.OPEN)
    assert frames_of(conn.start_closing(1001, "going")) == [(ws.CLOSE, struct.pack("!H", 1001) + b"going")]
    assert conn.state is State.CLOSING
    [close] = conn.receive_data(client_frame(ws.CLOSE, struct.pack("!H", 1001)))
    assert isinstance(close, ws.Close)
    assert conn.answer_close(close) is None
    conn.end()
    assert conn.state is State.CLOSED


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (unmasked_frame(ws.TEXT, b"hi"), ws.PROTOCOL_ERROR),
        (client_frame(ws.TEXT, b"x" * 1001), ws.MESSAGE_TOO_BIG),
        (client_frame(ws.TEXT, b"\xc3"), ws.INVALID_DATA),
    ],
)
def test_a_protocol_error_fails_the_connection_with_its_code(data: bytes, code: int) -> None:
    conn = connection(State.OPEN)
    [failure] = conn.receive_data(data)
    assert isinstance(failure, ws.Failure)
    assert failure.code == code
    close = frames_of(conn.fail(failure.code, failure.reason))
    assert close == [(ws.CLOSE, struct.pack("!H", code) + failure.reason.encode())]  # §7.1.7
    assert conn.state is State.CLOSING
    conn.end()


@pytest.mark.parametrize("state", [State.CONNECTING, State.CLOSING])
def test_a_failure_sends_no_close_frame_unless_open(state: ws.State) -> None:
    conn = connection(state)
    assert conn.fail(ws.PROTOCOL_ERROR, "bad") is None
    assert conn.state is state
