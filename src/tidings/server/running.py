"""Running handlers: ``def`` ones in a thread pool, ``async def`` ones on the event loop, each as
``func(request, socket, context, *args)``; what one raises goes to the ``error`` handlers."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import logging
import time
from collections.abc import Collection, Iterable
from typing import Any

from tidings.api.handlers import ERROR, Handler, Handlers, Refuse
from tidings.api.socket import Socket
from tidings.server.logs import context
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
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        # Read by the metrics at a scrape: how long each handler ran, how often it raised, by name.
        self.durations: dict[str, Histogram] = {}
        self.errors: dict[str, int] = {}

    async def invoke(self, handler: Handler, *args: Any) -> Any:
        if handler.is_async:
            return await handler.func(*args)
        if self._executor is None:
            self._executor = concurrent.futures.ThreadPoolExecutor(
                self.settings.handler_threads, thread_name_prefix="tidings-handler"
            )
        loop = asyncio.get_running_loop()
        context = contextvars.copy_context()
        return await loop.run_in_executor(self._executor, context.run, handler.func, *args)

    async def run(
        self,
        socket: Socket,
        handler: Handler,
        args: Iterable[Any],
        channels: Collection[str],
        refusable: bool = False,
    ) -> Any:
        """Run one handler as ``func(request, socket, context, *args)``.

        An exception is logged with its traceback and handed to the ``error`` handlers that match
        ``channels``; the connection goes on and the result is None. If ``refusable``, a
        :class:`Refuse` is raised on instead: the handler refused what the client asked for.
        """
        name = handler_name(handler)
        started = time.perf_counter()
        try:
            return await self.invoke(handler, socket.request, socket, socket.context, *args)
        except Exception as error:
            if refusable and isinstance(error, Refuse):
                raise
            logger.exception("handler %s raised", name, extra=_context(socket, channels))
            self.errors[name] = self.errors.get(name, 0) + 1
            await self.run_error_handlers(socket, error, channels)
            return None
        finally:
            durations = self.durations.get(name)
            if durations is None:
                durations = self.durations[name] = Histogram()
            durations.observe(time.perf_counter() - started)

    async def run_error_handlers(self, socket: Socket, error: Exception, channels: Collection[str]) -> None:
        for handler in self.handlers.get(socket.namespace, ERROR):
            if handler.matches(channels):
                try:
                    await self.invoke(handler, socket.request, socket, socket.context, error)
                except Exception:  # not handed to error handlers again: that could loop
                    logger.exception(
                        "error handler %s raised", handler_name(handler), extra=_context(socket, channels)
                    )

    async def run_answering(
        self, socket: Socket, calls: Iterable[tuple[Handler, Iterable[Any]]], channels: Collection[str]
    ) -> Any:
        """Run the handlers of one client event with their arguments, in order, for its ack: the first
        result that is not None, or the refusal of a handler that raised :class:`Refuse` (the
        handlers after it do not run)."""
        result = None
        for handler, args in calls:
            try:
                value = await self.run(socket, handler, args, channels, refusable=True)
            except Refuse as refused:
                return answer(refused.reason)
            if result is None:
                result = value
        return result

    async def fire(self, socket: Socket, event: str, channels: Collection[str], *args: Any) -> None:
        """Run the lifecycle handlers of ``event`` that match ``channels``."""
        for handler in self.handlers.get(socket.namespace, event):
            if handler.matches(channels):
                await self.run(socket, handler, args, channels)

    def queued(self) -> int:
        """Calls of ``def`` handlers waiting for a thread of the pool."""
        return self._executor._work_queue.qsize() if self._executor is not None else 0

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _context(socket: Socket, channels: Collection[str]) -> dict[str, str]:
    return context(socket.session_id, socket.namespace, channels)


def handler_name(handler: Handler) -> str:
    return getattr(handler.func, "__qualname__", repr(handler.func))
