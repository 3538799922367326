"""The envelope messages travel in between nodes: bytes in, bytes out, no I/O."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tidings.brokers.envelope import EnvelopeError, body, open_envelope, seal
from tidings.channels import SESSION_ID, check_session_id
from tidings.message import Audience, Outgoing, Position


def round_trip(outgoing: Outgoing, session_id: str | None = None) -> tuple[str | None, Outgoing]:
    return open_envelope(seal(session_id, body(outgoing)))


@pytest.mark.parametrize(
    "message",
    [
        "text",
        0,
        None,
        [1, "two", {"three": 3.5}],
        {"_placeholder": True, "num": 0},  # looks like one, but there are no attachments
        b"\x00\xff",
        bytearray(b"ba"),
        {"blob": b"\n\n", "list": [b"", {"deep": memoryview(b"mv")}], "text": "a\nb"},
    ],
)
def test_messages_come_back_as_they_went(message: object) -> None:
    session_id, outgoing = round_trip(Outgoing(message, "room"), "node.session")
    assert session_id == "node.session"
    assert (outgoing.channel, outgoing.event) == ("room", None)
    expected = message
    if isinstance(message, (bytearray, memoryview)):
        expected = bytes(message)
    if isinstance(message, dict) and "list" in message:
        expected = {"blob": b"\n\n", "list": [b"", {"deep": b"mv"}], "text": "a\nb"}
    assert outgoing.message == expected


def test_an_event_with_its_arguments_and_no_session() -> None:
    session_id, outgoing = round_trip(Outgoing(["a", b"b"], event="tick"))
    assert session_id is None
    assert (outgoing.message, outgoing.channel, outgoing.event) == (["a", b"b"], None, "tick")


def test_an_emit_carries_its_audience() -> None:
    audience = Audience(("one", "two"), ("abcdefgh.0123456789abcdefghij",), frozenset({"x"}), frozenset())
    _, outgoing = round_trip(Outgoing(["hi"], event="news", audience=audience))
    assert (outgoing.message, outgoing.event, outgoing.audience) == (["hi"], "news", audience)
    assert round_trip(Outgoing(["hi"], event="news"))[1].audience is None


def test_the_body_is_encoded_once_and_json_refusals_are_type_errors() -> None:
    with pytest.raises(TypeError):
        body(Outgoing({1, 2}))
    nested: list[object] = []
    for _ in range(100_000):
        nested = [nested, b"x"]
    with pytest.raises(TypeError):
        body(Outgoing(nested))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"2:\n[null,null,1,[]]",  # another version
        b"1:",  # no header
        b"1:\nnot json",
        b'1:\n{"a": 1}',
        b"1:\n[null,null,1]",
        b"1:\n[5,null,1,[]]",
        b"1:\n[null,null,1,[3]]\nab",  # attachment lengths that do not add up
        b"1:\n[null,null,1,[-1]]\n",
        b'1:\n[null,null,1,"x"]',
        b'1:\n[null,null,{"_placeholder":true,"num":1},[1]]\na',  # no attachment 1
        b"1:\xff\n[null,null,1,[]]",
        b"#12\n1:\n[null,null,1,[]]",  # a log offset that is no stream id
        b"#1-0",
        b'1:\n[null,"e",[],[],5]',  # an audience that is none
        b'1:\n[null,"e",[],[],[[],[],[]]]',
        b'1:\n[null,"e",[],[],[[1],[],[],[]]]',
        b'1:\n[null,"e",[],[],[[],["no session\\nid"],[],[]]]',
        b'1:\n[null,"e",[],[],[[],[],[],[]],0]',
    ],
)
def test_what_is_no_envelope_is_refused(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        open_envelope(data)


# -- what callers pass cannot change what an envelope says (issue 12, item 4) -------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
    max_leaves=10,
)
#: A session id of a Redis node, then what an attacker appends: a line break, a header of its own ...
forgeries = st.builds(
    lambda tail: "abcdefgh.0123456789abcdefghij" + tail,
    st.text(st.sampled_from(["\n", "\r", "@", ":", "1", "[", '"', "\x00", "\u2028", "x"]), min_size=1),
)
session_ids = st.none() | st.from_regex(SESSION_ID, fullmatch=True) | forgeries | st.text()


@settings(max_examples=500)
@given(session_ids, st.none() | st.text(), st.none() | st.text(), json_values)
def test_no_session_id_or_channel_changes_what_the_envelope_carries(
    session_id: str | None, channel: str | None, event: str | None, message: object
) -> None:
    data = body(Outgoing(message, channel, event))
    try:
        sealed = seal(session_id, data)
    except ValueError:
        assert check_session_id(session_id) is not None  # only what is no session id is refused
        return
    # As Redis delivers it, with the position line the history script puts before it, and with the
    # log offset line the recovery log puts before both.
    for envelope, position, log_offset in (
        (sealed, None, None),
        (b"@7:epoch\n" + sealed, Position(7, "epoch"), None),
        (b"#1712-3\n@7:epoch\n" + sealed, Position(7, "epoch"), "1712-3"),
    ):
        opened_id, opened = open_envelope(envelope)
        assert opened_id == session_id
        assert (opened.channel, opened.event, opened.message) == (channel, event, message)
        assert (opened.position, opened.log_offset) == (position, log_offset)


def test_a_session_id_with_a_header_of_its_own_is_refused() -> None:
    forged = 'abcdefgh.0123456789abcdefghij\n["room-private",null,"forged",[]]'
    with pytest.raises(ValueError, match="not a session id"):
        seal(forged, body(Outgoing("harmless")))


@pytest.mark.parametrize(("channel", "event"), [(5, None), (["room"], None), (None, b"tick")])
def test_a_channel_or_event_that_is_no_string_is_refused(channel: object, event: object) -> None:
    with pytest.raises(TypeError, match="must be strings"):
        body(Outgoing("m", channel, event))  # type: ignore[arg-type]
