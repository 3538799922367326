"""What the connection state machines of :mod:`tidings.protocol` share."""

from __future__ import annotations

import enum


class StateEnum(enum.Enum):
    """An enum of states or steps, whose members hash by identity.

    Each state machine looks its members up in its ``TRANSITIONS`` table at every step, several
    times per connection; :class:`enum.Enum` hashes a member by its name in Python code, which made
    that a measurable part of opening a connection. Members are singletons, so identity is equality.
    """

    __hash__ = object.__hash__
