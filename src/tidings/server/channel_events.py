"""Channels over Socket.IO: the client's ``message``, ``subscribe``, ``unsubscribe`` and ``presence``
events, and the server's own subscribing.

Channels on the wire are ordinary events, so any Socket.IO client can use them:
``emit("subscribe", channel)`` / ``emit("unsubscribe", channel)`` (acked with ``{"ok": true}`` or
``{"ok": false, "error": reason}``), ``emit("message", message[, channel])`` to send (to a channel
the socket is in, unless a handler takes messages from non-members; a ``message`` of any other shape
goes to the handlers bound to no channel, as sent), and the ``message`` event with
``(message[, channel])`` to receive; a message of a channel with history has a third argument, its
position ``{"offset": n, "epoch": e}``, and ``emit("subscribe", channel, {"since": position})``
recovers what followed it. ``emit("presence", channel)`` asks who is in a channel with presence;
``presence`` events tell its members who came and went.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from collections.abc import Collection
from typing import Any

from tidings.api.handlers import MESSAGE, SUBSCRIBE, UNSUBSCRIBE, Handlers, Refuse
from tidings.api.socket import Socket
from tidings.brokers import Count
from tidings.channels import NO_HISTORY, HistoryRule, check_channel_name, check_subscription
from tidings.errors import BrokerError
from tidings.hub import Hub
from tidings.message import Position
from tidings.server.logs import context
from tidings.server.running import HandlerRunner, answer
from tidings.settings import Settings

logger = logging.getLogger("tidings.socketio")
message_logger = logging.getLogger("tidings.messages")

#: The event a client emits to ask who is in a channel (only when the ``presence`` setting is on).
PRESENCE = "presence"
RECOVERED = "recovered"
UNAVAILABLE = "history unavailable"


class ChannelEvents:
    """What a socket's channel events do: the hub's side of them, and the handlers they run."""

    def __init__(self, settings: Settings, handlers: Handlers, hub: Hub, runner: HandlerRunner) -> None:
        self.settings = settings
        self.handlers = handlers
        self.hub = hub
        self.runner = runner
        #: Subscribes that asked to recover what they missed, by outcome ("recovered", or why not:
        #: "history trimmed", "epoch changed", ...); read by the metrics at a scrape.
        self.recoveries: dict[str, int] = {}

    async def message(self, socket: Socket, args: list[Any]) -> Any:
        """``emit("message", message[, channel])``, the seeds' shape: the ``message`` handlers that
        match, in order.

        A message addressed to a channel the socket is not in runs only the handlers that take
        messages from non-members; if none matches, it is refused, as one to a bad channel name is.
        A ``message`` of any other shape — no argument, more than two, or a second that is not a
        string, as the official clients' ``socket.send(a, b, c)`` emits — runs the handlers bound to
        no channel with the arguments as sent. With no ``message`` handler, the catch-all takes it.
        """
        seeds_shape = len(args) == 1 or (len(args) == 2 and isinstance(args[1], str))
        message = args[0] if seeds_shape else args
        channel: str | None = args[1] if seeds_shape and len(args) == 2 else None
        if self.settings.message_log_format is not None:
            self._log_message(socket, message, channel)
        handlers = self.handlers.get(socket.namespace, MESSAGE)
        catching = [] if handlers else self.handlers.catch_all(socket.namespace, MESSAGE, args)
        if catching:
            return await self.runner.run_answering(socket, catching, socket.channels)
        if not seeds_shape:
            unbound = [(handler, args) for handler in handlers if handler.channel is None]
            return await self.runner.run_answering(socket, unbound, socket.channels)
        channels: Collection[str]
        if channel is None:
            channels = socket.channels
        else:
            refusal = check_channel_name(channel, self.settings.max_channel_length)
            if refusal is not None:
                return answer(refusal)
            channels = (channel,)
            if channel not in socket.subscriptions:
                handlers = [handler for handler in handlers if not handler.members_only]
                if not any(handler.matches(channels) for handler in handlers):
                    return answer(f"not subscribed to {channel!r}")
        calls = [
            (handler, (message, channel) if handler.takes_channel else (message,))
            for handler in handlers
            if handler.matches(channels)
        ]
        return await self.runner.run_answering(socket, calls, channels)

    async def subscribe_request(self, socket: Socket, args: list[Any]) -> dict[str, Any]:
        """The client asks to join a channel: the ``subscribe`` handlers may refuse it first."""
        channel = args[0] if args else None
        settings = self.settings
        refusal = check_subscription(socket, channel, settings.max_channels, settings.max_channel_length)
        if refusal is not None or channel in socket.subscriptions:
            return answer(refusal)
        assert isinstance(channel, str)
        options = args[1] if len(args) > 1 else None
        since = None
        recovering = isinstance(options, dict) and options.get("since") is not None
        if recovering:
            assert isinstance(options, dict)
            since = Position.parse(options["since"])
            if since is None:
                return answer('since must be {"offset": int, "epoch": str}')
        try:
            for handler in self.handlers.get(socket.namespace, SUBSCRIBE):
                if handler.matches((channel,)):
                    await self.runner.invoke(handler, socket.request, socket, socket.context, channel)
        except Refuse as refused:
            return answer(refused.reason)
        except Exception as error:
            logger.exception(
                "subscribe handler raised; subscription refused",
                extra=context(socket.session_id, socket.namespace, (channel,)),
            )
            await self.runner.run_error_handlers(socket, error, (channel,))
            return answer("Internal server error")
        hub = self.hub
        rule = hub.options.history(channel) if hub.options.any else None
        if rule is not None:
            hub.begin_catch_up(socket, channel)  # live messages wait until the history is read
        refusal = self.subscribe(socket, channel)
        if refusal is None and hub.broker.remote:
            await hub.broker.ready()  # in effect on every node before the client hears so
        if refusal is not None or rule is None:
            if rule is not None:
                hub.end_catch_up(socket, channel, None)
            result = answer(refusal)
            if refusal is None and recovering:
                self._count_recovery(NO_HISTORY)
                result.update(recovered=False, reason=NO_HISTORY)
            return result
        return await self._recover(socket, channel, rule, since, recovering)

    async def _recover(
        self, socket: Socket, channel: str, rule: HistoryRule, since: Position | None, recovering: bool
    ) -> dict[str, Any]:
        """Read ``channel``'s history (after ``since``), hand over what was missed and what came
        meanwhile, in order, with no duplicates; the answer says where the socket is now."""
        hub = self.hub
        try:
            recovery = await hub.broker.recover(channel, rule, since)
        except BrokerError as error:
            logger.warning(
                "socket %s: the history of %r cannot be read: %s",
                socket.session_id,
                channel,
                error,
                extra=context(socket.session_id, socket.namespace, (channel,)),
            )
            for outgoing in hub.end_catch_up(socket, channel, None):
                socket.deliver(outgoing)
            if not recovering:
                return {"ok": True}
            self._count_recovery(UNAVAILABLE)
            return {"ok": True, "recovered": False, "reason": UNAVAILABLE}
        for outgoing in hub.end_catch_up(socket, channel, recovery):
            socket.deliver(outgoing)
        result: dict[str, Any] = {"ok": True, **recovery.position.wire()}
        if recovering:
            self._count_recovery(recovery.reason or RECOVERED)
            result["recovered"] = recovery.reason is None
            if recovery.reason is not None:
                result["reason"] = recovery.reason
        return result

    def _count_recovery(self, outcome: str) -> None:
        self.recoveries[outcome] = self.recoveries.get(outcome, 0) + 1

    async def presence(self, socket: Socket, args: list[Any]) -> dict[str, Any]:
        """``emit("presence", channel)``: who is in a channel with presence the socket is in (the
        first ``presence_max_list``), and how many."""
        channel = args[0] if args else None
        refusal = check_channel_name(channel, self.settings.max_channel_length)
        if refusal is not None:
            return answer(refusal)
        assert isinstance(channel, str)
        if not self.hub.options.presence(channel):
            return answer(f"no presence for channel {channel!r}")
        if channel not in socket.subscriptions:
            return answer(f"not subscribed to {channel!r}")
        # Bounded, and read at a cost that does not grow with the channel: a client asking in a loop
        # for the list of a channel of 100,000 would take the event loop from everyone else.
        broker = self.hub.broker
        try:
            members, count = await asyncio.gather(
                broker.presence(channel, self.settings.presence_max_list),
                _value(broker.presence_count(channel)),
            )
        except BrokerError as error:
            return answer(str(error))
        return {"ok": True, "presence": members, "count": count}

    async def unsubscribe_request(self, socket: Socket, args: list[Any]) -> dict[str, Any]:
        """The client leaves a channel; the ``unsubscribe`` handlers run once it is out."""
        channel = args[0] if args else None
        refusal = check_channel_name(channel, self.settings.max_channel_length)
        if refusal is None and isinstance(channel, str) and self.hub.unsubscribe(socket, channel):
            await self.runner.fire(socket, UNSUBSCRIBE, (channel,), channel)
        return answer(refusal)

    def subscribe(self, socket: Socket, channel: str) -> str | None:
        """Add ``socket`` to ``channel`` on the hub (event loop thread); the refusal reason, if any."""
        settings = self.settings
        refusal = check_subscription(socket, channel, settings.max_channels, settings.max_channel_length)
        if refusal is None and not socket.connected:
            refusal = "disconnected"
        if refusal is None:
            self.hub.subscribe(socket, channel)
        return refusal

    def _log_message(self, socket: Socket, message: Any, channel: str | None) -> None:
        """One line per message a client sends, in ``message_log_format`` (the seeds' setting)."""
        fields = {
            **socket.request.environ,
            "TIME": datetime.datetime.now().replace(microsecond=0),
            "MESSAGE": message,
            "CHANNEL": channel,
            "SESSION_ID": socket.session_id,
        }
        try:
            line = self.settings.message_log_format % fields  # type: ignore[operator]
        except (KeyError, TypeError, ValueError) as error:
            logger.error("message_log_format cannot be applied: %r", error)
            return
        message_logger.info(
            line, extra=context(socket.session_id, socket.namespace, (channel,) if channel else ())
        )


async def _value(count: Count) -> int:
    """A broker's count, once it is known."""
    return await count if isinstance(count, asyncio.Future) else count
