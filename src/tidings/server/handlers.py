"""Handler registry: which function runs for which Socket.IO event in which namespace."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

HandlerFunc = TypeVar("HandlerFunc", bound=Callable[..., Any])

#: Lifecycle events a handler can be registered for besides the client's own event names.
CONNECT = "connect"
DISCONNECT = "disconnect"


class Refuse(Exception):
    """Raised by a ``connect`` handler to refuse the connection.

    The client receives a CONNECT_ERROR with ``reason`` as its message (and ``data``, if given, as
    its data): the official clients raise it as a ``connect_error`` with that message.
    """

    def __init__(self, reason: str = "Not authorized", data: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = data


@dataclass(frozen=True, slots=True)
class Handler:
    func: Callable[..., Any]
    is_async: bool


class Handlers:
    """Event handlers by namespace and event name.

    Several handlers may be registered for one event; they run in registration order and an ack, if
    the client asked for one, carries the first result that is not None.
    """

    def __init__(self) -> None:
        self._handlers: dict[tuple[str, str], list[Handler]] = {}

    def on(self, event: str, namespace: str = "/") -> Callable[[HandlerFunc], HandlerFunc]:
        """Decorator: run the function for ``event`` in ``namespace``.

        The function is called as ``func(request, socket, context, *args)`` with the event's
        arguments; ``connect`` and ``disconnect`` handlers get no further arguments (the connect
        payload of the client is ``socket.auth``).
        """

        def register(func: HandlerFunc) -> HandlerFunc:
            self.add(event, func, namespace)
            return func

        return register

    def add(self, event: str, func: Callable[..., Any], namespace: str = "/") -> None:
        if not namespace.startswith("/"):
            raise ValueError(f"namespace must start with '/': {namespace!r}")
        handler = Handler(func, inspect.iscoroutinefunction(func))
        self._handlers.setdefault((namespace, event), []).append(handler)

    def get(self, namespace: str, event: str) -> list[Handler]:
        return self._handlers.get((namespace, event), [])

    @property
    def namespaces(self) -> set[str]:
        """Namespaces with at least one handler; ``/`` is always served."""
        return {"/"} | {namespace for namespace, _ in self._handlers}


#: The registry module-level decorators (``tidings.on``) write to and servers read by default.
default_handlers = Handlers()
