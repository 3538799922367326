from __future__ import annotations

import pytest


@pytest.fixture(scope="module", params=["fast", "auto"], ids=["fast", "asgi"])
def ws_protocol(request: pytest.FixtureRequest) -> str:
    """The WebSocket protocol of a test's ThreadedServer: each test runs on both paths.

    "fast": `tidings run`'s default (tidings' own protocol, server/websocket.py); "asgi": the app under
    plain uvicorn and its default protocol ("auto": websockets-sansio), as `uvicorn app:app` serves it.
    """
    return str(request.param)
