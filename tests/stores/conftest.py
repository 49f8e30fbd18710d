"""The ``backend`` fixture: one conformance suite, run against every store.

Each parameter yields a ``Backend`` that opens stores of one kind over one storage: a
``MemoryStore``; a ``SQLiteStore`` on a file under ``tmp_path``; a ``PostgresStore`` in a
schema of its own on 127.0.0.1:5432, dropped afterwards.

Every test that needs PostgreSQL connects through ``postgres_connection``, the one place that
decides what happens when the server (or ``asyncpg``) is missing: the test is skipped, unless
``PENGUIFLOW_REQUIRE_POSTGRES`` or ``CI`` is set (to anything but ``0``, ``false``, ``no`` or
empty), and then it fails, so that CI cannot pass with the PostgreSQL tests silently skipped.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

from penguiflow.stores import MemoryStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Sequence
    from pathlib import Path

    from penguiflow.stores._base import StoreBase

PG_DSN = os.environ.get("PENGUIFLOW_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
KINDS = ("memory", "sqlite", "postgres")
REQUIRE_POSTGRES = ("PENGUIFLOW_REQUIRE_POSTGRES", "CI")


def postgres_required() -> bool:
    """Whether a missing PostgreSQL fails the tests that need it rather than skipping them."""
    return any(
        os.environ.get(name, "").strip().lower() not in {"", "0", "false", "no"}
        for name in REQUIRE_POSTGRES
    )


def postgres_unavailable(reason: str) -> NoReturn:
    """Skip the current test for ``reason``, or fail it when PostgreSQL is required."""
    if postgres_required():
        names = " or ".join(REQUIRE_POSTGRES)
        pytest.fail(f"{reason}; {names} is set, so the PostgreSQL tests must run")
    pytest.skip(reason)


async def postgres_connection() -> Any:
    """Connect to the test server; skip, or fail when required, if it cannot be reached."""
    try:
        import asyncpg
    except ImportError as exc:
        postgres_unavailable(f"asyncpg is not installed: {exc!r}")
    try:
        return await asyncpg.connect(PG_DSN, timeout=5)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
        postgres_unavailable(f"PostgreSQL at {PG_DSN} is unreachable: {exc!r}")


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


class FakeClock:
    """A wall clock that moves only when told."""

    def __init__(self, now: float = 5000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class GatedCommits:
    """Every commit announces itself on ``entered`` and waits for ``gate``."""

    gate: asyncio.Event
    entered: asyncio.Event

    def arm(self) -> None:
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()

    async def _commit_batch(self, batch: Sequence[Any]) -> None:
        self.entered.set()
        await self.gate.wait()
        await super()._commit_batch(batch)  # type: ignore[misc]
