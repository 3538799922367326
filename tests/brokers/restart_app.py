"""The server of the restart tests: channel ``stream`` keeps a history long enough for a restart, and
a ``slow`` event whose handler is still running when the server is told to stop."""

from __future__ import annotations

import asyncio
import os

import tidings

handlers = tidings.Handlers()


@handlers.on("slow")
async def slow(request, socket, context, seconds):
    """Answers after ``seconds``; its ``finish`` writes a line to the file TIDINGS_TEST_FINISHED names."""
    await asyncio.sleep(seconds)
    return "done"


@handlers.on("finish")
def finish(request, socket, context):
    with open(os.environ["TIDINGS_TEST_FINISHED"], "a") as out:
        out.write(socket.session_id + "\n")


app = tidings.Server(
    handlers=handlers,
    history=[("stream", 10_000, 300)],
    shutdown_timeout=float(os.environ.get("TIDINGS_TEST_SHUTDOWN_TIMEOUT", "10")),
)
