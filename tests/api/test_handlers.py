"""The handler registry: the seeds' decorators, channel patterns, and what a handler is passed."""

from __future__ import annotations

import pytest

import tidings
from tidings.api.handlers import MESSAGE, SUBSCRIBE, Handler


def test_decorators_work_bare_and_with_a_channel() -> None:
    handlers = tidings.Handlers()

    @handlers.on_message
    def every(request, socket, context, message): ...

    @handlers.on_message(channel="^room-")
    def rooms(request, socket, context, message, channel): ...

    @handlers.on_subscribe(channel="dash", namespace="/admin")
    async def dash(request, socket, context, channel): ...

    assert [h.func for h in handlers.get("/", MESSAGE)] == [every, rooms]
    assert [h.func for h in handlers.get("/admin", SUBSCRIBE)] == [dash]
    assert handlers.get("/admin", SUBSCRIBE)[0].is_async
    assert "/admin" in handlers.namespaces


def test_channel_patterns_match_from_the_start_as_in_the_seeds() -> None:
    handler = Handler.of(lambda *args: None, "room-")
    assert handler.matches(["room-1"])
    assert handler.matches(["lobby", "room-2"])  # any of the socket's channels
    assert not handler.matches(["my-room-1"])
    assert not handler.matches([])
    assert Handler.of(lambda *args: None).matches([])  # unbound: always


def test_a_fifth_parameter_asks_for_the_channel() -> None:
    def four(request, socket, context, message): ...

    def five(request, socket, context, message, channel): ...

    def variadic(request, socket, context, *args): ...

    assert [Handler.of(f).takes_channel for f in (four, five, variadic)] == [False, True, True]


def test_connect_and_named_events_cannot_be_bound_to_channels() -> None:
    handlers = tidings.Handlers()
    with pytest.raises(ValueError, match="bind to channels"):
        handlers.add("connect", print, channel="x")
    with pytest.raises(ValueError, match="bind to channels"):
        handlers.add("chat", print, channel="x")
    with pytest.raises(ValueError, match="namespace"):
        handlers.on_message(namespace="admin")(print)


def test_only_message_handlers_take_messages_from_non_members() -> None:
    handlers = tidings.Handlers()
    handlers.on_message(channel="^lobby$", members_only=False)(print)
    handlers.on_message(print)
    assert [handler.members_only for handler in handlers.get("/", "message")] == [False, True]
    with pytest.raises(ValueError, match="members_only"):
        handlers.add("subscribe", print, members_only=False)


def test_module_decorators_write_to_the_default_registry() -> None:
    from tidings.api.handlers import FINISH, default_handlers
    from tidings.events import on_finish

    def finish(request, socket, context): ...

    on_finish(channel="^nothing-matches-this-")(finish)
    try:
        assert default_handlers.get("/", FINISH)[-1].func is finish
    finally:
        default_handlers.get("/", FINISH).pop()


def test_the_namespaces_served_follow_the_handlers_added() -> None:
    handlers = tidings.Handlers()
    assert handlers.serves("/") and not handlers.serves("/admin")
    handlers.on_finish(namespace="/admin")(lambda request, socket, context: None)
    assert handlers.serves("/admin")
    handlers.namespaces.add("/other")  # a copy: the registry does not change
    assert handlers.namespaces == {"/", "/admin"}
