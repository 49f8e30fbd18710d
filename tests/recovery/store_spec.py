"""Opening a store from the ``--store`` argument the recovery workers take.

``sqlite:<path>`` or ``postgres:<dsn>#<schema>``. The workers run as scripts, so they import
this module from their own directory.
"""

from __future__ import annotations

from typing import Any


def open_store(spec: str, **options: Any) -> Any:
    """Build (not open) the store ``spec`` names, with ``options`` for its constructor."""
    kind, _, where = spec.partition(":")
    if kind == "sqlite":
        from penguiflow.stores import SQLiteStore

        return SQLiteStore(where, **options)
    from penguiflow.stores import PostgresStore

    dsn, _, schema = where.rpartition("#")
    return PostgresStore(dsn, schema=schema, **options)
