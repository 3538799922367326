"""The demo's chat, in the seeds' events: a room ``lobby`` is the channel ``room-lobby``.

What a page (``static/room.js``) does, and what the server answers:

- it connects with ``auth={"name": nickname}``; a bad nickname is refused (``connect_error``);
- ``subscribe("room-<name>")``: one room per connection; everyone in it, the newcomer included,
  gets ``{"action": "join", "name": ...}``; a bad room name or another channel is refused, and so is
  a nickname somebody in the room goes by already (:func:`name_key`: capitals aside);
- ``message(text, "room-<name>")``: everyone in the room gets ``{"action": "message", "name", "text"}``;
  the ack is ``{"ok": true}`` or ``{"ok": false, "error": ...}`` (too long, not in that room);
- ``rename(nickname)``: the room gets ``{"action": "rename", "old", "name"}``; acked the same way
  (a nickname taken in the room is refused);
- leaving (unsubscribing, closing the page) tells the others ``{"action": "leave", "name": ...}``.

Who is in a room is tidings' presence of its channel (``emit("presence", channel)``, ``presence``
notices); the room list counts the presence of :data:`DIRECTORY`, a channel every chatting
socket is put in by the server, which works the same across processes sharing a Redis broker.
A nickname is checked against the room's presence and taken under a claim
(:mod:`tidings.demo.claims`), so that two sockets taking one name at once cannot both have it.
"""

from __future__ import annotations

import contextlib
import re
import reprlib
import unicodedata
from collections import Counter
from collections.abc import Iterator
from typing import Any

import tidings
from tidings.demo.claims import claims_for

#: The demo's own registry: importing it adds nothing to the handlers of ``tidings.on`` and
#: ``tidings.events``, which other apps of the same process use.
handlers = tidings.Handlers()

ROOM_PREFIX = "room-"
#: Every socket in a room is in this channel too, with ``{"name", "room"}`` as its presence info:
#: its presence is the list of rooms and who is in them. Its ``presence`` notices reach every
#: chatting page (one per window with arrivals anywhere), which ignores them.
DIRECTORY = "directory"
#: Listed on the room list even while nobody is in it.
LOBBY = "lobby"
PRESENCE = (f"^{ROOM_PREFIX}", f"^{DIRECTORY}$")

ROOM_NAME = re.compile(r"[A-Za-z0-9_-]{1,32}")  # goes into URLs as it is
NICKNAME = re.compile(r"\w[\w .'-]{0,23}(?<! )")  # \w: letters and digits of any script, and _
MAX_MESSAGE = 500

ROOM_RULE = "a room name is 1 to 32 letters (a-z, A-Z), digits, - or _"
NICKNAME_RULE = (
    "a nickname is 1 to 24 letters, digits, spaces, or . ' - _, starting with a letter or digit, "
    "not ending with a space"
)
MESSAGE_RULE = f"a message is 1 to {MAX_MESSAGE} characters of text"
SAME_NAME_RULE = "nicknames that differ only in capitals are the same"

Context = dict[str, Any]


def room_error(name: Any) -> str | None:
    """Why ``name`` cannot be a room's name, or None if it can."""
    return _error(ROOM_NAME, name, "a room name", ROOM_RULE)


def nickname_error(name: Any) -> str | None:
    """Why ``name`` cannot be a nickname, or None if it can (surrounding spaces are not allowed)."""
    return _error(NICKNAME, name, "a nickname", NICKNAME_RULE)


def name_key(name: str) -> str:
    """What two nicknames that may not share a room have in common: ``Ann``, ``ANN`` and ``ANN`` in
    fullwidth letters are all ``ann`` (Unicode compatibility normalization, then case folding)."""
    return unicodedata.normalize("NFKC", name).casefold()


def taken(name: str, room: str) -> str:
    """Why ``name`` cannot join ``room``: somebody there goes by it."""
    return f"the nickname {name!r} is taken in room {room!r}: choose another ({SAME_NAME_RULE})"


def _error(pattern: re.Pattern[str], value: Any, what: str, rule: str) -> str | None:
    if not isinstance(value, str):
        return rule
    if pattern.fullmatch(value):
        return None
    return f"{reprlib.repr(value)} is not {what}: {rule}"  # a long value is shortened


def rooms() -> list[tuple[str, int]]:
    """The rooms somebody is in, on every process sharing the broker, and the lobby: ``(name, people)``,
    the fullest first. Raises :class:`tidings.BrokerError` when Redis cannot be reached."""
    counts = Counter(member["info"]["room"] for member in tidings.presence(DIRECTORY))
    counts.setdefault(LOBBY, 0)
    return sorted(counts.items(), key=lambda room: (-room[1], room[0]))


def _refusal(error: str) -> dict[str, Any]:
    return {"ok": False, "error": error}


@contextlib.contextmanager
def claimed(socket: tidings.Socket, room: str, name: str) -> Iterator[None]:
    """Holds ``name`` in ``room`` for ``socket`` while the block puts the socket in the room under it.

    Raises :class:`tidings.Refuse` if somebody else in the room goes by that name, or is taking it
    this very moment, or if the room's presence cannot be read.
    """
    key = name_key(name)
    claim = f"{room}:{key}"
    channel = ROOM_PREFIX + room
    claims = claims_for(socket.io.hub.broker)
    try:
        if not claims.take(claim, socket.session_id):
            raise tidings.Refuse(taken(name, room))
        try:
            members = tidings.presence(channel)
            if any(_goes_by(member, key) and member["session_id"] != socket.session_id for member in members):
                raise tidings.Refuse(taken(name, room))
            yield
            # Answered once this socket's entry is in the presence (with Redis: the read follows the
            # write on this process's connection), where the next claimant will find it.
            tidings.presence(channel)
        finally:
            claims.release(claim, socket.session_id)
    except tidings.BrokerError as problem:
        raise tidings.Refuse(f"nicknames cannot be checked now: {problem}") from None


def _goes_by(member: dict[str, Any], key: str) -> bool:
    info = member["info"]
    name = info.get("name") if isinstance(info, dict) else None
    return isinstance(name, str) and name_key(name) == key


@handlers.on_connect
def connect(request: tidings.Request, socket: tidings.Socket, context: Context) -> None:
    name = socket.auth.get("name") if isinstance(socket.auth, dict) else None
    error = nickname_error(name)
    if error is not None:
        raise tidings.Refuse(error)
    context["name"] = name


@handlers.on_subscribe
def rooms_only(request: tidings.Request, socket: tidings.Socket, context: Context, channel: str) -> None:
    """Runs first, for every channel: a client may join rooms and nothing else (not the directory)."""
    if not channel.startswith(ROOM_PREFIX):
        raise tidings.Refuse(f"only rooms can be joined: {ROOM_PREFIX}<name>")


@handlers.on_subscribe(channel=f"^{ROOM_PREFIX}")
def joined(request: tidings.Request, socket: tidings.Socket, context: Context, channel: str) -> None:
    room = channel.removeprefix(ROOM_PREFIX)
    error = room_error(room)
    if error is not None:
        raise tidings.Refuse(error)
    if "room" in context:
        raise tidings.Refuse(f"already in room {context['room']!r}: one room per connection")
    name = context["name"]
    with claimed(socket, room, name):
        socket.presence_info = {"name": name, "room": room}  # read as it joins each channel
        try:
            socket.subscribe(channel)  # now, under the claim; the client's subscribe finds it done
        except ValueError as error:  # the socket went, or is in too many channels
            raise tidings.Refuse(str(error)) from None
    context["room"] = room
    socket.subscribe(DIRECTORY)
    notice = {"action": "join", "name": name}
    socket.send(notice)  # the newcomer hears of its own arrival directly: without the channel
    socket.broadcast_channel(notice, channel)


@handlers.on_message(channel=f"^{ROOM_PREFIX}")
def said(
    request: tidings.Request, socket: tidings.Socket, context: Context, message: Any, channel: str | None
) -> dict[str, Any]:
    # Addressed to no channel: the socket's room. Tidings refuses a message to a room the socket is not
    # in before any handler runs ("not subscribed to ...").
    channel = channel or ROOM_PREFIX + context["room"]
    if not isinstance(message, str) or not message.strip() or len(message) > MAX_MESSAGE:
        return _refusal(MESSAGE_RULE)
    text = {"action": "message", "name": context["name"], "text": message}
    socket.send_and_broadcast_channel(text, channel)
    return {"ok": True}


@handlers.on("rename")
def rename(request: tidings.Request, socket: tidings.Socket, context: Context, *args: Any) -> dict[str, Any]:
    """``emit("rename", nickname)``: the room is told, and its presence shows the new name."""
    name = args[0] if len(args) == 1 else None
    error = nickname_error(name)
    if error is not None:
        return _refusal(error)
    assert isinstance(name, str)  # as nickname_error found
    old, room = context["name"], context.get("room")
    if room is None:  # its presence info is set, and the name checked, as it joins a room
        context["name"] = name
        return {"ok": True}
    channel = ROOM_PREFIX + room
    with claimed(socket, room, name):  # a Refuse is acked as {"ok": false, "error": ...}
        # Presence info is read when a socket joins a channel: leave, and join again under the new name
        # (server-side, so no subscribe or unsubscribe handlers run: no notices but the one below).
        socket.unsubscribe(channel)
        socket.presence_info = {"name": name, "room": room}
        socket.subscribe(channel)
    context["name"] = name
    socket.send_and_broadcast_channel({"action": "rename", "old": old, "name": name}, channel)
    return {"ok": True}


@handlers.on_unsubscribe(channel=f"^{ROOM_PREFIX}")
def left(request: tidings.Request, socket: tidings.Socket, context: Context, channel: str) -> None:
    """The client left the room, or went away (then the socket has left every channel already)."""
    context.pop("room", None)
    socket.unsubscribe(DIRECTORY)
    socket.broadcast_channel({"action": "leave", "name": context["name"]}, channel)
