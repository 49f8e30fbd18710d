"""The ``backend`` fixture: one conformance suite, run against every store.

Each parameter yields a ``Backend`` that opens stores of one kind over one storage: a
``MemoryStore``; a ``SQLiteStore`` on a file under ``tmp_path``; a ``PostgresStore`` in a
schema of its own on 127.0.0.1:5432, dropped afterwards. The PostgreSQL parameter is skipped
only when the server is unreachable and ``CI`` is unset; under CI it fails instead.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.stores import MemoryStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

    from penguiflow.stores._base import StoreBase

PG_DSN = os.environ.get("PENGUIFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
KINDS = ("memory", "sqlite", "postgres")


async def postgres_connection() -> Any:
    """Connect to the test server, or skip (fail under CI) if it cannot be reached."""
    asyncpg = pytest.importorskip("asyncpg")
    try:
        return await asyncpg.connect(PG_DSN, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but PostgreSQL at {PG_DSN} is unreachable: {exc!r}")
        pytest.skip(f"PostgreSQL at {PG_DSN} is unreachable: {exc!r}")


@dataclass
class Backend:
    """Opens stores of one kind over one storage, and closes them all at the end."""

    kind: str
    factory: Callable[..., StoreBase]
    opened: list[StoreBase] = field(default_factory=list)

    @property
    def durable(self) -> bool:
        return self.kind != "memory"

    def make(self, mixin: type | None = None, **options: Any) -> StoreBase:
        """Build a store (not started); ``mixin`` goes in front of the store class."""
        store = self.factory(mixin, **options)
        self.opened.append(store)
        return store

    async def open(self, mixin: type | None = None, **options: Any) -> StoreBase:
        store = self.make(mixin, **options)
        await store.start()
        return store

    async def close_all(self) -> None:
        for store in self.opened:
            await store.close()


def _subclass(base: type[StoreBase], mixin: type | None) -> Any:
    """Return ``base``, or a subclass with ``mixin`` first (its hooks win)."""
    if mixin is None:
        return base
    return type(f"{mixin.__name__}{base.__name__}", (mixin, base), {})


@pytest.fixture(params=KINDS)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    kind: str = request.param
    if kind == "memory":
        made = Backend(kind, lambda mixin, **o: _subclass(MemoryStore, mixin)(**o))
        yield made
        await made.close_all()
    elif kind == "sqlite":
        from penguiflow.stores.sqlite import SQLiteStore

        path = tmp_path / "state.db"
        made = Backend(kind, lambda mixin, **o: _subclass(SQLiteStore, mixin)(path, **o))
        yield made
        await made.close_all()
    else:
        from penguiflow.stores.postgres import PostgresStore

        connection = await postgres_connection()
        schema = f"pf_test_{uuid.uuid4().hex}"
        try:
            made = Backend(
                kind,
                lambda mixin, **o: _subclass(PostgresStore, mixin)(PG_DSN, schema=schema, **o),
            )
            yield made
            await made.close_all()
        finally:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await connection.close()
