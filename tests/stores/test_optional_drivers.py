"""The stores' drivers are optional: a missing one is named, with the extra that installs it.

Each check runs in a child interpreter in which the driver cannot be imported: the child sets
``sys.modules[driver] = None`` before anything imports it, so ``import aiosqlite`` raises
``ModuleNotFoundError`` exactly as it does where the package is not installed, while this
process keeps its drivers for the other tests.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

import penguiflow.stores

HINTS = {
    "SQLiteStore": (
        "aiosqlite",
        "SQLiteStore (penguiflow.stores.sqlite) needs aiosqlite: "
        "pip install 'penguiflow-runtime[sqlite]'",
    ),
    "PostgresStore": (
        "asyncpg",
        "PostgresStore (penguiflow.stores.postgres) needs asyncpg: "
        "pip install 'penguiflow-runtime[postgres]'",
    ),
}


def run_without(drivers: list[str], body: str) -> object:
    """Run ``body`` in a child where ``drivers`` cannot be imported; return what it prints."""
    code = "import json, sys\n"
    code += "".join(f"sys.modules[{driver!r}] = None\n" for driver in drivers)
    code += textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=False
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", sorted(HINTS))
def test_a_store_without_its_driver_names_the_extra(name: str) -> None:
    """``from penguiflow.stores import X`` fails with the install line; the other store,
    whose driver is there, still imports in the same process."""
    driver, hint = HINTS[name]
    (other,) = set(HINTS) - {name}
    got = run_without(
        [driver],
        f"""
        try:
            from penguiflow.stores import {name}
        except ImportError as exc:
            failure = [type(exc).__name__, str(exc), type(exc.__cause__).__name__]
        else:
            failure = None
        from penguiflow.stores import {other}
        print(json.dumps([failure, {other}.__name__]))
        """,
    )
    assert got == [["ImportError", hint, "ModuleNotFoundError"], other]


def test_star_import_needs_neither_driver() -> None:
    got = run_without(
        ["aiosqlite", "asyncpg"],
        """
        namespace = {}
        exec("from penguiflow.stores import *", namespace)
        import penguiflow.stores
        print(json.dumps({
            "names": sorted(name for name in namespace if not name.startswith("__")),
            "all": sorted(penguiflow.stores.__all__),
            "drivers": [m for m in ("aiosqlite", "asyncpg") if sys.modules.get(m) is not None],
            "dir": [n for n in ("PostgresStore", "SQLiteStore") if n in dir(penguiflow.stores)],
        }))
        """,
    )
    assert isinstance(got, dict)
    assert got["names"] == got["all"]
    assert {"MemoryStore", "StoreError", "StoredTrace"} <= set(got["names"])
    assert not {"SQLiteStore", "PostgresStore"} & set(got["names"])
    assert got["drivers"] == []
    assert got["dir"] == ["PostgresStore", "SQLiteStore"]


def test_lazy_names_with_their_drivers_installed() -> None:
    """Here both drivers are installed: the names resolve, and only known names do."""
    from penguiflow.stores.postgres import PostgresStore
    from penguiflow.stores.sqlite import SQLiteStore

    assert penguiflow.stores.SQLiteStore is SQLiteStore
    assert penguiflow.stores.PostgresStore is PostgresStore
    assert {"SQLiteStore", "PostgresStore", "MemoryStore"} <= set(dir(penguiflow.stores))
    with pytest.raises(AttributeError, match="has no attribute 'SQLStore'"):
        _ = penguiflow.stores.SQLStore
