"""Engine.IO v4 wire format, sans I/O: packets, polling payloads, handshake and query strings.

Spec: https://socket.io/docs/v4/engine-io-protocol/
"""

from __future__ import annotations

import contextlib
from urllib.parse import parse_qs

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tidings.protocol import ProtocolError
from tidings.protocol import engineio as eio
from tidings.protocol.engineio import Packet, PacketType

# -- packets ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "packet"),
    [
        ("0", Packet(PacketType.OPEN)),
        ("1", Packet(PacketType.CLOSE)),
        ("2", Packet(PacketType.PING)),
        ("2probe", Packet(PacketType.PING, "probe")),
        ("3", Packet(PacketType.PONG)),
        ("3probe", Packet(PacketType.PONG, "probe")),
        ("4hello", Packet(PacketType.MESSAGE, "hello")),
        ("4", Packet(PacketType.MESSAGE, "")),
        ('42["hello",1]', Packet(PacketType.MESSAGE, '2["hello",1]')),
        ("5", Packet(PacketType.UPGRADE)),
        ("6", Packet(PacketType.NOOP)),
        ("4€ \x1e\n", Packet(PacketType.MESSAGE, "€ \x1e\n")),
    ],
)
def test_decode_text_packet(raw: str, packet: Packet) -> None:
    assert eio.decode_packet(raw) == packet


def test_binary_frame_is_a_message_without_type_prefix() -> None:
    # EIO §"Packet encoding": a binary WebSocket frame is the message data itself.
    assert eio.decode_packet(b"\x01\x02\x03") == Packet(PacketType.MESSAGE, b"\x01\x02\x03")
    assert eio.decode_packet(b"4") == Packet(PacketType.MESSAGE, b"4")
    assert eio.decode_packet(b"") == Packet(PacketType.MESSAGE, b"")


@given(st.one_of(st.text(max_size=8), st.binary(max_size=8)))
@example("4hello")
@example("4")
@example("2")
@example("")
@example("٤x")
@example(b"4x")
def test_message_data_is_what_decode_packet_carries_for_a_message(raw: str | bytes) -> None:
    # The WebSocket path's shortcut for MESSAGE packets: the same data, and None for the others
    # (decode_packet then decodes them, or refuses them).
    try:
        packet: Packet | None = eio.decode_packet(raw)
    except ProtocolError:
        packet = None
    expected = packet.data if packet is not None and packet.type is PacketType.MESSAGE else None
    assert eio.message_data(raw) == expected


def test_encoded_control_packets() -> None:
    assert (eio.CLOSE, eio.PING, eio.PONG, eio.NOOP) == ("1", "2", "3", "6")
    assert eio.PING + eio.PROBE == "2probe"
    assert eio.PONG_PROBE == "3probe"
    assert eio.message('2["a"]') == '42["a"]'
    assert eio.decode_packet(eio.message("x")) == Packet(PacketType.MESSAGE, "x")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty packet"),
        ("7", "unknown packet type '7'"),
        ("9", "unknown packet type '9'"),
        ("x", "unknown packet type 'x'"),
        ("/", "unknown packet type '/'"),  # the character just below "0"
        ("b4", "unknown packet type 'b'"),  # the base64 prefix means nothing on a WebSocket
        (" 4hello", "unknown packet type ' '"),
        ("\x00", "unknown packet type '\\x00'"),
        ("٤hello", "unknown packet type '٤'"),  # ARABIC-INDIC DIGIT FOUR is not a type
    ],
)
def test_malformed_packet(raw: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as error:
        eio.decode_packet(raw)
    assert str(error.value) == reason


# -- HTTP long-polling payloads (EIO §"HTTP long-polling") --------------------------------------


def test_payload_packets_are_joined_by_record_separator() -> None:
    assert eio.RECORD_SEPARATOR == "\x1e"
    body = eio.encode_payload(["0{}", '42["a"]', "2"])
    assert body == '0{}\x1e42["a"]\x1e2'
    assert eio.decode_payload(body) == [
        Packet(PacketType.OPEN, "{}"),
        Packet(PacketType.MESSAGE, '2["a"]'),
        Packet(PacketType.PING),
    ]


def test_payload_binary_packets_are_base64_behind_b() -> None:
    # The example of the spec: a text message, then the bytes 1 2 3 4.
    assert eio.encode_payload(["4hello", b"\x01\x02\x03\x04"]) == "4hello\x1ebAQIDBA=="
    assert eio.decode_payload("4hello\x1ebAQIDBA==") == [
        Packet(PacketType.MESSAGE, "hello"),
        Packet(PacketType.MESSAGE, b"\x01\x02\x03\x04"),
    ]


def test_payload_of_one_packet_and_empty_binary() -> None:
    assert eio.encode_payload(["6"]) == "6"
    assert eio.decode_payload("6") == [Packet(PacketType.NOOP)]
    assert eio.encode_payload([b""]) == "b"
    assert eio.decode_payload("b") == [Packet(PacketType.MESSAGE, b"")]
    assert eio.encode_payload([]) == ""


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", "empty payload"),
        ("4a\x1e", "empty packet"),  # trailing separator
        ("\x1e4a", "empty packet"),
        ("4a\x1e\x1e4b", "empty packet"),
        ("4a\x1e9", "unknown packet type '9'"),
        ("bAQID!A==", "invalid base64 in binary packet"),
        ("bAQIDBA", "invalid base64 in binary packet"),  # missing padding
        ("bAQ IDBA==", "invalid base64 in binary packet"),
        ("4a\x1eb%%%", "invalid base64 in binary packet"),
        ("bAQIDBA€=", "invalid base64 in binary packet"),  # non-ASCII in base64
        ("bé", "invalid base64 in binary packet"),
    ],
)
def test_malformed_payload(body: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as error:
        eio.decode_payload(body)
    assert str(error.value) == reason


# -- handshake (EIO §"Handshake") --------------------------------------------------------------


def test_open_packet_fields() -> None:
    packet = eio.open_packet("abc", ["websocket"], 25.0, 20.0, 1_000_000)
    assert packet.startswith("0{")
    decoded = eio.decode_packet(packet)
    assert decoded.type is PacketType.OPEN
    assert orjson.loads(decoded.data) == {
        "sid": "abc",
        "upgrades": ["websocket"],
        "pingInterval": 25000,
        "pingTimeout": 20000,
        "maxPayload": 1000000,
    }


def test_open_packet_intervals_are_integer_milliseconds() -> None:
    handshake = orjson.loads(eio.open_packet("s", [], 0.3, 0.25, 10)[1:])
    assert handshake["upgrades"] == []
    assert handshake["pingInterval"] == 300
    assert handshake["pingTimeout"] == 250
    assert all(type(handshake[key]) is int for key in ("pingInterval", "pingTimeout", "maxPayload"))


@pytest.mark.parametrize(
    ("code", "body"),
    [
        (eio.ErrorCode.UNKNOWN_TRANSPORT, {"code": 0, "message": "Transport unknown"}),
        (eio.ErrorCode.UNKNOWN_SID, {"code": 1, "message": "Session ID unknown"}),
        (eio.ErrorCode.BAD_HANDSHAKE_METHOD, {"code": 2, "message": "Bad handshake method"}),
        (eio.ErrorCode.BAD_REQUEST, {"code": 3, "message": "Bad request"}),
        (eio.ErrorCode.FORBIDDEN, {"code": 4, "message": "Forbidden"}),
        (eio.ErrorCode.UNSUPPORTED_PROTOCOL_VERSION, {"code": 5, "message": "Unsupported protocol version"}),
    ],
)
def test_error_bodies(code: eio.ErrorCode, body: dict[str, object]) -> None:
    assert orjson.loads(code.body()) == body


# -- query strings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "info"),
    [
        ("EIO=4&transport=polling", eio.RequestInfo("polling", None)),
        (b"EIO=4&transport=polling", eio.RequestInfo("polling", None)),
        ("EIO=4&transport=websocket", eio.RequestInfo("websocket", None)),
        ("transport=polling&t=NxYz&EIO=4&sid=abc-_1", eio.RequestInfo("polling", "abc-_1")),
        (b"EIO=4&transport=websocket&sid=a%2Bb", eio.RequestInfo("websocket", "a+b")),
        ("EIO=4&transport=polling&sid=", eio.RequestInfo("polling", None)),  # blank: no sid
        ("EIO=4&sid&transport=polling&sid=x&sid=y", eio.RequestInfo("polling", "x")),  # the first
        ("%45IO=4&transport=poll%69ng&sid=a+b", eio.RequestInfo("polling", "a b")),
    ],
)
def test_parse_query(query: str | bytes, info: eio.RequestInfo) -> None:
    assert eio.parse_query(query) == info


@given(st.text(alphabet="ab=&%+;2E8fx\xff ", max_size=30) | st.text(max_size=30))
@settings(max_examples=500)
def test_first_values_are_parse_qs_first_items(query: str) -> None:
    assert eio.first_values(query) == {name: values[0] for name, values in parse_qs(query).items()}


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ("", eio.ErrorCode.UNSUPPORTED_PROTOCOL_VERSION),
        ("transport=polling", eio.ErrorCode.UNSUPPORTED_PROTOCOL_VERSION),
        ("EIO=3&transport=polling", eio.ErrorCode.UNSUPPORTED_PROTOCOL_VERSION),
        ("EIO=5&transport=polling", eio.ErrorCode.UNSUPPORTED_PROTOCOL_VERSION),
        ("EIO=&transport=polling", eio.ErrorCode.UNSUPPORTED_PROTOCOL_VERSION),
        ("EIO=04&transport=polling", eio.ErrorCode.UNSUPPORTED_PROTOCOL_VERSION),
        ("EIO=4", eio.ErrorCode.UNKNOWN_TRANSPORT),
        ("EIO=4&transport=", eio.ErrorCode.UNKNOWN_TRANSPORT),
        ("EIO=4&transport=flashsocket", eio.ErrorCode.UNKNOWN_TRANSPORT),
        ("EIO=4&transport=Polling", eio.ErrorCode.UNKNOWN_TRANSPORT),
        ("EIO=4&transport=webtransport", eio.ErrorCode.UNKNOWN_TRANSPORT),
        (b"EIO=4&transport=polling\xff", eio.ErrorCode.UNKNOWN_TRANSPORT),
    ],
)
def test_parse_query_errors(query: str | bytes, code: eio.ErrorCode) -> None:
    with pytest.raises(eio.RequestError) as error:
        eio.parse_query(query)
    assert error.value.code is code
    assert str(error.value) == code.message


# -- properties --------------------------------------------------------------------------------


@settings(max_examples=500)
@given(st.text())
def test_any_text_packet_decodes_or_is_a_protocol_error(raw: str) -> None:
    try:
        packet = eio.decode_packet(raw)
    except ProtocolError:
        return
    assert isinstance(packet.type, PacketType)
    assert eio.decode_packet(str(int(packet.type)) + str(packet.data)) == packet


@given(st.binary())
def test_any_binary_frame_is_a_message(raw: bytes) -> None:
    assert eio.decode_packet(raw) == Packet(PacketType.MESSAGE, raw)


@settings(max_examples=500)
@given(st.text())
def test_any_payload_decodes_or_is_a_protocol_error(body: str) -> None:
    try:
        packets = eio.decode_payload(body)
    except ProtocolError:
        return
    assert len(packets) == body.count("\x1e") + 1


@settings(max_examples=500)
@given(st.binary())
def test_any_bytes_as_payload_decode_or_are_a_protocol_error(body: bytes) -> None:
    # Latin-1 maps every byte to a code point, so this reaches the non-ASCII paths too.
    with contextlib.suppress(ProtocolError):
        eio.decode_payload(body.decode("latin-1"))


text_packets = st.builds(
    lambda kind, data: str(kind) + data, st.integers(0, 6), st.text().filter(lambda s: "\x1e" not in s)
)


@given(st.lists(st.one_of(text_packets, st.binary()), min_size=1))
def test_payload_round_trip(packets: list[str | bytes]) -> None:
    decoded = eio.decode_payload(eio.encode_payload(packets))
    assert decoded == [
        Packet(PacketType(int(p[0])), p[1:]) if isinstance(p, str) else Packet(PacketType.MESSAGE, p)
        for p in packets
    ]
