"""Questions the Redis broker asks every node, and their answers: what the HTTP server API's
``channels`` and ``disconnect`` need of the sockets of every node.

A question goes to every node on the ``all:nodes`` topic, as ``?["<id>", "<asking node>", "<question>",
"<argument>"]``; PUBLISH answers how many nodes took it (the asking node among them), which is how many
answers to wait for. Each node answers on the asking node's topic, ``node:<id>``, as
``=["<id>", <answer>]``. Neither starts like an envelope (``1:``, ``#``, ``@``), so a node reads them apart.
An answer that does not come within the asker's timeout is left out.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from typing import Any

import orjson

logger = logging.getLogger("tidings.broker")

QUESTION = b"?"
ANSWER = b"="

Queue = Callable[[tuple[Any, ...]], "asyncio.Future[Any]"]


class Asked:
    """One question's answers so far, and how many there will be (known once PUBLISH answers)."""

    __slots__ = ("answers", "done", "expected")

    def __init__(self) -> None:
        self.answers: list[Any] = []
        self.expected: int | None = None
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def check(self) -> None:
        if self.expected is not None and len(self.answers) >= self.expected and not self.done.done():
            self.done.set_result(None)


class Survey:
    """The questions this node has asked and waits for answers to."""

    def __init__(
        self, queue: Queue, publish: str, all_topic: bytes, node_topic: Callable[[str], bytes], node_id: str
    ):
        self._queue = queue
        self._publish = publish  # PUBLISH, or SPUBLISH on a Redis Cluster
        self._all_topic = all_topic
        self._node_topic = node_topic
        self._node_id = node_id
        self._asked: dict[str, Asked] = {}

    async def ask(self, question: str, argument: str, timeout: float) -> list[Any]:
        """Every node's answer to ``question`` (those that came within ``timeout`` seconds)."""
        ask_id = secrets.token_urlsafe(9)
        asked = self._asked[ask_id] = Asked()
        try:
            message = QUESTION + orjson.dumps([ask_id, self._node_id, question, argument])
            asked.expected = await asyncio.wait_for(
                self._queue((self._publish, self._all_topic, message)), timeout
            )
            asked.check()
            await asyncio.wait_for(asked.done, timeout)
        except asyncio.TimeoutError:
            logger.warning(
                "broker: %d node(s) did not answer %r in time",
                (asked.expected or 0) - len(asked.answers),
                question,
            )
        finally:
            del self._asked[ask_id]
        return asked.answers

    def answer(self, data: bytes, respond: Callable[[str, str], Any]) -> None:
        """Answer a question from another node (or this one) with ``respond(question, argument)``."""
        try:
            ask_id, node, question, argument = orjson.loads(data[1:])
            text = isinstance(ask_id, str) and isinstance(node, str) and isinstance(argument, str)
            if not text or "." in node:
                raise ValueError("not a question")
            answer = orjson.dumps([ask_id, respond(question, argument)])
        except (orjson.JSONDecodeError, ValueError, TypeError) as error:
            logger.error("broker: dropped a malformed question: %s", error)
            return
        self._queue((self._publish, self._node_topic(node), ANSWER + answer))

    def answered(self, data: bytes) -> None:
        """An answer to one of this node's questions (an unknown or late one is dropped)."""
        try:
            ask_id, answer = orjson.loads(data[1:])
        except (orjson.JSONDecodeError, ValueError, TypeError):
            logger.error("broker: dropped a malformed answer")
            return
        asked = self._asked.get(ask_id) if isinstance(ask_id, str) else None
        if asked is not None:
            asked.answers.append(answer)
            asked.check()
