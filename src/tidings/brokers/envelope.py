"""The envelope a message travels in between nodes: sans-I/O bytes in, bytes out.

One envelope is built per publish (in the publisher's thread) and decoded once per receiving node::

    1:<session id>\\n<header JSON>[\\n<attachment><attachment>...]

- ``1:`` is the format version; ``<session id>`` is the sender to leave out of a channel or namespace
  broadcast, or the recipient of a send, or empty. Only a session id (:data:`tidings.channels.SESSION_ID`:
  no newline) is sealed in: nothing a caller passes can end the line early and write a header.
- ``<header JSON>`` is ``[channel, event, message, [attachment lengths]]``: ``channel`` is the channel
  of a channel message (else null), ``event`` the Socket.IO event of an emit (null: the ``message``
  event), ``message`` any JSON value. An emit's audience (:class:`~tidings.message.Audience`) follows
  as a fifth item, ``[channels, session ids, excluded channels, excluded session ids]``.
- A message of a channel with history is preceded by a line ``@<offset>:<epoch>``: its position in
  the channel's history, written by the Redis script that appended it there
  (:mod:`tidings.brokers.redis`).
- With connection state recovery, a message is preceded (before that) by a line ``#<log offset>``:
  its id in the packet log, written by the Redis script that appended it there.
- Bytes anywhere in ``message`` are carried as Socket.IO's binary placeholders
  (``{"_placeholder": true, "num": n}``, :func:`tidings.protocol.socketio.deconstruct`), their bytes
  appended back to back after a newline. JSON text never holds a raw newline, so the first newline
  after the header ends it, whatever its strings (the channel's name among them) hold.
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from tidings.channels import check_session_id, require
from tidings.errors import ProtocolError
from tidings.message import Audience, Outgoing, Position
from tidings.protocol.socketio import deconstruct, reconstruct

VERSION = b"1:"
#: The key under which an :class:`Outgoing` caches its envelope body (see :meth:`Outgoing.encoded`).
FORM = "envelope"
#: A log offset: a Redis stream entry id (numbers a Redis stream id can hold).
LOG_OFFSET = re.compile(r"\d{1,19}-\d{1,19}")


class EnvelopeError(ProtocolError):
    """Bytes that are no envelope of this version."""


def body(outgoing: Outgoing) -> bytes:
    """The session-independent part of the envelope of ``outgoing``.

    Raises ``TypeError`` for a message JSON cannot hold (as Socket.IO encoding would), and for a
    channel or event that is not a string (no receiver would open the envelope).
    """
    if not (_str_or_none(outgoing.channel) and _str_or_none(outgoing.event)):
        raise TypeError("a message's channel and event must be strings")
    header: list[Any] = [outgoing.channel, outgoing.event, outgoing.message, []]
    if outgoing.audience is not None:
        header.append([list(names) for names in outgoing.audience])
    try:
        return orjson.dumps(header)
    except TypeError:
        attachments: list[bytes] = []
        try:
            header[2] = deconstruct(outgoing.message, attachments)
        except RecursionError:
            raise TypeError("data nested too deeply to encode") from None
        header[3] = [len(attachment) for attachment in attachments]
        return b"\n".join((orjson.dumps(header), b"".join(attachments)))


def seal(session_id: str | None, body: bytes) -> bytes:
    """The envelope: ``body`` (from :func:`body`) addressed with ``session_id`` (excluded sender or
    recipient); ``ValueError`` for a ``session_id`` that is no session id."""
    if session_id is None:
        return b"%s\n%s" % (VERSION, body)
    require(check_session_id(session_id))
    return b"%s%s\n%s" % (VERSION, session_id.encode(), body)


def open_envelope(data: bytes) -> tuple[str | None, Outgoing]:
    """The session id and the message of an envelope; raises :class:`EnvelopeError`."""
    log_offset = None
    if data[:1] == b"#":
        line, _, data = data.partition(b"\n")
        log_offset = line[1:].decode("ascii", "replace")
        if not LOG_OFFSET.fullmatch(log_offset):
            raise EnvelopeError("malformed envelope log offset")
    position = None
    if data[:1] == b"@":
        line, _, data = data.partition(b"\n")
        offset, colon, epoch = line[1:].partition(b":")
        try:
            position = Position(int(offset), epoch.decode())
        except (ValueError, UnicodeDecodeError):
            raise EnvelopeError("malformed envelope position") from None
        if not colon or position.offset < 1:
            raise EnvelopeError("malformed envelope position")
    line, newline, rest = data.partition(b"\n")
    if not newline or not line.startswith(VERSION):
        raise EnvelopeError("not a tidings envelope (version 1)")
    header_end = rest.find(b"\n")
    try:
        session_id = line[len(VERSION) :].decode() or None
        channel, event, message, lengths, *more = orjson.loads(
            rest if header_end == -1 else rest[:header_end]
        )
    except (orjson.JSONDecodeError, UnicodeDecodeError, TypeError, ValueError):
        raise EnvelopeError("malformed envelope header") from None
    if not (_str_or_none(channel) and _str_or_none(event) and isinstance(lengths, list) and len(more) < 2):
        raise EnvelopeError("malformed envelope header")
    audience = _audience(more[0]) if more else None
    if lengths:
        blob = rest[header_end + 1 :] if header_end != -1 else b""
        if not all(type(n) is int and n >= 0 for n in lengths) or sum(lengths) != len(blob):
            raise EnvelopeError("envelope attachments do not match their lengths")
        attachments, start = [], 0
        for length in lengths:
            attachments.append(blob[start : start + length])
            start += length
        try:
            message = reconstruct([message], attachments)[0]
        except ProtocolError as error:
            raise EnvelopeError(str(error)) from None
    outgoing = Outgoing(message, channel, event, audience)
    outgoing.position = position
    outgoing.log_offset = log_offset
    return session_id, outgoing


def _str_or_none(value: object) -> bool:
    return value is None or isinstance(value, str)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(item, str) for item in value)


def _audience(value: Any) -> Audience:
    """The audience of an envelope's header: four lists of strings, the second and fourth session ids."""
    if not (isinstance(value, list) and len(value) == 4 and all(map(_strings, value))):
        raise EnvelopeError("malformed envelope audience")
    channels, session_ids, exclude_channels, exclude_sessions = value
    if any(check_session_id(name) is not None for name in [*session_ids, *exclude_sessions]):
        raise EnvelopeError("malformed envelope audience")
    return Audience(
        tuple(channels), tuple(session_ids), frozenset(exclude_channels), frozenset(exclude_sessions)
    )
