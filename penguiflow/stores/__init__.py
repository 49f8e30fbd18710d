"""Durable and in-memory ``StateStore`` implementations, all behind one batching writer.

``MemoryStore`` needs nothing; ``SQLiteStore`` needs ``aiosqlite`` (the ``sqlite`` extra) and
``PostgresStore`` needs ``asyncpg`` (the ``postgres`` extra). Those two are imported only
when first named, so importing this package never pulls in an optional dependency; naming one
whose driver is missing raises ``ImportError`` with the ``pip install`` line that adds it.

They are left out of ``__all__`` on purpose: ``from penguiflow.stores import *`` fetches every
name in ``__all__``, so listing them would make a star import need both drivers. Import them
by name (``from penguiflow.stores import SQLiteStore``); ``dir()`` lists them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..state import SupportsTraceLifecycle
from ._base import DEFAULT_CLOSE_TIMEOUT_S, DEFAULT_FAILING_AFTER_S, DEFAULT_RETENTION_S
from ._errors import (
    CorruptRecordError,
    FlushTimeoutError,
    IncompatibleStoreError,
    SchemaVersionError,
    StoreBrokenError,
    StoreClosedError,
    StoreError,
    StoreFailingError,
    WriteBufferFull,
    WritesAbandonedError,
)
from ._schema import SCHEMA_VERSION
from ._types import StoredTrace, TraceStatus
from ._writer import Backoff, BatchWriter, WriterStatistics, WriterStatus
from .memory import MemoryStore

if TYPE_CHECKING:
    # Explicit re-exports: type checkers see the names ``__getattr__`` provides.
    from .postgres import PostgresStore as PostgresStore
    from .sqlite import SQLiteStore as SQLiteStore

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT_S",
    "DEFAULT_FAILING_AFTER_S",
    "DEFAULT_RETENTION_S",
    "SCHEMA_VERSION",
    "Backoff",
    "BatchWriter",
    "CorruptRecordError",
    "FlushTimeoutError",
    "IncompatibleStoreError",
    "MemoryStore",
    "SchemaVersionError",
    "StoreBrokenError",
    "StoreClosedError",
    "StoreError",
    "StoreFailingError",
    "StoredTrace",
    "SupportsTraceLifecycle",
    "TraceStatus",
    "WriteBufferFull",
    "WriterStatistics",
    "WriterStatus",
    "WritesAbandonedError",
]

_LAZY = {"SQLiteStore": ".sqlite", "PostgresStore": ".postgres"}


def __getattr__(name: str) -> object:
    """Import ``SQLiteStore`` or ``PostgresStore`` (and their driver) on first use.

    Raises:
        AttributeError: ``name`` is not a name of this package.
        ImportError: the store's driver is not installed (the message names the extra).
    """
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The package's names, the lazily imported stores included."""
    return sorted({*globals(), *_LAZY})
