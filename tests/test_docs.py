"""Every Python block in README.md and docs/*.md runs as written (in this process; docs/getting-started.md
also runs whole, shell blocks too, in a fresh venv: tests/test_getting_started.py)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tidings.api.handlers import default_handlers

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for document in DOCUMENTS:
        for number, match in enumerate(BLOCK.finditer(document.read_text()), 1):
            blocks.append((f"{document.name}#{number}", match.group(1)))
    return blocks


@pytest.fixture
def default_registry() -> Iterator[None]:
    """Blocks register handlers on the default registry: take them out again afterwards."""
    handlers = default_handlers._handlers
    saved = ({key: list(value) for key, value in handlers.items()}, dict(default_handlers.endpoints))
    yield
    handlers.clear()
    handlers.update(saved[0])
    default_handlers.endpoints.clear()
    default_handlers.endpoints.update(saved[1])


@pytest.mark.parametrize(("name", "code"), python_blocks(), ids=[name for name, _ in python_blocks()])
def test_block_runs(name: str, code: str, default_registry: None) -> None:
    exec(compile(code, name, "exec"), {"__name__": name})
