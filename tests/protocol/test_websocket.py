"""RFC 6455 framing and handshake, sans-I/O: byte strings in, frames and events out."""

from __future__ import annotations

import os
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.hostile.harness import client_frame
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
