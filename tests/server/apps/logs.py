"""The server of the log tests: a handler that raises."""

from __future__ import annotations

import tidings

handlers = tidings.Handlers()


@handlers.on("boom")
def boom(request, socket, context):
    raise RuntimeError("boom")


app = tidings.Server(handlers=handlers)
