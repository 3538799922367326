"""Handler registry: which function runs for which event, in which namespace, for which channels.

Two kinds of events share one registry:

- the client's own Socket.IO events (``emit("chat", ...)`` on the client), registered with
  :meth:`Handlers.on`, and ``on("*")``, the catch-all of a namespace's events that have no handler;
- the seeds' lifecycle events ``connect``, ``message``, ``subscribe``, ``unsubscribe``, ``error``,
  ``disconnect`` and ``finish``, registered with :meth:`Handlers.on_connect` and its siblings (or
  ``on("connect")`` etc.). All but ``connect`` can be bound to channels by a regular expression.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from tidings.errors import TidingsError

HandlerFunc = TypeVar("HandlerFunc", bound=Callable[..., Any])

CONNECT = "connect"
MESSAGE = "message"
SUBSCRIBE = "subscribe"
UNSUBSCRIBE = "unsubscribe"
ERROR = "error"
DISCONNECT = "disconnect"
FINISH = "finish"
#: Events the server raises itself. A client cannot trigger ``error`` or ``finish`` by emitting them.
LIFECYCLE = frozenset({CONNECT, MESSAGE, SUBSCRIBE, UNSUBSCRIBE, ERROR, DISCONNECT, FINISH})
#: The catch-all: ``on("*")`` handlers get the client's events that have no handler of their own.
ANY = "*"

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


class Refuse(TidingsError):
    """Raised by a handler to refuse what the client asked for: a connection, a subscription, a
    message, or an event of the app's own.

    A refused connect reaches the client as a CONNECT_ERROR with ``reason`` as its message (and
    ``data``, if given, as its data): the official clients raise it as ``connect_error``. A refused
    subscription is acked with ``{"ok": false, "error": reason}`` and the socket is not subscribed.
    A ``message`` or other event handler that raises it stops the event's remaining handlers, and
    the event is acked (if the client asked for an ack) with ``{"ok": false, "error": reason}``.
    """

    def __init__(self, reason: str = "Not authorized", data: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data


@dataclass(frozen=True, slots=True)
class Handler:
    func: Callable[..., Any]
    is_async: bool
    #: Fire only for channels this pattern matches (``re.match``, as the seeds did).
    channel: re.Pattern[str] | None = None
    #: A ``message`` handler with room for a fifth argument gets the message's channel there.
    takes_channel: bool = False
    #: A ``message`` handler fires for messages addressed to a channel only if the socket is in it.
    members_only: bool = True
    #: What logs and metrics call it: the function's qualified name.
    name: str = ""

    @classmethod
    def of(cls, func: Callable[..., Any], channel: str | None = None, members_only: bool = True) -> Handler:
        return cls(
            func,
            inspect.iscoroutinefunction(func),
            re.compile(channel) if channel is not None else None,
            _takes_fifth_argument(func),
            members_only,
            getattr(func, "__qualname__", repr(func)),
        )

    def matches(self, channels: Collection[str]) -> bool:
        """Unbound handlers always fire; bound ones when any of ``channels`` matches."""
        pattern = self.channel
        return pattern is None or any(pattern.match(channel) for channel in channels)


def _takes_fifth_argument(func: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return True
    return sum(p.kind in _POSITIONAL for p in parameters) >= 5


class Handlers:
    """Event handlers by namespace and event name.

    Several handlers may be registered for one event; they all run, in registration order, and an
    ack, if the client asked for one, carries the first result that is not None.
    """

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], list[Handler]] = {}
        self._namespaces = {"/"}  # kept as handlers are added: looked up on every namespace connect
        #: The (namespace, event) keys that have an ``async def`` handler (kept as handlers are
        #: added; the server looks them up for every client event).
        self.has_async: set[tuple[str, str]] = set()
        #: Plain WebSocket endpoints by URL path.
        self.endpoints: dict[str, Handler] = {}
        # The seeds' events: ``@on_message`` or ``@on_message(channel="^room-")``.
        self.on_connect = LifecycleDecorator(
            self, CONNECT, "``(request, socket, context)`` once the client connects; raise Refuse to refuse."
        )
        self.on_message = MessageDecorator(
            self,
            MESSAGE,
            "``(request, socket, context, message[, channel])`` for each message the client sends.\n\n"
            'A message addressed to a channel (``emit("message", message, channel)``) fires handlers '
            "bound to a pattern matching that channel; one addressed to no channel fires handlers bound "
            "to a pattern matching any channel the socket is in. Unbound handlers fire for every message.\n\n"
            "A message addressed to a channel the socket is not in fires only the handlers registered "
            "with ``members_only=False``; if none matches, it is refused: acked with "
            '``{"ok": false, "error": "not subscribed to ..."}``. Raise Refuse to refuse a message.',
        )
        self.on_subscribe = LifecycleDecorator(
            self,
            SUBSCRIBE,
            "``(request, socket, context, channel)`` before the socket joins; Refuse refuses.",
        )
        self.on_unsubscribe = LifecycleDecorator(
            self,
            UNSUBSCRIBE,
            "``(request, socket, context, channel)`` after the socket left a channel (also on disconnect).",
        )
        self.on_error = LifecycleDecorator(
            self, ERROR, "``(request, socket, context, exception)`` when another handler raised."
        )
        self.on_disconnect = LifecycleDecorator(
            self,
            DISCONNECT,
            "``(request, socket, context)`` once the socket is gone (client left, timeout, server).",
        )
        self.on_finish = LifecycleDecorator(
            self,
            FINISH,
            "``(request, socket, context)`` once, last, when the connection is over (also if refused).",
        )

    def on(self, event: str, namespace: str = "/") -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorator: run the function for ``event`` in ``namespace``.

        The function is called as ``func(request, socket, context, *args)`` with the event's
        arguments. Lifecycle names (``connect``, ``message``, ...) register lifecycle handlers, as
        the ``on_*`` decorators do. ``on("*")`` registers a catch-all, called as ``func(request,
        socket, context, event, *args)`` for the events of ``namespace`` that no handler is registered
        for (``message`` included, when it has none); its result acks as any handler's does.
        """

        def register(func: HandlerFunc) -> HandlerFunc:
            self.add(event, func, namespace)
            return func

        return register

    def add(
        self,
        event: str,
        func: Callable[..., Any],
        namespace: str = "/",
        channel: str | None = None,
        members_only: bool = True,
    ) -> None:
        if not namespace.startswith("/"):
            raise ValueError(f"namespace must start with '/': {namespace!r}")
        if channel is not None and event not in LIFECYCLE - {CONNECT}:
            raise ValueError(f"only lifecycle events other than connect bind to channels, not {event!r}")
        if not members_only and event != MESSAGE:
            raise ValueError(f"members_only is an option of message handlers, not of {event!r}")
        handler = Handler.of(func, channel, members_only)
        self._handlers.setdefault((namespace, event), []).append(handler)
        self._namespaces.add(namespace)
        if handler.is_async:
            self.has_async.add((namespace, event))

    def get(self, namespace: str, event: str) -> list[Handler]:
        return self._handlers.get((namespace, event), [])

    def all_def(self, namespace: str, event: str) -> bool:
        """Whether every handler of ``event`` in ``namespace`` is a ``def`` one (or there is none)."""
        return (namespace, event) not in self.has_async

    def catch_all(
        self, namespace: str, event: str, args: Sequence[Any]
    ) -> list[tuple[Handler, Sequence[Any]]]:
        """The calls of ``namespace``'s catch-all handlers for ``event``: each gets its name first."""
        return [(handler, (event, *args)) for handler in self.get(namespace, ANY)]

    def serves(self, namespace: str) -> bool:
        """Whether ``namespace`` has a handler (``/`` always has)."""
        return namespace in self._namespaces

    @property
    def namespaces(self) -> set[str]:
        """Namespaces with at least one handler; ``/`` is always served."""
        return set(self._namespaces)

    def websocket(self, path: str) -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorator: a plain WebSocket endpoint at ``path``, called as ``func(ws)``.

        A ``def`` function runs in a thread of its own and gets a :class:`tidings.WebSocket` with a
        blocking ``receive()`` / ``send()``; an ``async def`` one runs on the event loop and gets a
        :class:`tidings.AsyncWebSocket`. The connection closes when the function returns.
        """
        if not path.startswith("/"):
            raise ValueError(f"path must start with '/': {path!r}")

        def register(func: HandlerFunc) -> HandlerFunc:
            if path in self.endpoints:
                raise ValueError(f"a WebSocket endpoint is registered at {path!r} already")
            self.endpoints[path] = Handler.of(func)
            return func

        return register


class LifecycleDecorator:
    """One of the seeds' events as a decorator: ``@handlers.on_message`` bare, or called as
    ``@handlers.on_message(channel="^room-", namespace="/chat")``.

    ``channel`` (a regular expression, matched with ``re.match``) binds the handler to the channels
    it matches; every event but ``connect`` takes it.
    """

    def __init__(self, handlers: Handlers, event: str, doc: str) -> None:
        self._handlers = handlers
        self.event = event
        self.__doc__ = doc

    @overload
    def __call__(self, func: HandlerFunc, /) -> HandlerFunc: ...

    @overload
    def __call__(
        self, func: None = None, /, *, channel: str | None = None, namespace: str = "/"
    ) -> Callable[[HandlerFunc], HandlerFunc]: ...

    def __call__(
        self, func: HandlerFunc | None = None, /, *, channel: str | None = None, namespace: str = "/"
    ) -> HandlerFunc | Callable[[HandlerFunc], HandlerFunc]:
        def register(func: HandlerFunc) -> HandlerFunc:
            self._handlers.add(self.event, func, namespace, channel)
            return func

        return register if func is None else register(func)

    def __repr__(self) -> str:
        return f"<on_{self.event} decorator>"


class MessageDecorator(LifecycleDecorator):
    """``on_message``, which also takes ``members_only``: ``@on_message(channel="^lobby$",
    members_only=False)`` fires for messages addressed to a matching channel by sockets that are not
    in it (by default such a message is refused: only a channel's members may post to it).
    """

    @overload
    def __call__(self, func: HandlerFunc, /) -> HandlerFunc: ...

    @overload
    def __call__(
        self,
        func: None = None,
        /,
        *,
        channel: str | None = None,
        namespace: str = "/",
        members_only: bool = True,
    ) -> Callable[[HandlerFunc], HandlerFunc]: ...

    def __call__(
        self,
        func: HandlerFunc | None = None,
        /,
        *,
        channel: str | None = None,
        namespace: str = "/",
        members_only: bool = True,
    ) -> HandlerFunc | Callable[[HandlerFunc], HandlerFunc]:
        def register(func: HandlerFunc) -> HandlerFunc:
            self._handlers.add(self.event, func, namespace, channel, members_only)
            return func

        return register if func is None else register(func)


#: The registry module-level decorators (``tidings.on``, ``tidings.events``) write to and servers
#: read by default.
default_handlers = Handlers()
