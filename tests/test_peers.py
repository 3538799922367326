"""tests/peers.py: a missing peer skips its test, and fails it under TIDINGS_REQUIRE_ALL=1 (as in CI);
a Redis that does not answer is such a peer wherever a test takes a prefix on the machine's Redis."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests import peers
from tests.brokers.cluster import new_prefix
from tests.serving import free_port

SKIPPED, FAILED = pytest.skip.Exception, pytest.fail.Exception


def outcome(call: Callable[[], object]) -> tuple[type[BaseException], str]:
    """How ``call`` ends the test, a skip or a failure, and why (caught: neither ends this test)."""
    with pytest.raises((SKIPPED, FAILED)) as raised:
        call()
    return raised.type, str(raised.value)


@pytest.mark.parametrize("setting", [None, "", "0", "yes"])
def test_a_missing_peer_skips(monkeypatch: pytest.MonkeyPatch, setting: str | None) -> None:
    if setting is None:
        monkeypatch.delenv("TIDINGS_REQUIRE_ALL", raising=False)
    else:
        monkeypatch.setenv("TIDINGS_REQUIRE_ALL", setting)
    ended = outcome(lambda: peers.missing("node", "no `node` on PATH"))
    assert ended == (SKIPPED, "node unavailable: no `node` on PATH")


def test_a_missing_peer_fails_when_all_are_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIDINGS_REQUIRE_ALL", "1")
    ended = outcome(lambda: peers.missing("node", "no `node` on PATH"))
    assert ended == (FAILED, "node unavailable: no `node` on PATH (TIDINGS_REQUIRE_ALL=1)")


@pytest.mark.parametrize(("setting", "expected"), [("0", SKIPPED), ("1", FAILED)])
def test_a_redis_that_does_not_answer_is_a_missing_peer(
    monkeypatch: pytest.MonkeyPatch, setting: str, expected: type[BaseException]
) -> None:
    silent = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    monkeypatch.setattr(peers, "REDIS_URL", silent)
    monkeypatch.setenv("TIDINGS_REQUIRE_ALL", setting)
    kind, why = outcome(new_prefix)
    assert kind is expected and why.startswith(f"redis unavailable: no Redis at {silent} "), why


def test_a_prefix_is_taken_on_the_machine_redis() -> None:
    first, second = new_prefix(), new_prefix()
    assert first.startswith("tidings-test-") and first.endswith(":") and first != second


def test_node_and_its_packages_are_peers(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TIDINGS_REQUIRE_ALL", "0")
    (tmp_path / "node_modules" / "ws").mkdir(parents=True)
    peers.node_packages(tmp_path, "ws")  # a skip, rightly, where Node is missing
    ended = outcome(lambda: peers.node_packages(tmp_path, "ws", "socket.io"))
    assert ended == (SKIPPED, f"npm package socket.io unavailable: run `npm ci` in {tmp_path}")
    monkeypatch.setenv("PATH", str(tmp_path))
    ended = outcome(lambda: peers.node_packages(tmp_path, "ws"))
    assert ended == (SKIPPED, "node unavailable: no `node` on PATH")
