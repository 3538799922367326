"""The hub: who is connected, who is in which channel, and the fan-out of one message to many.

The hub knows nothing of wire protocols: it hands each member (a :class:`~tidings.message.Subscriber`)
the :class:`~tidings.message.Outgoing` message, which encodes itself once per wire form.

Its state belongs to the event loop that serves the connections. Code on other threads (``def``
handlers, WSGI views, background threads) reaches it through :meth:`Hub.call` and :meth:`Hub.post`.

Messages reach the hub's members through its :class:`~tidings.brokers.Broker`: ``hub.broker.publish``
and its siblings carry a message to the hub of every node (its own included), whose
:meth:`Hub.publish`, :meth:`Hub.broadcast`, :meth:`Hub.send` and :meth:`Hub.emit` then hand it to the
local members. The hub tells the broker when a channel or group gets its first local member and loses
its last.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Protocol, TypeVar

import orjson

from tidings.brokers.base import Broker
from tidings.brokers.memory import MemoryBroker
from tidings.channels import MAX_CHANNEL_LENGTH, ChannelOptions, PresenceBatching, newer
from tidings.errors import NoSocket
from tidings.message import Burst, Outgoing, Position, Recovery, Subscriber
from tidings.settings import LOOP_CALL_TIMEOUT, Settings

T = TypeVar("T")

logger = logging.getLogger("tidings.hub")

#: How long a call from another thread waits for the event loop, until a server configures the hub
#: (with its ``loop_call_timeout``: :attr:`Hub.call_timeout`).
CALL_TIMEOUT = LOOP_CALL_TIMEOUT


class CatchUp:
    """A subscriber joining a channel with history, between its subscription and its recovery.

    Until the history is read, the channel's live messages wait here; once it has been read up to
    ``position``, live messages up to that position are skipped (the history had them) and the first
    one after it ends the catch-up: the channel's messages arrive in offset order on a node.
    """

    __slots__ = ("buffer", "position")

    def __init__(self) -> None:
        self.buffer: list[Outgoing] | None = []
        self.position: Position | None = None

    def take(self, outgoing: Outgoing) -> bool:
        """True: hand ``outgoing`` over now, and the catch-up is over."""
        if self.buffer is not None:
            self.buffer.append(outgoing)
            return False
        return newer(outgoing.position, self.position)


class MembershipObserver(Protocol):
    """Told when a subscriber joins or leaves a channel (the Admin UI's rooms)."""

    def joined(self, subscriber: Subscriber, channel: str) -> None: ...

    def left(self, subscriber: Subscriber, channel: str) -> None: ...


_running: weakref.WeakSet[Hub] = weakref.WeakSet()


def running_hubs() -> list[Hub]:
    """The hubs of this process whose event loop runs: what module-level sends go through."""
    return [hub for hub in list(_running) if hub.loop is not None and hub.loop.is_running()]


class Hub:
    """Connections by session id, by group (a Socket.IO namespace), and by channel.

    ``broker`` carries its messages to every node; by default a :class:`MemoryBroker` (this process).
    """

    def __init__(self, broker: Broker | None = None) -> None:
        self.sessions: dict[str, Subscriber] = {}
        self.groups: dict[str, dict[str, Subscriber]] = {}
        # Channel members as dict keys: a set that keeps join order, so fan-out order is stable.
        self.channels: dict[str, dict[Subscriber, None]] = {}
        self.loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        #: Which channels have history and presence (the settings); the broker reads it too.
        self.options = ChannelOptions()
        self.broker: Broker = broker if broker is not None else MemoryBroker()
        self.broker.attach(self)
        #: Subscribers recovering a channel's history, by channel (see :class:`CatchUp`).
        self.catching_up: dict[str, dict[Subscriber, CatchUp]] = {}
        #: The burst of this loop iteration of each channel (by name) and group (by
        #: :func:`_group_key`): its messages so far (see :class:`Burst`). A change of its members
        #: ends it early, so that a burst's recipients never change.
        self._bursts: dict[Hashable, Burst] = {}
        #: True once the broker has started (and until it stops).
        self.started = False
        #: The server's ``max_channel_length``: what out-of-band sends check channel names against.
        self.max_channel_length = MAX_CHANNEL_LENGTH
        #: The server's ``loop_call_timeout``: how long a call from another thread waits for the loop.
        self.call_timeout = CALL_TIMEOUT
        #: Told of every channel join and leave on this node (None: no one, the default).
        self.observer: MembershipObserver | None = None
        self._settings: Settings | None = None
        self._starting: asyncio.Future[None] | None = None
        #: Messages fanned out to a channel, a group or an audience on this node, and the
        #: subscribers all sends reached; read by the metrics at a scrape.
        self.broadcasts = 0
        self.deliveries = 0

    def use_broker(self, broker: Broker) -> None:
        """Carry messages through ``broker`` instead (before the hub starts, with no members yet)."""
        if self.started or self.sessions:
            raise RuntimeError("a hub's broker can only be replaced before it starts")
        broker.attach(self)
        broker.options = self.options
        if self._settings is not None:
            broker.configure(self._settings)
        self.broker = broker

    def configure(self, settings: Settings) -> None:
        """Take the server's ``settings`` (before the hub starts): which channels have history and
        presence, connection state recovery, the longest channel name, how long calls from other
        threads wait, and what the broker takes of them (:meth:`Broker.configure`)."""
        batching = PresenceBatching(
            settings.presence_batch_interval, settings.presence_fanout_rate, settings.presence_max_diff
        )
        options = ChannelOptions(
            settings.history, settings.presence, settings.presence_timeout, settings.recovery, batching
        )
        self.options = self.broker.options = options
        self.max_channel_length = settings.max_channel_length
        self.call_timeout = settings.loop_call_timeout
        self._settings = settings
        self.broker.configure(settings)

    def new_session_id(self) -> str:
        """An id for a new subscriber, that the broker can route a send to."""
        return self.broker.new_session_id()

    # -- start and stop (event loop thread) --------------------------------------------------------

    async def start(self) -> None:
        """Bind the running loop and start the broker (once; concurrent callers wait for the same).

        Raises :class:`~tidings.brokers.BrokerError` if the broker cannot start; a later call tries
        again.
        """
        self.bind_loop()
        if self.started:
            return
        if self._starting is None:
            self._starting = asyncio.ensure_future(self.broker.start())
        starting = self._starting
        try:
            await asyncio.shield(starting)
        except BaseException:
            if starting.done() and self._starting is starting:
                self._starting = None  # failed: the next caller tries again
            raise
        self.started = True

    async def stop(self) -> None:
        """Stop the broker (after the connections are closed)."""
        self.unbind()
        starting, self._starting = self._starting, None
        if starting is not None and not starting.done():
            starting.cancel()
        if self.started or starting is not None:
            self.started = False
            await self.broker.notices.flush()  # the last leaves reach the other nodes' members
            await self.broker.stop()

    # -- the event loop and other threads -------------------------------------------------------

    def bind_loop(self) -> None:
        """Remember the running loop: calls from other threads are handed to it."""
        if self.loop is None or self.loop.is_closed():
            self.loop = asyncio.get_running_loop()
            self._loop_thread = threading.get_ident()
        _running.add(self)

    def unbind(self) -> None:
        _running.discard(self)

    def in_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def post(self, func: Callable[..., Any], *args: Any) -> None:
        """Run ``func`` on the loop: now on the loop's thread, soon from another one."""
        if self.in_loop_thread():
            func(*args)
        elif self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(func, *args)

    def call(self, func: Callable[..., T], *args: Any) -> T:
        """Run ``func`` on the loop and return its result; from another thread, wait for it.

        From another thread, a result that is an ``asyncio.Future`` (a remote broker's count) is
        waited for too; on the loop's thread it is returned as it is. Calls from one thread run in
        the order they were made, after what that thread posted before. Raises :class:`NoSocket` if
        the loop is gone, or has not answered within :attr:`call_timeout`.
        """
        if self.in_loop_thread():
            return func(*args)
        future = _submit(self, func, args)
        try:
            result: T = future.result(self.call_timeout)
        except concurrent.futures.TimeoutError:
            raise NoSocket(f"the server's event loop did not answer within {self.call_timeout}s") from None
        return result

    async def acall(self, func: Callable[..., Any], *args: Any) -> Any:
        """:meth:`call` for coroutines, on this hub's loop or another: waits without blocking.

        A result that is an ``asyncio.Future`` (a remote broker's count) is awaited too.
        """
        if self.in_loop_thread():
            result = func(*args)
            return await result if isinstance(result, asyncio.Future) else result
        return await asyncio.wrap_future(_submit(self, func, args))

    # -- membership (event loop thread) -----------------------------------------------------------

    def join(self, subscriber: Subscriber, group: str) -> None:
        self.sessions[subscriber.session_id] = subscriber
        members = self.groups.get(group)
        if members is None:
            members = self.groups[group] = {}
            self.broker.first_joined("group", group)
        members[subscriber.session_id] = subscriber
        self._bursts.pop(_group_key(group), None)

    def leave(self, subscriber: Subscriber, group: str) -> list[str]:
        """Take a subscriber out of everything; returns the channels it was in, in join order."""
        self.sessions.pop(subscriber.session_id, None)
        members = self.groups.get(group)
        self._bursts.pop(_group_key(group), None)
        if members is not None:
            members.pop(subscriber.session_id, None)
            if not members:
                del self.groups[group]
                self.broker.last_left("group", group)
        channels = list(subscriber.subscriptions)
        for channel in channels:
            self._remove(subscriber, channel)
        subscriber.subscriptions.clear()
        return channels

    def subscribe(self, subscriber: Subscriber, channel: str) -> bool:
        """Add to ``channel``; False if it was in already."""
        if channel in subscriber.subscriptions:
            return False
        subscriber.subscriptions[channel] = None
        members = self.channels.get(channel)
        if members is None:
            members = self.channels[channel] = {}
            self.broker.first_joined("channel", channel)
        members[subscriber] = None
        self._bursts.pop(channel, None)
        if self.options.any and self.options.presence(channel):
            self._announce(subscriber, channel, True)
        if self.observer is not None:
            self.observer.joined(subscriber, channel)
        return True

    def unsubscribe(self, subscriber: Subscriber, channel: str) -> bool:
        """Take out of ``channel``; False if it was not in it."""
        if channel not in subscriber.subscriptions:
            return False
        del subscriber.subscriptions[channel]
        self._remove(subscriber, channel)
        return True

    def _remove(self, subscriber: Subscriber, channel: str) -> None:
        members = self.channels.get(channel)
        self._bursts.pop(channel, None)
        if members is not None:
            members.pop(subscriber, None)
            if not members:
                del self.channels[channel]
                self.broker.last_left("channel", channel)
        if self.options.any:
            self._stop_catch_up(subscriber, channel)
            if self.options.presence(channel):
                self._announce(subscriber, channel, False)
        if self.observer is not None:
            self.observer.left(subscriber, channel)

    # -- presence (event loop thread) ---------------------------------------------------------------

    def _announce(self, subscriber: Subscriber, channel: str, joined: bool) -> None:
        """Enter or leave ``channel``'s presence; its members are told in the next notice."""
        session_id = subscriber.session_id
        info = _json_able_info(subscriber)
        broker = self.broker
        if joined:
            broker.presence_join(channel, session_id, info)
            broker.notices.joined(channel, session_id, info)
        else:
            broker.presence_leave(channel, session_id)
            broker.notices.left(channel, session_id, info)

    # -- recovery (event loop thread) --------------------------------------------------------------

    def begin_catch_up(self, subscriber: Subscriber, channel: str) -> None:
        """Hold ``channel``'s live messages to ``subscriber`` until :meth:`end_catch_up`."""
        self.catching_up.setdefault(channel, {})[subscriber] = CatchUp()
        self._bursts.pop(channel, None)

    def end_catch_up(self, subscriber: Subscriber, channel: str, recovery: Recovery | None) -> list[Outgoing]:
        """What to hand ``subscriber`` now, in order: the recovered messages, then the live ones held
        meanwhile that came after them. Live messages the history had are skipped from now on."""
        waiting = self.catching_up.get(channel)
        catch_up = waiting.get(subscriber) if waiting is not None else None
        if catch_up is None or catch_up.buffer is None:
            return []
        buffered, catch_up.buffer = catch_up.buffer, None
        if recovery is None:  # the history could not be read: hand over what is held, nothing skipped
            self._stop_catch_up(subscriber, channel)
            return buffered
        catch_up.position = recovery.position
        later = [outgoing for outgoing in buffered if newer(outgoing.position, recovery.position)]
        if later:
            self._stop_catch_up(subscriber, channel)
        return [*recovery.messages, *later]

    def _stop_catch_up(self, subscriber: Subscriber, channel: str) -> None:
        waiting = self.catching_up.get(channel)
        if waiting is not None:
            waiting.pop(subscriber, None)
            if not waiting:
                del self.catching_up[channel]

    # -- local fan-out (event loop thread): what the broker calls on every node ----------------------

    def publish(self, outgoing: Outgoing, exclude: Subscriber | None = None) -> int:
        """Hand ``outgoing`` to every member of its channel but ``exclude``; returns how many."""
        channel = outgoing.channel
        assert channel is not None
        members: Iterable[Subscriber] | None = self.channels.get(channel)
        if self.catching_up and outgoing.position is not None and members:
            waiting = self.catching_up.get(channel)
            if waiting:
                members = [m for m in members if m not in waiting or self._caught_up(waiting, m, outgoing)]
                return self._fan_out(members, outgoing, exclude)
        if not members or outgoing.audience is not None:
            return self._fan_out(members, outgoing, exclude)
        return self._fan_out_in_burst(channel, members, outgoing, exclude)

    def _fan_out_in_burst(
        self, key: Hashable, members: Iterable[Subscriber], outgoing: Outgoing, exclude: Subscriber | None
    ) -> int:
        """Fan ``outgoing`` out in the burst of ``key`` (a channel, or a group's key) of this loop
        iteration: the first message starts it, the next ones are only added (see :class:`Burst`)."""
        if self.loop is None:  # no loop to end a burst
            return self._fan_out(members, outgoing, exclude)
        self.broadcasts += 1
        burst = self._bursts.get(key)
        if burst is not None and burst.exclude is exclude:
            reached = burst.add(outgoing)
            self.deliveries += reached
            return reached
        burst = self._bursts[key] = Burst(exclude)
        self.loop.call_soon(self._end_burst, key, burst)
        burst.outgoings.append(outgoing)
        followers = burst.followers
        recipients = _recipients(members, outgoing, exclude)
        for member in recipients:
            if not member.take_burst(burst):
                followers.append(member)
                member.deliver(outgoing)
        burst.recipients = len(recipients)
        self.deliveries += len(recipients)
        return len(recipients)

    def _end_burst(self, key: Hashable, burst: Burst) -> None:
        if self._bursts.get(key) is burst:
            del self._bursts[key]
        burst.close()

    def _caught_up(self, waiting: dict[Subscriber, CatchUp], member: Subscriber, outgoing: Outgoing) -> bool:
        if not waiting[member].take(outgoing):
            return False
        assert outgoing.channel is not None
        self._stop_catch_up(member, outgoing.channel)
        return True

    def broadcast(self, outgoing: Outgoing, group: str, exclude: Subscriber | None = None) -> int:
        """Hand ``outgoing`` to every subscriber of ``group`` but ``exclude``; returns how many."""
        members = self.groups.get(group)
        if not members or outgoing.audience is not None:
            return self._fan_out(members.values() if members else None, outgoing, exclude)
        return self._fan_out_in_burst(_group_key(group), members.values(), outgoing, exclude)

    def send(self, outgoing: Outgoing, session_id: str) -> int:
        """Hand ``outgoing`` to one subscriber; returns 1, or 0 if there is none by that id (or its
        audience excludes it)."""
        subscriber = self.sessions.get(session_id)
        if subscriber is None or (outgoing.audience is not None and outgoing.audience.excludes(subscriber)):
            return 0
        subscriber.deliver(outgoing)
        self.deliveries += 1
        return 1

    def emit(self, outgoing: Outgoing) -> int:
        """Hand ``outgoing`` to the members of its audience's channels and the subscribers of its
        session ids, each once, but those it excludes; returns how many."""
        audience = outgoing.audience
        assert audience is not None
        recipients: dict[Subscriber, None] = {}
        for channel in audience.channels:
            members = self.channels.get(channel)
            if members:
                recipients.update(members)
        for session_id in audience.session_ids:
            subscriber = self.sessions.get(session_id)
            if subscriber is not None:
                recipients[subscriber] = None
        return self._fan_out(recipients, outgoing, None)

    # -- what the HTTP server API asks of every node (event loop thread) ------------------------------

    def channel_counts(self) -> dict[str, int]:
        """This node's channels and how many members each has here."""
        return {name: len(members) for name, members in self.channels.items()}

    def disconnect(self, session_id: str) -> int:
        """Disconnect the socket ``session_id`` if this node holds it (its client is told): 1, else 0.

        Plain WebSocket subscribers have no disconnect of this kind: 0 for them.
        """
        disconnect = getattr(self.sessions.get(session_id), "disconnect", None)
        if disconnect is None:
            return 0
        disconnect()
        return 1

    def _fan_out(
        self, members: Iterable[Subscriber] | None, outgoing: Outgoing, exclude: Subscriber | None
    ) -> int:
        self.broadcasts += 1
        if not members:
            return 0
        recipients = _recipients(members, outgoing, exclude)
        for member in recipients:
            member.deliver(outgoing)
        self.deliveries += len(recipients)
        return len(recipients)


def _recipients(
    members: Iterable[Subscriber], outgoing: Outgoing, exclude: Subscriber | None
) -> list[Subscriber]:
    """Whom ``outgoing`` reaches among ``members``: a copy, since a delivery can close a session
    whose send buffer is full, which takes it out of ``members`` while the fan-out iterates."""
    if outgoing.audience is None:
        return [member for member in members if member is not exclude]
    excludes = outgoing.audience.excludes
    return [member for member in members if member is not exclude and not excludes(member)]


def _group_key(group: str) -> tuple[str, str]:
    """A group's key among the bursts, apart from every channel's (a channel's key is its name)."""
    return ("group", group)


def _json_able_info(subscriber: Subscriber) -> Any:
    """The subscriber's ``presence_info``, or ``{}`` if JSON cannot hold it (it goes to every member)."""
    info = getattr(subscriber, "presence_info", None) or {}
    try:
        orjson.dumps(info)
    except TypeError as error:
        logger.error("presence info of %s cannot be sent: %s", subscriber.session_id, error)
        return {}
    return info


def _copy_outcome(source: asyncio.Future[Any], target: concurrent.futures.Future[Any]) -> None:
    if source.cancelled():
        target.cancel()
    elif (error := source.exception()) is not None:
        target.set_exception(error)
    else:
        target.set_result(source.result())


def _submit(hub: Hub, func: Callable[..., Any], args: tuple[Any, ...]) -> concurrent.futures.Future[Any]:
    """Run ``func(*args)`` on the hub's loop from another thread; its result (awaited if a future)."""
    loop = hub.loop
    if loop is None or loop.is_closed():
        raise NoSocket("the server is not running")
    future: concurrent.futures.Future[Any] = concurrent.futures.Future()

    def run() -> None:
        try:
            result = func(*args)
        except BaseException as error:
            future.set_exception(error)
            return
        if isinstance(result, asyncio.Future):
            result.add_done_callback(lambda done: _copy_outcome(done, future))
        else:
            future.set_result(result)

    try:
        loop.call_soon_threadsafe(run)
    except RuntimeError:
        raise NoSocket("the server is not running") from None
    return future
