"""Running handlers: ``def`` ones in a thread pool, ``async def`` ones on the event loop, each as
``func(request, socket, context, *args)``; what one raises goes to the ``error`` handlers.

A client event whose handlers and error handlers are all ``def`` runs whole in a handler thread
(:meth:`HandlerRunner.answer_in_thread`), with no task or future on the loop; the others await
each ``def`` handler's call (:meth:`HandlerRunner.invoke`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Iterable
from typing import Any

from tidings.api.handlers import ERROR, Handler, Handlers, Refuse
from tidings.api.socket import Socket
from tidings.server.logs import context
from tidings.server.threads import HandlerThreads
from tidings.settings import Settings
from tidings.stats import Histogram

logger = logging.getLogger("tidings.socketio")


def answer(refusal: str | None) -> dict[str, Any]:
    """The ack of a subscribe or unsubscribe request, and of a refused message or event."""
    return {"ok": True} if refusal is None else {"ok": False, "error": refusal}


class HandlerRunner:
    """Runs the handlers of a server; the thread pool is made for the first ``def`` handler."""

    def __init__(self, settings: Settings, handlers: Handlers) -> None:
        self.settings = settings
        self.handlers = handlers
        self._threads: HandlerThreads | None = None
        # Read by the metrics at a scrape: how long each handler ran, how often it raised, by name.
        self.durations: dict[str, Histogram] = {}
        self.errors: dict[str, int] = {}

    @property
    def threads(self) -> HandlerThreads:
        """The pool of ``def`` handlers, started for the first one (event loop thread)."""
        loop = asyncio.get_running_loop()
        if self._threads is None or self._threads.loop is not loop:
            if self._threads is not None:  # the server runs on another loop now (tests do that)
                self._threads.shutdown()
            self._threads = HandlerThreads(self.settings.handler_threads, loop)
        return self._threads

    async def invoke(self, handler: Handler, *args: Any) -> Any:
        if handler.is_async:
            return await handler.func(*args)
        return await self.threads.call(handler.func, *args)

    async def run(
        self, socket: Socket, handler: Handler, args: Iterable[Any], channels: Collection[str]
    ) -> Any:
        """Run one handler as ``func(request, socket, context, *args)``.

        An exception (a :class:`Refuse` too) is logged with its traceback and handed to the ``error``
        handlers that match ``channels``; the connection goes on and the result is None.
        """
        return await self.run_answering(socket, ((handler, args),), channels, refusable=False)

    def took(self, handler: Handler, seconds: float) -> None:
        """Count a handler's run in its duration histogram (event loop thread)."""
        name = handler.name
        durations = self.durations.get(name)
        if durations is None:
            durations = self.durations[name] = Histogram()
        durations.observe(seconds)

    async def run_error_handlers(self, socket: Socket, error: Exception, channels: Collection[str]) -> None:
        for handler in self.handlers.get(socket.namespace, ERROR):
            if handler.matches(channels):
                try:
                    await self.invoke(handler, socket.request, socket, socket.context, error)
                except Exception:  # not handed to error handlers again: that could loop
                    logger.exception(
                        "error handler %s raised", handler.name, extra=_context(socket, channels)
                    )

    async def run_answering(
        self,
        socket: Socket,
        calls: Iterable[tuple[Handler, Iterable[Any]]],
        channels: Collection[str],
        refusable: bool = True,
    ) -> Any:
        """Run the handlers of one client event with their arguments, in order, for its ack: the first
        result that is not None, or the refusal of a handler that raised :class:`Refuse` (the
        handlers after it do not run) if ``refusable``. Each runs as :meth:`run` runs one, in this
        coroutine: one per client event, not one more per handler."""
        result = None
        for handler, args in calls:
            started = time.perf_counter()
            try:
                if handler.is_async:  # invoke's, without a coroutine of its own
                    value = await handler.func(socket.request, socket, socket.context, *args)
                else:
                    value = await self.threads.call(
                        handler.func, socket.request, socket, socket.context, *args
                    )
            except Exception as error:
                if refusable and isinstance(error, Refuse):
                    return answer(error.reason)
                name = handler.name
                logger.exception("handler %s raised", name, extra=_context(socket, channels))
                self.errors[name] = self.errors.get(name, 0) + 1
                await self.run_error_handlers(socket, error, channels)
                value = None
            finally:
                self.took(handler, time.perf_counter() - started)
            if result is None:
                result = value
        return result

    def answer_in_thread(
        self, socket: Socket, calls: Iterable[tuple[Handler, Iterable[Any]]], channels: Collection[str]
    ) -> Answered:
        """:meth:`run_answering` for ``def`` handlers only, in a handler thread: the same order,
        logs, error handlers and answer. What the loop keeps count of (durations, errors) comes back
        in the :class:`Answered`, for :meth:`count` on the loop."""
        answered = Answered()
        for handler, args in calls:
            started = time.perf_counter()
            try:
                value = handler.func(socket.request, socket, socket.context, *args)
            except Refuse as refused:
                answered.result = answer(refused.reason)
                answered.durations.append((handler, time.perf_counter() - started))
                return answered
            except Exception as error:
                name = handler.name
                logger.exception("handler %s raised", name, extra=_context(socket, channels))
                answered.errors.append(name)
                for error_handler in self.handlers.get(socket.namespace, ERROR):
                    if error_handler.matches(channels):
                        try:
                            error_handler.func(socket.request, socket, socket.context, error)
                        except Exception:  # not handed to error handlers again: that could loop
                            logger.exception(
                                "error handler %s raised",
                                error_handler.name,
                                extra=_context(socket, channels),
                            )
                value = None
            answered.durations.append((handler, time.perf_counter() - started))
            if answered.result is None:
                answered.result = value
        return answered

    def count(self, answered: Answered) -> None:
        """Keep the durations and errors of an :meth:`answer_in_thread` (event loop thread)."""
        for handler, seconds in answered.durations:
            self.took(handler, seconds)
        for name in answered.errors:
            self.errors[name] = self.errors.get(name, 0) + 1

    async def fire(self, socket: Socket, event: str, channels: Collection[str], *args: Any) -> None:
        """Run the lifecycle handlers of ``event`` that match ``channels``."""
        for handler in self.handlers.get(socket.namespace, event):
            if handler.matches(channels):
                await self.run(socket, handler, args, channels)

    def queued(self) -> int:
        """Calls of ``def`` handlers waiting for a thread of the pool."""
        return self._threads.queued() if self._threads is not None else 0

    def shutdown(self) -> None:
        if self._threads is not None:
            self._threads.shutdown()
            self._threads = None


class Answered:
    """What :meth:`HandlerRunner.answer_in_thread` found: the answer, and what the loop counts."""

    __slots__ = ("durations", "errors", "result")

    def __init__(self) -> None:
        self.result: Any = None
        self.durations: list[tuple[Handler, float]] = []
        self.errors: list[str] = []


def _context(socket: Socket, channels: Collection[str]) -> dict[str, str]:
    return context(socket.session_id, socket.namespace, channels)
