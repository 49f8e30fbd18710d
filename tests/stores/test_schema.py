"""Foreign, future and broken databases: the SQL stores refuse them clearly and change nothing.

Each case runs on SQLite (a file under ``tmp_path``) and PostgreSQL (a fresh schema). A
``Raw`` handle reads and writes the database directly, behind the store's back, and takes
snapshots that show nothing was written.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.state import RemoteBinding, StoredEvent
from penguiflow.stores import (
    SCHEMA_VERSION,
    CorruptRecordError,
    IncompatibleStoreError,
    SchemaVersionError,
)
from penguiflow.stores import postgres as pg_module
from penguiflow.stores import sqlite as sqlite_module
from penguiflow.stores.postgres import PostgresStore
from penguiflow.stores.sqlite import SQLiteStore

from .conftest import PG_DSN, postgres_connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from penguiflow.stores._base import StoreBase


class Raw:
    """Direct access to one database, and the store class that opens it."""

    location: str

    async def execute(self, sql: str) -> None:
        raise NotImplementedError

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    async def snapshot(self) -> object:
        raise NotImplementedError

    def store(self) -> StoreBase:
        raise NotImplementedError


class RawSQLite(Raw):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)

    async def execute(self, sql: str) -> None:
        with sqlite3.connect(self.path) as db:
            db.executescript(sql)
        db.close()

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.path) as db:
            rows = db.execute(sql).fetchall()
        db.close()
        return rows

    async def snapshot(self) -> object:
        siblings = sorted(p.name for p in self.path.parent.iterdir())
        return siblings, self.path.read_bytes() if self.path.exists() else None

    def store(self) -> StoreBase:
        return SQLiteStore(self.path)


class RawPostgres(Raw):
    def __init__(self, connection: Any, schema: str) -> None:
        self.connection = connection
        self.schema = schema
        self.location = f"schema '{schema}'"

    async def execute(self, sql: str) -> None:
        await self.connection.execute(sql)

    async def fetch(self, sql: str) -> list[tuple[Any, ...]]:
        return [tuple(row) for row in await self.connection.fetch(sql)]

    async def snapshot(self) -> object:
        tables = await self.fetch(
            "SELECT table_name FROM information_schema.tables"
            f" WHERE table_schema = '{self.schema}' ORDER BY 1"
        )
        contents = [await self.fetch(f"SELECT * FROM {name} ORDER BY 1") for (name,) in tables]
        return tables, contents

    def store(self) -> StoreBase:
        return PostgresStore(PG_DSN, schema=self.schema)


@pytest.fixture(params=["sqlite", "postgres"])
async def raw(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Raw]:
    if request.param == "sqlite":
        yield RawSQLite(tmp_path / "state.db")
        return
    connection = await postgres_connection()
    schema = f"pf_test_{uuid.uuid4().hex}"
    await connection.execute(f'CREATE SCHEMA "{schema}"; SET search_path TO "{schema}"')
    try:
        yield RawPostgres(connection, schema)
    finally:
        await connection.execute(f'DROP SCHEMA "{schema}" CASCADE')
        await connection.close()


def migrations(raw: Raw) -> Any:
    return (sqlite_module if isinstance(raw, RawSQLite) else pg_module).MIGRATIONS


async def refuse(raw: Raw, error: type[Exception], *fragments: str) -> Exception:
    """Opening ``raw`` raises ``error`` whose message names the location and ``fragments``."""
    before = await raw.snapshot()
    store = raw.store()
    with pytest.raises(error) as caught:
        await store.start()
    await store.close()
    message = str(caught.value)
    for fragment in (raw.location, *fragments):
        assert fragment in message
    assert await raw.snapshot() == before
    return caught.value


async def test_a_file_that_is_not_sqlite_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"these are my notes, not a database\n" * 200)
    await refuse(RawSQLite(path), IncompatibleStoreError, "not a SQLite database")


async def test_foreign_tables_with_our_names_are_refused_untouched(raw: Raw) -> None:
    await raw.execute(
        "CREATE TABLE events (id INTEGER, name TEXT); INSERT INTO events VALUES (1, 'x')"
    )
    error = await refuse(raw, IncompatibleStoreError, "events", "missing", "unexpected name")
    assert not isinstance(error, SchemaVersionError)


async def test_our_tables_without_schema_meta_are_refused(raw: Raw) -> None:
    for statement in migrations(raw)[0].statements[1:]:
        await raw.execute(statement)
    await refuse(raw, IncompatibleStoreError, "no schema_meta table")


async def test_schema_meta_without_a_version_is_refused(raw: Raw) -> None:
    await raw.execute("CREATE TABLE schema_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    await refuse(raw, IncompatibleStoreError, "no schema_version row")
    await raw.execute("INSERT INTO schema_meta VALUES ('schema_version', 'two')")
    await refuse(raw, IncompatibleStoreError, "'two'", "not a positive integer")


async def test_a_newer_schema_is_refused_untouched(raw: Raw) -> None:
    async with raw.store() as store:
        await store.save_event(StoredEvent("t", 1.0, "k", None, None, {}))
    await raw.execute("UPDATE schema_meta SET value = '99' WHERE key = 'schema_version'")
    error = await refuse(raw, SchemaVersionError, "99", f"up to {SCHEMA_VERSION}", "upgrade")
    assert isinstance(error, SchemaVersionError)
    assert (error.found, error.supported) == (99, SCHEMA_VERSION)


async def test_a_missing_table_of_the_recorded_version_is_refused(raw: Raw) -> None:
    async with raw.store():
        pass
    await raw.execute("DROP TABLE traces")
    await refuse(raw, IncompatibleStoreError, "the table traces is missing")


async def test_version_1_is_migrated_keeping_its_data(raw: Raw) -> None:
    first = migrations(raw)[0]
    assert first.version == 1
    assert migrations(raw)[-1].version == SCHEMA_VERSION
    for statement in first.statements:
        await raw.execute(statement)
    await raw.execute(
        "INSERT INTO schema_meta VALUES ('schema_version', '1');"
        " INSERT INTO events (trace_id, ts, kind, node_name, node_id, payload)"
        """ VALUES ('old', 1.5, 'node_start', 'a', 'a', '{"i": 0}')"""
    )
    async with raw.store() as store:
        await store.save_event(StoredEvent("old", 2.5, "node_success", "a", "a", {"i": 1}))
        await store.save_trace_start("old", "{}", flow_key="f")
        history = await store.load_history("old")
        assert [(e.ts, e.payload) for e in history] == [(1.5, {"i": 0}), (2.5, {"i": 1})]
        assert [t.trace_id for t in await store.unfinished_traces("f")] == ["old"]
    version = await raw.fetch("SELECT value FROM schema_meta WHERE key = 'schema_version'")
    assert version == [(str(SCHEMA_VERSION),)]


async def test_a_corrupt_event_row_is_named_and_left_alone(raw: Raw) -> None:
    async with raw.store() as store:
        for i in range(3):
            await store.save_event(StoredEvent("t", float(i), "k", None, None, {"i": i}))
        await store.save_event(StoredEvent("other", 9.0, "k", None, None, {"i": 9}))
    # PostgreSQL's json column only holds valid JSON: an array stands for a bad payload there.
    bad = "'{not json'" if isinstance(raw, RawSQLite) else "'[1, 2]'"
    await raw.execute(f"UPDATE events SET payload = {bad} WHERE id = 2")
    async with raw.store() as store:
        with pytest.raises(CorruptRecordError, match="row 2 of table 'events'") as caught:
            await store.load_history("t")
        assert (caught.value.table, caught.value.row_id) == ("events", 2)
        assert [e.payload for e in await store.load_history("other")] == [{"i": 9}]
        await store.save_event(StoredEvent("t", 3.0, "k", None, None, {"i": 3}))
        await store.flush()
    rows = await raw.fetch("SELECT id, payload FROM events WHERE trace_id = 't' ORDER BY id")
    assert [row_id for row_id, _ in rows] == [1, 2, 3, 5]
    assert rows[1][1] == bad.strip("'")


async def test_a_corrupt_binding_is_named(raw: Raw) -> None:
    async with raw.store() as store:
        await store.save_remote_binding(
            RemoteBinding("t", None, "task", "http://a", router_session_id="s")
        )
    bad = "'oops'" if isinstance(raw, RawSQLite) else "'\"oops\"'"
    await raw.execute(f"UPDATE remote_bindings SET metadata = {bad}")
    async with raw.store() as store:
        with pytest.raises(CorruptRecordError, match="remote_bindings"):
            await store.list_bindings(router_session_id="s")


async def test_postgres_stores_opening_one_schema_at_once_migrate_it_once() -> None:
    import asyncio

    connection = await postgres_connection()
    schema = f"pf_test_{uuid.uuid4().hex}"
    stores = [PostgresStore(PG_DSN, schema=schema) for _ in range(4)]
    try:
        await asyncio.gather(*(store.start() for store in stores))
        for store in stores:
            await store.save_trace_start("t", "{}", flow_key="f")
        assert len(await stores[0].unfinished_traces("f")) == 1
    finally:
        for store in stores:
            await store.close()
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


def test_sqlite_store_needs_a_file() -> None:
    with pytest.raises(ValueError, match="MemoryStore"):
        SQLiteStore(":memory:")


def test_importing_the_package_imports_no_driver() -> None:
    code = (
        "import sys, penguiflow.stores as s\n"
        "assert 'aiosqlite' not in sys.modules and 'asyncpg' not in sys.modules\n"
        "assert s.SQLiteStore.__name__ == 'SQLiteStore' and 'aiosqlite' in sys.modules\n"
        "assert 'asyncpg' not in sys.modules\n"
        "try:\n    s.NoSuchStore\nexcept AttributeError:\n    pass\n"
        "else:\n    raise SystemExit(1)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


async def test_sqlite_commit_blocked_by_another_writer_is_retried(tmp_path: Path) -> None:
    """Interleaving: another connection holds the write lock; a commit fails (logged), the
    lock is released, the retry commits everything."""
    import asyncio
    import logging

    failed = asyncio.Event()

    class Signal(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "state_store_write_failed":
                failed.set()

    handler = Signal()
    logger = logging.getLogger("penguiflow.stores")
    logger.addHandler(handler)
    path = tmp_path / "state.db"
    store = SQLiteStore(path, busy_timeout_s=0, retry_initial_s=0.001, retry_max_s=0.01)
    try:
        await store.start()
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        for i in range(5):
            await store.save_event(StoredEvent("t", float(i), "k", None, None, {"i": i}))
        async with asyncio.timeout(10):
            await failed.wait()
        other.execute("ROLLBACK")
        other.close()
        async with asyncio.timeout(10):
            history = await store.load_history("t")
        assert [e.payload["i"] for e in history] == [0, 1, 2, 3, 4]
        assert store.write_failures >= 1
    finally:
        logger.removeHandler(handler)
        await store.close()
