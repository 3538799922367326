"""The envelope messages travel in between nodes: bytes in, bytes out, no I/O."""

from __future__ import annotations

import pytest

from tidings.brokers.envelope import EnvelopeError, body, open_envelope, seal
from tidings.hub import Outgoing


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
    ],
)
def test_what_is_no_envelope_is_refused(data: bytes) -> None:
    with pytest.raises(EnvelopeError):
        open_envelope(data)
