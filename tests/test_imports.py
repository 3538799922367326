"""What an import loads, each in a fresh interpreter: ``import tidings`` loads its public names on
first use, the layers below the hub load no asyncio, and the CLI loads the demo only to run it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import tidings
from tidings.api.handlers import default_handlers
from tidings.server.app import Server

#: The leaf layers, bottom up: each may load only itself and the ones before it.
LEAVES = ["tidings.errors", "tidings.protocol", "tidings.message", "tidings.channels"]


def modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code`` (the last line it prints)."""
    report = "import json, sys\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", f"{code}\n{report}"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return set(json.loads(result.stdout.splitlines()[-1]))


def loaded_by(code: str) -> set[str]:
    """The modules ``code`` loads, less those the interpreter starts with."""
    return modules_after(code) - modules_after("pass")


def tidings_modules(modules: set[str]) -> set[str]:
    return {name for name in modules if name == "tidings" or name.startswith("tidings.")}


def test_import_tidings_loads_nothing_of_tidings() -> None:
    modules = loaded_by("import tidings")
    assert tidings_modules(modules) == {"tidings"}
    assert "asyncio" not in modules


@pytest.mark.parametrize("leaf", LEAVES)
def test_leaf_layers_load_no_asyncio_and_nothing_above_them(leaf: str) -> None:
    modules = loaded_by(f"import {leaf}")
    below = LEAVES[: LEAVES.index(leaf) + 1]
    above = {
        name
        for name in tidings_modules(modules) - {"tidings"}
        if not any(name == layer or name.startswith(f"{layer}.") for layer in below)
    }
    assert above == set()
    assert {"asyncio", "threading"}.isdisjoint(modules)


def test_public_names_are_listed_before_their_first_use() -> None:
    code = "import tidings; assert set(tidings.__all__) <= set(dir(tidings)), dir(tidings)"
    assert tidings_modules(loaded_by(code)) == {"tidings"}


def test_every_public_name_imports() -> None:
    namespace: dict[str, object] = {}
    exec("from tidings import *", namespace)
    assert set(tidings.__all__) <= namespace.keys()
    assert tidings.Server is Server
    assert tidings.on == default_handlers.on
    assert tidings.websocket == default_handlers.websocket
    assert issubclass(tidings.NoSocket, tidings.TidingsError)
    with pytest.raises(AttributeError, match="no attribute 'Srever'"):
        tidings.Srever  # noqa: B018


def test_cli_loads_the_demo_only_for_tidings_demo() -> None:
    help_of_run = (
        "from tidings.server.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass"
    )
    assert "tidings.demo" not in loaded_by(help_of_run)


#: Run first in the interpreters below: any import of web.py fails, as where it is not installed.
WITHOUT_WEBPY = """
import sys
from importlib.abc import MetaPathFinder

class NoWebpy(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "web" or name.startswith("web."):
            raise ModuleNotFoundError("No module named 'web'", name="web")

sys.meta_path.insert(0, NoWebpy())
"""

#: The modules that need web.py, from the `demo` extra: the demo and the web.py integration.
NEEDS_WEBPY = ("tidings.demo", "tidings.integrations.webpy")


def test_tidings_imports_without_webpy() -> None:
    """web.py is the `demo` extra: every other module of tidings imports without it."""
    code = WITHOUT_WEBPY + (
        "import pkgutil, tidings\n"
        "from tidings import *\n"
        "names = [m.name for m in pkgutil.walk_packages(tidings.__path__, 'tidings.')]\n"
        f"needs_webpy = {NEEDS_WEBPY!r}\n"
        "for name in names:\n"
        "    if name != 'tidings.__main__' and not name.startswith(needs_webpy):\n"
        "        __import__(name)\n"
    )
    modules = loaded_by(code)
    assert "web" not in modules
    assert {"tidings.server.cli", "tidings.server.app", "tidings.integrations.flask"} <= modules


@pytest.mark.parametrize("module", ["tidings.demo.app", "tidings.integrations.webpy"])
def test_the_demo_and_the_webpy_integration_need_webpy(module: str) -> None:
    """What the test above leaves out does need web.py: without it, the import names what is missing."""
    result = subprocess.run([sys.executable, "-c", f"{WITHOUT_WEBPY}import {module}"], capture_output=True)
    assert result.returncode == 1
    assert b"ModuleNotFoundError: No module named 'web'" in result.stderr
