"""Socket.IO v5 wire format, sans I/O: packet encoding, binary attachments and the decoder.

Spec: https://socket.io/docs/v4/socket-io-protocol/
"""

from __future__ import annotations

import copy
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.protocol import ProtocolError
from tidings.protocol import socketio as sio
from tidings.protocol.socketio import Decoder, Packet, PacketType

PLACEHOLDER_0 = '{"_placeholder":true,"num":0}'
PLACEHOLDER_1 = '{"_placeholder":true,"num":1}'
PLACEHOLDER_2 = '{"_placeholder":true,"num":2}'

# -- encoding and decoding the valid packets of the spec ------------------------------------------

VALID = [
    ("0", Packet(PacketType.CONNECT)),
    ('0{"token":"x"}', Packet(PacketType.CONNECT, "/", {"token": "x"})),
    ("0/admin,", Packet(PacketType.CONNECT, "/admin")),
    ('0/admin,{"token":"x"}', Packet(PacketType.CONNECT, "/admin", {"token": "x"})),
    ('0{"sid":"oSO0OpakMV_3jnilAAAA"}', Packet(PacketType.CONNECT, "/", {"sid": "oSO0OpakMV_3jnilAAAA"})),
    ("1", Packet(PacketType.DISCONNECT)),
    ("1/admin,", Packet(PacketType.DISCONNECT, "/admin")),
    ('2["hello",1]', Packet(PacketType.EVENT, "/", ["hello", 1])),
    ('2["a"]', Packet(PacketType.EVENT, "/", ["a"])),
    ('2/admin,["a"]', Packet(PacketType.EVENT, "/admin", ["a"])),
    ('213["a"]', Packet(PacketType.EVENT, "/", ["a"], 13)),
    ('20["a"]', Packet(PacketType.EVENT, "/", ["a"], 0)),
    ('2/admin,456["project:delete",123]', Packet(PacketType.EVENT, "/admin", ["project:delete", 123], 456)),
    ('2["",null,{"k":[1.5,true]}]', Packet(PacketType.EVENT, "/", ["", None, {"k": [1.5, True]}])),
    ('2["héllo ✓"]', Packet(PacketType.EVENT, "/", ["héllo ✓"])),
    ('313["ok"]', Packet(PacketType.ACK, "/", ["ok"], 13)),
    ('3/admin,13["ok"]', Packet(PacketType.ACK, "/admin", ["ok"], 13)),
    ("30[]", Packet(PacketType.ACK, "/", [], 0)),
    ('4{"message":"Not authorized"}', Packet(PacketType.CONNECT_ERROR, "/", {"message": "Not authorized"})),
    (
        '4/admin,{"message":"Invalid namespace"}',
        Packet(PacketType.CONNECT_ERROR, "/admin", {"message": "Invalid namespace"}),
    ),
    (
        '4{"message":"refused","data":{"retry":false}}',
        Packet(PacketType.CONNECT_ERROR, "/", {"message": "refused", "data": {"retry": False}}),
    ),
]


@pytest.mark.parametrize(("text", "packet"), VALID)
def test_encode(text: str, packet: Packet) -> None:
    assert sio.encode(packet) == [text]


@pytest.mark.parametrize(("text", "packet"), VALID)
def test_decode(text: str, packet: Packet) -> None:
    assert sio.decode_text(text) == (packet, 0)
    assert Decoder().receive_text(text) == packet


@pytest.mark.parametrize(
    ("text", "packet"),
    [
        ("0/admin", Packet(PacketType.CONNECT, "/admin")),  # namespace without the trailing comma
        ("0null", Packet(PacketType.CONNECT)),
        ('4"Not authorized"', Packet(PacketType.CONNECT_ERROR, "/", "Not authorized")),  # v4 clients
        ('2["a"]  ', Packet(PacketType.EVENT, "/", ["a"])),  # JSON whitespace
        ('2 ["a"]', Packet(PacketType.EVENT, "/", ["a"])),
    ],
)
def test_decode_lenient_forms(text: str, packet: Packet) -> None:
    assert sio.decode_text(text) == (packet, 0)


def test_encode_binary_event() -> None:
    # SIO §"Sending and receiving data": bytes are replaced by placeholders and sent after the text.
    packet = Packet(PacketType.EVENT, "/", ["hello", b"\x01\x02\x03"])
    assert sio.encode(packet) == [f'51-["hello",{PLACEHOLDER_0}]', b"\x01\x02\x03"]


def test_encode_binary_ack_with_namespace_and_id() -> None:
    packet = Packet(PacketType.ACK, "/admin", [b"\x03\x02\x01"], 456)
    assert sio.encode(packet) == [f"61-/admin,456[{PLACEHOLDER_0}]", b"\x03\x02\x01"]


def test_encode_numbers_attachments_depth_first() -> None:
    packet = Packet(PacketType.EVENT, "/", ["a", {"x": b"0", "y": [bytearray(b"1"), memoryview(b"2")]}], 7)
    text, *attachments = sio.encode(packet)
    assert attachments == [b"0", b"1", b"2"]
    assert all(type(a) is bytes for a in attachments)
    assert text.startswith("53-7[")
    assert orjson.loads(text[len("53-7") :]) == [
        "a",
        {
            "x": {"_placeholder": True, "num": 0},
            "y": [{"_placeholder": True, "num": 1}, {"_placeholder": True, "num": 2}],
        },
    ]


def test_encode_tuple_with_bytes() -> None:
    assert sio.encode(Packet(PacketType.EVENT, "/", ["a", (1, b"z")])) == [
        f'51-["a",[1,{PLACEHOLDER_0}]]',
        b"z",
    ]


def test_encode_rejects_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        sio.encode(Packet(PacketType.EVENT, "/", ["a", object()]))
    with pytest.raises(TypeError):
        sio.encode(Packet(PacketType.EVENT, "/", ["a", b"x", {1, 2}]))


def test_decode_binary_event_through_decoder() -> None:
    decoder = Decoder()
    assert sio.decode_text(f'51-["a",{PLACEHOLDER_0}]') == (
        Packet(PacketType.BINARY_EVENT, "/", ["a", {"_placeholder": True, "num": 0}]),
        1,
    )
    assert decoder.receive_text(f'51-["a",{PLACEHOLDER_0}]') is None
    assert decoder.awaiting_attachments
    assert decoder.receive_binary(b"\x01\x02\x03", 0.0) == Packet(
        PacketType.EVENT, "/", ["a", b"\x01\x02\x03"]
    )
    assert not decoder.awaiting_attachments
    # The decoder is ready for the next packet.
    assert decoder.receive_text('2["b"]') == Packet(PacketType.EVENT, "/", ["b"])


def test_decode_binary_ack_with_two_attachments() -> None:
    # Placeholders need not come in the order of their numbers: an encoder numbers them as it walks
    # its own maps, which may list their keys in another order than the JSON text does.
    decoder = Decoder()
    text = f'62-/admin,456[{PLACEHOLDER_1},{{"inner":{PLACEHOLDER_0}}}]'
    assert sio.decode_text(text)[1] == 2
    assert decoder.receive_text(text) is None
    assert decoder.receive_binary(b"first", 0.0) is None
    assert decoder.awaiting_attachments
    assert decoder.receive_binary(b"second", 0.0) == Packet(
        PacketType.ACK, "/admin", [b"second", {"inner": b"first"}], 456
    )


def test_placeholder_in_text_packet_is_left_alone() -> None:
    # Only binary packets have attachments; in a text packet the object is plain data.
    packet = Decoder().receive_text(f'2["a",{PLACEHOLDER_0}]')
    assert packet == Packet(PacketType.EVENT, "/", ["a", {"_placeholder": True, "num": 0}])


def test_non_placeholder_objects_in_binary_packet_are_left_alone() -> None:
    decoder = Decoder()
    text = '51-["a",{"_placeholder":false,"num":0},{"_placeholder":1},{"num":0},' + PLACEHOLDER_0 + "]"
    assert decoder.receive_text(text) is None
    assert decoder.receive_binary(b"x", 0.0) == Packet(
        PacketType.EVENT,
        "/",
        ["a", {"_placeholder": False, "num": 0}, {"_placeholder": 1}, {"num": 0}, b"x"],
    )


TWICE = "attachment placeholder used twice"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        # one attachment standing for many values: each would be sent on as bytes of its own
        (f'["a",{PLACEHOLDER_0},{PLACEHOLDER_0}]', TWICE),
        (
            f'["a",[{PLACEHOLDER_1},{{"b":{PLACEHOLDER_1}}}],{PLACEHOLDER_0}]',
            "attachment placeholder used twice",
        ),
        ("[" + ",".join(['"a"'] + [PLACEHOLDER_0] * 200) + "]", TWICE),
        # an attachment nothing refers to
        (f'["a",{PLACEHOLDER_0}]', "attachment without a placeholder"),
        ('["a"]', "attachment without a placeholder"),
        # more placeholders than attachments
        (
            f'["a",{PLACEHOLDER_0},{PLACEHOLDER_1},{{"_placeholder":true,"num":2}}]',
            "invalid attachment placeholder",
        ),
    ],
)
def test_each_attachment_is_referenced_exactly_once(data: str, reason: str) -> None:
    decoder = Decoder()
    assert decoder.receive_text(f"52-{data}") is None
    assert decoder.receive_binary(b"first", 0.0) is None
    with pytest.raises(ProtocolError, match=f"^{reason}$"):
        decoder.receive_binary(b"second", 0.0)
    assert not decoder.awaiting_attachments


def test_attachment_count_up_to_max_attachments() -> None:
    decoder = Decoder(max_attachments=3)
    placeholders = ",".join(f'{{"_placeholder":true,"num":{n}}}' for n in range(3))
    assert decoder.receive_text(f'53-["a",{placeholders}]') is None
    assert decoder.receive_binary(b"0", 0.0) is None
    assert decoder.receive_binary(b"1", 0.0) is None
    assert decoder.receive_binary(b"2", 0.0) == Packet(PacketType.EVENT, "/", ["a", b"0", b"1", b"2"])


def test_limits_are_inclusive() -> None:
    namespace = "/" + "n" * 255
    assert sio.decode_text(f'2{namespace},["a"]')[0].namespace == namespace
    assert sio.decode_text('2999999999999999["a"]')[0].id == 999_999_999_999_999
    assert sio.decode_text(f'5999-["a",{PLACEHOLDER_0}]')[1] == 999


def test_deeply_nested_binary_packet() -> None:
    depth = sio.MAX_DEPTH - 2  # with the arguments' list and the placeholder's object: MAX_DEPTH
    decoder = Decoder()
    assert decoder.receive_text('51-["a",' + "[" * depth + PLACEHOLDER_0 + "]" * depth + "]") is None
    packet = decoder.receive_binary(b"deep", 0.0)
    assert packet is not None
    value = packet.data[1]
    for _ in range(depth):
        assert type(value) is list and len(value) == 1
        value = value[0]
    assert value == b"deep"


# -- what a pending binary packet may hold, and for how long -------------------------------------


def test_attachments_up_to_max_binary_size() -> None:
    decoder = Decoder(max_binary_size=10)
    assert decoder.receive_text(f'52-["a",{PLACEHOLDER_0},{PLACEHOLDER_1}]') is None
    assert decoder.receive_binary(b"123456", 0.0) is None
    assert decoder.receive_binary(b"7890", 0.0) == Packet(PacketType.EVENT, "/", ["a", b"123456", b"7890"])


def test_attachments_over_max_binary_size() -> None:
    # Announce 10, send 1 MB each: the decoder gives up at the attachment that passes the limit.
    decoder = Decoder(max_binary_size=1_000_000)
    placeholders = ",".join(f'{{"_placeholder":true,"num":{n}}}' for n in range(10))
    assert decoder.receive_text(f'510-["a",{placeholders}]') is None
    assert decoder.receive_binary(b"\x00" * 1_000_000, 0.0) is None
    with pytest.raises(ProtocolError, match=r"^binary attachments over 1000000 bytes$"):
        decoder.receive_binary(b"\x00", 0.0)
    assert not decoder.awaiting_attachments  # what it held is let go


def test_attachments_in_time() -> None:
    decoder = Decoder(attachment_timeout=5)
    assert decoder.deadline is None
    assert decoder.receive_text(f'52-["a",{PLACEHOLDER_0},{PLACEHOLDER_1}]') is None
    assert decoder.deadline == float("inf")  # not timed until its owner says when the text came
    assert decoder.start_deadline(100.0) == 105.0
    assert decoder.deadline == 105.0
    decoder.check_deadline(104.5)
    assert decoder.receive_binary(b"0", 104.6) is None
    assert decoder.deadline == 105.0  # from the text part, not from the last attachment
    assert decoder.receive_binary(b"1", 104.9) is not None
    assert decoder.deadline is None
    decoder.check_deadline(200.0)  # nothing pending: nothing due


def test_attachments_overdue() -> None:
    decoder = Decoder(attachment_timeout=5)
    assert decoder.receive_text(f'52-["a",{PLACEHOLDER_0},{PLACEHOLDER_1}]') is None
    decoder.start_deadline(100.0)
    assert decoder.receive_binary(b"0", 101.0) is None
    with pytest.raises(ProtocolError, match=r"^binary attachments not received within 5s$"):
        decoder.check_deadline(105.0)
    assert decoder.deadline is None and not decoder.awaiting_attachments


def test_attachment_after_the_deadline() -> None:
    # Its owner's timer has not fired yet (a busy loop): the late attachment is refused all the same.
    decoder = Decoder(attachment_timeout=0.5)
    assert decoder.receive_text(f'51-["a",{PLACEHOLDER_0}]') is None
    decoder.start_deadline(100.0)
    with pytest.raises(ProtocolError, match=r"^binary attachments not received within 0.5s$"):
        decoder.receive_binary(b"0", 101.0)


# -- JSON tidings could not send on as it came ----------------------------------------------------


def nested(depth: int, inner: str = "1") -> str:
    """JSON ``depth`` levels deep, lists and objects in turn."""
    for level in range(depth):
        inner = f"[{inner}]" if level % 2 else f'{{"k":{inner}}}'
    return inner


def test_json_up_to_max_depth() -> None:
    text = '2["a",' + nested(sio.MAX_DEPTH - 1) + "]"
    packet = Decoder().receive_text(text)
    assert packet is not None
    assert sio.encode(packet) == [text.replace(" ", "")]  # it can be sent on


@pytest.mark.parametrize(
    "text",
    [
        '2["a",' + nested(sio.MAX_DEPTH) + "]",
        "2[" + "[" * 1000 + "]" * 1000 + "]",  # the issue's: parsed, but could not be encoded again
        '0{"auth":' + nested(500) + "}",
        "5" + f'1-["a",{nested(sio.MAX_DEPTH, PLACEHOLDER_0)}]',
    ],
)
def test_json_deeper_than_max_depth(text: str) -> None:
    with pytest.raises(ProtocolError, match=rf"^JSON nested deeper than {sio.MAX_DEPTH} levels$"):
        Decoder().receive_text(text)


def test_many_brackets_are_not_depth() -> None:
    text = '2["a",[' + ",".join(["[]", "{}"] * 500) + "]]"
    assert Decoder().receive_text(text) == Packet(PacketType.EVENT, "/", ["a", [[], {}] * 500])


@pytest.mark.parametrize(
    "value",
    [2**64 - 1, -(2**63), 2**63, 10**18, -(10**18)],
)
def test_integers_of_64_bits_stay_exact(value: int) -> None:
    packet = Decoder().receive_text(f'2["a",{{"n":[{value}]}}]')
    assert packet is not None
    assert packet.data[1]["n"][0] == value and type(packet.data[1]["n"][0]) is int


@pytest.mark.parametrize(
    "literal",
    [str(2**64), str(-(2**63) - 1), str(2**70), "9" * 300, "-" + "1" * 30],
)
def test_integers_beyond_64_bits(literal: str) -> None:
    # The JSON parser would turn them into floats, silently: 2**70 is no 1.1805916207174113e+21.
    with pytest.raises(ProtocolError, match=r"^integer beyond 64 bits$"):
        Decoder().receive_text(f'2["a",{{"n":[{literal}]}}]')


@pytest.mark.parametrize(
    "text",
    [
        '2["a","12345678901234567890123"]',  # digits in a string
        '2["a",1.2345678901234567890123]',  # and in a float: floats are floats
        '2["a",12345678901234567890e3]',
        '2["a",{"12345678901234567890123":1}]',
    ],
)
def test_long_digit_runs_that_are_no_integers(text: str) -> None:
    assert Decoder().receive_text(text) == Packet(PacketType.EVENT, "/", orjson.loads(text[1:]))


def test_loads() -> None:
    assert sio.loads('{"a":[1,2.5,"x"]}') == {"a": [1, 2.5, "x"]}
    for text, reason in [
        ("NaN", "invalid JSON payload"),
        (str(2**64), "integer beyond 64 bits"),
        (nested(sio.MAX_DEPTH + 1), f"JSON nested deeper than {sio.MAX_DEPTH} levels"),
    ]:
        with pytest.raises(ProtocolError, match=f"^{reason}$"):
            sio.loads(text)


# -- malformed packets ---------------------------------------------------------------------------

TOO_DEEP = "2[" + "[" * 1100 + "]" * 1100 + "]"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty packet"),
        ("7", "unknown packet type '7'"),
        ("9[]", "unknown packet type '9'"),
        ("x", "unknown packet type 'x'"),
        ("/admin,", "unknown packet type '/'"),
        ('["a"]', "unknown packet type '['"),
        (" 2[]", "unknown packet type ' '"),
        ("\u0662[]", "unknown packet type '\u0662'"),
        # bad JSON
        ("2{", "invalid JSON payload"),
        ("2notjson", "invalid JSON payload"),
        ('2["a"', "invalid JSON payload"),
        ('2["a"]x', "invalid JSON payload"),
        ('2["a"]["b"]', "invalid JSON payload"),
        ("2[NaN]", "invalid JSON payload"),
        ("2['a']", "invalid JSON payload"),
        ('2["\ud800"]', "invalid JSON payload"),  # a lone surrogate is not UTF-8
        ('0{"token":"x"', "invalid JSON payload"),
        ('2admin,["a"]', "invalid JSON payload"),  # namespace without the leading slash
        ('2/admin["a"]', "invalid payload for EVENT"),  # namespace without the comma swallows the data
        ('213-["a"]', "invalid JSON payload"),  # attachment count on a text packet
        (TOO_DEEP, "invalid JSON payload"),
        # CONNECT: an object or nothing
        ("0[]", "invalid payload for CONNECT"),
        ('0"x"', "invalid payload for CONNECT"),
        ("0/admin,true", "invalid payload for CONNECT"),
        # DISCONNECT: nothing
        ("1{}", "invalid payload for DISCONNECT"),
        ('1/admin,"bye"', "invalid payload for DISCONNECT"),
        # EVENT: a non-empty list whose first element is a non-reserved event name
        ("2", "invalid payload for EVENT"),
        ("2/admin,", "invalid payload for EVENT"),
        ("213", "invalid payload for EVENT"),
        ("2[]", "invalid payload for EVENT"),
        ('2{"a":1}', "invalid payload for EVENT"),
        ('2"a"', "invalid payload for EVENT"),
        ("2null", "invalid payload for EVENT"),
        ("2[1]", "invalid payload for EVENT"),
        ("2[null]", "invalid payload for EVENT"),
        ('2[["a"]]', "invalid payload for EVENT"),
        ('2[{"a":1}]', "invalid payload for EVENT"),
        ('2["connect"]', "invalid payload for EVENT"),
        ('2["connect_error",{}]', "invalid payload for EVENT"),
        ('2/admin,1["disconnect"]', "invalid payload for EVENT"),
        ('2["disconnecting"]', "invalid payload for EVENT"),
        ('2["newListener"]', "invalid payload for EVENT"),
        ('2["removeListener"]', "invalid payload for EVENT"),
        # ACK: a list, and an id to refer to
        ("3", "invalid payload for ACK"),
        ('3["ok"]', "invalid payload for ACK"),
        ('3/admin,["ok"]', "invalid payload for ACK"),
        ("313", "invalid payload for ACK"),
        ('313{"ok":1}', "invalid payload for ACK"),
        ('313"ok"', "invalid payload for ACK"),
        # CONNECT_ERROR: an object or a string
        ("4", "invalid payload for CONNECT_ERROR"),
        ("4[]", "invalid payload for CONNECT_ERROR"),
        ("41", "invalid payload for CONNECT_ERROR"),
        # BINARY_EVENT / BINARY_ACK: same rules once the attachment count is read
        ("51-", "invalid payload for BINARY_EVENT"),
        ('51-{"a":1}', "invalid payload for BINARY_EVENT"),
        ('51-["connect"]', "invalid payload for BINARY_EVENT"),
        ("61-[]", "invalid payload for BINARY_ACK"),
        ("61-/admin,{}", "invalid payload for BINARY_ACK"),
        # attachment count
        ('5-["a"]', "illegal attachments"),
        ('5abc-["a"]', "illegal attachments"),
        ("5999999-", "illegal attachments"),
        ('51000-["a"]', "illegal attachments"),
        ('5["a"]', "illegal attachments"),
        ('51["a"]', "illegal attachments"),
        ("5", "illegal attachments"),
        ('6/admin,1-["a"]', "illegal attachments"),
        ('5+1-["a"]', "illegal attachments"),
        ('5 1-["a"]', "illegal attachments"),
        ('5²-["a"]', "illegal attachments"),  # str.isdigit() says yes, int() says no
        ('5\u0661-["a"]', "illegal attachments"),  # ARABIC-INDIC DIGIT ONE is no ASCII digit
        # limits
        ("2/" + "n" * 256 + ',["a"]', "namespace too long"),
        ("2/" + "n" * 100_000, "namespace too long"),
        ('21234567890123456["a"]', "ack id too long"),
        ("3" + "9" * 1000 + "[]", "ack id too long"),
    ],
)
def test_malformed_packet(text: str, reason: str) -> None:
    with pytest.raises(ProtocolError) as error:
        sio.decode_text(text)
    assert str(error.value) == reason
    with pytest.raises(ProtocolError) as error:
        Decoder().receive_text(text)
    assert str(error.value) == reason


def test_binary_packet_without_attachments() -> None:
    with pytest.raises(ProtocolError, match=r"^binary packet without attachments$"):
        Decoder().receive_text('50-["a"]')
    with pytest.raises(ProtocolError, match=r"^binary packet without attachments$"):
        Decoder().receive_text("60-1[]")


def test_more_attachments_than_max_attachments() -> None:
    with pytest.raises(ProtocolError, match=r"^too many attachments$"):
        Decoder(max_attachments=2).receive_text('53-["a"]')
    with pytest.raises(ProtocolError, match=r"^too many attachments$"):
        Decoder().receive_text('5999-["a"]')  # default: 10
    assert Decoder().receive_text('510-["a"]') is None


def test_unexpected_binary_message() -> None:
    decoder = Decoder()
    with pytest.raises(ProtocolError, match=r"^unexpected binary message$"):
        decoder.receive_binary(b"\x01", 0.0)
    assert decoder.receive_text('2["a"]') == Packet(PacketType.EVENT, "/", ["a"])
    with pytest.raises(ProtocolError, match=r"^unexpected binary message$"):
        decoder.receive_binary(b"\x01", 0.0)


def test_unexpected_binary_message_after_the_last_attachment() -> None:
    decoder = Decoder()
    decoder.receive_text(f'51-["a",{PLACEHOLDER_0}]')
    assert decoder.receive_binary(b"1", 0.0) is not None
    with pytest.raises(ProtocolError, match=r"^unexpected binary message$"):
        decoder.receive_binary(b"2", 0.0)


@pytest.mark.parametrize("text", ['2["a"]', f'51-["a",{PLACEHOLDER_0}]', "0", "bogus"])
def test_text_while_attachments_are_expected(text: str) -> None:
    decoder = Decoder()
    assert decoder.receive_text(f'52-["a",{PLACEHOLDER_0},{PLACEHOLDER_1}]') is None
    assert decoder.receive_binary(b"first", 0.0) is None
    with pytest.raises(ProtocolError, match=r"^text message while binary attachments were expected$"):
        decoder.receive_text(text)


@pytest.mark.parametrize(
    "placeholder",
    [
        '{"_placeholder":true,"num":1}',  # only one attachment
        '{"_placeholder":true,"num":-1}',
        '{"_placeholder":true,"num":18446744073709551615}',
        '{"_placeholder":true,"num":"0"}',
        '{"_placeholder":true,"num":0.5}',
        '{"_placeholder":true,"num":true}',
        '{"_placeholder":true,"num":false}',
        '{"_placeholder":true,"num":null}',
        '{"_placeholder":true,"num":[0]}',
        '{"_placeholder":true}',
    ],
)
def test_bad_placeholder(placeholder: str) -> None:
    decoder = Decoder()
    assert decoder.receive_text(f'51-["a",{{"nested":[{placeholder}]}}]') is None
    with pytest.raises(ProtocolError, match=r"^invalid attachment placeholder$"):
        decoder.receive_binary(b"\x00", 0.0)
    # The broken packet is gone: the decoder does not hold it any more.
    assert not decoder.awaiting_attachments


def test_bad_placeholder_in_binary_ack() -> None:
    decoder = Decoder()
    assert decoder.receive_text('61-1[{"_placeholder":true,"num":2}]') is None
    with pytest.raises(ProtocolError, match=r"^invalid attachment placeholder$"):
        decoder.receive_binary(b"\x00", 0.0)


# -- properties ----------------------------------------------------------------------------------

# Text that looks like a Socket.IO packet, to get past the first checks more often than st.text().
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=10,
)
placeholders = st.fixed_dictionaries(
    {"_placeholder": st.sampled_from([True, False, 1]), "num": st.integers(-2, 12) | json_values}
)
json_texts = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(["a", "connect"]), json_values, placeholders), max_size=4).map(
        lambda items: json.dumps(items, ensure_ascii=False)
    ),
    json_values.map(lambda value: json.dumps(value, ensure_ascii=False)),  # NaN and big ints too
)
packet_like = st.builds(
    lambda *parts: "".join(parts),
    st.sampled_from("0123456789x"),
    st.sampled_from(["", "1-", "2-", "0-", "-", "11-", "999-", "1"]),
    st.sampled_from(["", "/", "/admin,", "/admin", ",", "/" + "n" * 300 + ","]),
    st.sampled_from(["", "0", "13", "9" * 16]),
    json_texts,
)
messages = st.lists(st.one_of(packet_like, st.text(), st.binary()), max_size=8)


@settings(max_examples=500)
@given(st.text())
def test_any_text_decodes_or_is_a_protocol_error(text: str) -> None:
    try:
        packet, attachments = sio.decode_text(text)
    except ProtocolError:
        return
    assert isinstance(packet.type, PacketType)
    assert attachments >= 0


@settings(max_examples=500)
@given(packet_like)
def test_any_packet_like_text_decodes_or_is_a_protocol_error(text: str) -> None:
    try:
        result = Decoder().receive_text(text)
    except ProtocolError:
        return
    assert result is None or isinstance(result, Packet)


@settings(max_examples=500)
@given(messages)
def test_any_sequence_of_messages_decodes_or_is_a_protocol_error(messages: list[str | bytes]) -> None:
    decoder = Decoder()
    for message in messages:
        try:
            result = (
                decoder.receive_text(message)
                if isinstance(message, str)
                else decoder.receive_binary(message, 0.0)
            )
        except ProtocolError:
            continue
        if result is not None:
            # A binary packet comes out complete, as the EVENT or ACK it carries.
            assert result.type not in (PacketType.BINARY_EVENT, PacketType.BINARY_ACK)
            assert not decoder.awaiting_attachments


# Round trip: JSON-able data, with bytes anywhere in it where the spec allows binary (EVENT, ACK).
def _no_placeholder_keys(value: dict[str, Any]) -> bool:
    return "_placeholder" not in value


def _values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.recursive(
        leaves,
        lambda children: (
            st.lists(children, max_size=4)
            | st.dictionaries(st.text(), children, max_size=4).filter(_no_placeholder_keys)
        ),
        max_leaves=12,
    )


json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
plain_values = _values(json_leaves)
wire_values = _values(json_leaves | st.binary(max_size=20))
namespaces = st.just("/") | st.text(max_size=20).filter(lambda s: "," not in s).map(lambda s: "/" + s)
ack_ids = st.integers(0, 10**15 - 1)
event_names = st.text().filter(lambda name: name not in sio.RESERVED_EVENTS)
json_objects = st.dictionaries(st.text(), plain_values, max_size=4).filter(_no_placeholder_keys)

packets = st.one_of(
    st.builds(Packet, st.just(PacketType.CONNECT), namespaces, st.none() | json_objects),
    st.builds(Packet, st.just(PacketType.DISCONNECT), namespaces),
    st.builds(
        Packet,
        st.just(PacketType.EVENT),
        namespaces,
        st.builds(lambda name, args: [name, *args], event_names, st.lists(wire_values, max_size=4)),
        st.none() | ack_ids,
    ),
    st.builds(Packet, st.just(PacketType.ACK), namespaces, st.lists(wire_values, max_size=4), ack_ids),
    st.builds(Packet, st.just(PacketType.CONNECT_ERROR), namespaces, st.text() | json_objects),
)


def _decode_all(messages: list[str | bytes]) -> Packet:
    decoder = Decoder(max_attachments=10_000)
    text, *attachments = messages
    assert isinstance(text, str)
    result = decoder.receive_text(text)
    for attachment in attachments:
        assert result is None
        assert isinstance(attachment, bytes)
        result = decoder.receive_binary(attachment, 0.0)
    assert result is not None
    assert not decoder.awaiting_attachments
    return result


@given(packets)
def test_round_trip(packet: Packet) -> None:
    original = copy.deepcopy(packet)
    encoded = sio.encode(packet)
    assert packet == original  # encoding leaves the packet alone
    assert _decode_all(encoded) == original


@given(namespaces, st.lists(st.binary(), min_size=1, max_size=5), st.none() | ack_ids)
def test_round_trip_binary_event_and_ack(namespace: str, blobs: list[bytes], ack_id: int | None) -> None:
    event = Packet(PacketType.EVENT, namespace, ["blobs", {"list": blobs}, blobs[0]], ack_id)
    text, *attachments = sio.encode(event)
    assert isinstance(text, str)
    assert text.startswith(f"5{len(blobs) + 1}-")
    assert attachments == [*blobs, blobs[0]]
    assert _decode_all([text, *attachments]) == event
    ack = Packet(PacketType.ACK, namespace, blobs, ack_id or 0)
    text, *attachments = sio.encode(ack)
    assert isinstance(text, str)
    assert text.startswith(f"6{len(blobs)}-")
    assert _decode_all([text, *attachments]) == ack


def test_bytes_outside_events_and_acks_cannot_be_encoded() -> None:
    with pytest.raises(TypeError):
        sio.encode(Packet(PacketType.CONNECT_ERROR, "/", {"message": "no", "data": b"\x00"}))


def test_data_nested_too_deeply_is_a_type_error_not_a_recursion_error() -> None:
    data: list[Any] = [b"\x00"]
    for _ in range(5000):
        data = [data]
    with pytest.raises(TypeError, match="nested too deeply"):
        sio.encode(Packet(PacketType.ACK, "/", data, 1))
