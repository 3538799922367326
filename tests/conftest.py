from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.node_client import NodeClient
from tests.serving import TidingsProcess


@pytest.fixture(scope="module")
def interop_server() -> Iterator[TidingsProcess]:
    """`tidings run tests/interop/app.py:app` on a free port, for a module's tests."""
    server = TidingsProcess("tests/interop/app.py:app").start()
    yield server
    server.stop()


@pytest.fixture
def node_client() -> Iterator[NodeClient]:
    client = NodeClient()
    yield client
    client.close()
