"""The HTTP server API against its own OpenAPI document: schemathesis makes requests from the document
(valid ones and broken ones) to a live server; no answer is a 5xx, and every answer matches the document."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings

import tidings
from tests.serving import ThreadedServer
from tidings.server import openapi

KEY = "schemathesis-key"
#: The integers tidings carries (tidings.protocol.socketio.loads refuses others).
INT64 = range(-(2**63), 2**64)
SETTINGS = tidings.Settings(api_key=KEY, history=[("^hist-", 5, 60)], presence=["^pres-"])
# The document the server serves (checked below), loaded here: schemathesis makes its tests from it.
schema = schemathesis.openapi.from_dict(openapi.document(SETTINGS))


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    with ThreadedServer(tidings.Server(handlers=tidings.Handlers(), settings=SETTINGS)) as running:
        yield running


def test_the_server_serves_the_document(server: ThreadedServer) -> None:
    served = httpx.get(f"{server.url}/api/openapi.json")
    assert served.status_code == 200 and served.json() == openapi.document(SETTINGS)


def wide_integers(value: Any) -> bool:
    """Whether ``value`` holds an integer beyond 64 bits: JSON Schema cannot say that a value of any
    shape may not, so the document says so in words, and these requests are checked apart."""
    if isinstance(value, dict):
        return any(map(wide_integers, value.values()))
    if isinstance(value, list):
        return any(map(wide_integers, value))
    return type(value) is int and value not in INT64


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_answer_matches_the_document(case: schemathesis.Case, server: ThreadedServer) -> None:
    headers = {"X-API-Key": KEY}
    if wide_integers(case.body):
        response = case.call(base_url=server.url, headers=headers)
        assert response.status_code == 400 and "beyond 64 bits" in response.json()["error"]
        return
    case.call_and_validate(base_url=server.url, headers=headers)
