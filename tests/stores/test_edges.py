"""Failures a user can cause at a store's open: each is provoked for real and must be named.

A flow given a store nobody opened; a PostgreSQL server that accepts and never answers (a
TCP server in the test); a SQLite path in a missing directory or naming a directory; a 0-byte
file, a file of random bytes and a file whose last pages were zeroed.
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import TYPE_CHECKING

import pytest

from penguiflow import Headers, Message, Node, NodePolicy, create
from penguiflow.state import StoredEvent
from penguiflow.stores import IncompatibleStoreError, MemoryStore

from .conftest import postgres_connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from penguiflow.stores._base import StoreBase

TIMEOUT = 10.0


def event(trace_id: str, i: int) -> StoredEvent:
    payload = {"event": "node_success", "trace_id": trace_id, "i": i, "pad": "x" * 100}
    return StoredEvent(trace_id, 1000.0 + i, "node_success", "n", "id", payload)


async def echo(message: Message, ctx: object) -> Message:
    return message


def sqlite_store(path: Path | str) -> StoreBase:
    from penguiflow.stores.sqlite import SQLiteStore

    return SQLiteStore(path)


# ------------------------------------------------------------- a flow on a store never opened


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_run_refuses_a_store_that_was_never_opened(kind: str, tmp_path: Path) -> None:
    """run() names the store; nothing was queued, and the file was not even created."""
    path = tmp_path / "state.db"
    store = MemoryStore() if kind == "memory" else sqlite_store(path)
    flow = create(Node(echo, name="a", policy=NodePolicy(validate="none")).to(), state_store=store)
    with pytest.raises(RuntimeError, match="is not open") as raised:
        flow.run()
    assert store.describe() in str(raised.value)
    assert not path.exists()
    with pytest.raises(RuntimeError, match="not running"):
        await flow.emit(Message(payload=1, headers=Headers(tenant="t")))


async def test_run_refuses_a_store_that_cannot_open_before_anything_is_queued(
    tmp_path: Path,
) -> None:
    """run() refuses before any emit; the open error then surfaces at start(), not at emit."""
    store = sqlite_store(tmp_path / "missing" / "state.db")
    flow = create(Node(echo, name="a", policy=NodePolicy(validate="none")).to(), state_store=store)
    with pytest.raises(RuntimeError, match="is not open"):
        flow.run()
    with pytest.raises(FileNotFoundError):
        await store.start()


async def test_run_refuses_a_closed_store_and_accepts_an_open_one(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path / "state.db")
    flow = create(Node(echo, name="a", policy=NodePolicy(validate="none")).to(), state_store=store)
    async with store:
        assert store.opened
        flow.run()
        try:
            async with asyncio.timeout(TIMEOUT):
                await flow.emit(Message(payload=1, headers=Headers(tenant="t")))
                assert (await flow.fetch()).payload == 1
        finally:
            await flow.stop()
    assert not store.opened
    with pytest.raises(RuntimeError, match="is not open"):
        flow.run()


# --------------------------------------------------- a PostgreSQL server that never answers


@pytest.fixture
async def silent_server() -> AsyncIterator[tuple[int, asyncio.Event]]:
    """A TCP server on loopback that accepts connections and never sends a byte."""
    accepted = asyncio.Event()
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        accepted.set()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, accepted
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_postgres_that_never_answers_names_the_server_and_the_timeout(
    silent_server: tuple[int, asyncio.Event],
) -> None:
    pytest.importorskip("asyncpg")
    from penguiflow.stores.postgres import PostgresStore

    port, accepted = silent_server
    dsn = f"postgresql://alice:s3cret-pw@127.0.0.1:{port}/test?password=other-pw"
    store = PostgresStore(dsn, connect_timeout_s=0.2)
    async with asyncio.timeout(TIMEOUT):
        with pytest.raises(TimeoutError) as raised:
            await store.start()
    message = str(raised.value)
    assert accepted.is_set()
    assert f"127.0.0.1:{port}" in message
    assert "connect_timeout_s=0.2" in message
    assert "s3cret-pw" not in message and "other-pw" not in message
    assert "s3cret-pw" not in repr(raised.value.__cause__)
    await store.close()


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        ("postgresql://u:pw@h:5/d", "postgresql://u:***@h:5/d"),
        (
            "postgresql://u@h/d?sslmode=off&password=pw",
            "postgresql://u@h/d?sslmode=off&password=***",
        ),
        ("host=h port=5 password=pw user=u", "host=h port=5 password=*** user=u"),
        ("host=h password = 'p w\\' x' user=u", "host=h password = *** user=u"),
    ],
)
def test_dsn_passwords_are_redacted(dsn: str, shown: str) -> None:
    pytest.importorskip("asyncpg")
    from penguiflow.stores.postgres import _redact_dsn

    assert _redact_dsn(dsn) == shown


async def test_postgres_store_still_opens_with_a_short_connect_timeout() -> None:
    """The reachable server still works with the timeout option given."""
    from penguiflow.stores.postgres import PostgresStore

    from .conftest import PG_DSN

    connection = await postgres_connection()
    schema = "pf_test_edges_timeout"
    try:
        async with PostgresStore(PG_DSN, schema=schema, connect_timeout_s=5.0) as store:
            await store.save_event(event("t", 0))
            assert [e.trace_id for e in await store.load_history("t")] == ["t"]
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


# ------------------------------------------------------------------------ bad SQLite paths


async def test_sqlite_in_a_missing_directory_names_the_path(tmp_path: Path) -> None:
    path = tmp_path / "no" / "such" / "dir" / "state.db"
    store = sqlite_store(path)
    with pytest.raises(FileNotFoundError) as raised:
        await store.start()
    assert str(path) in str(raised.value)
    assert not (tmp_path / "no").exists()
    await store.close()


async def test_sqlite_on_a_directory_names_the_path(tmp_path: Path) -> None:
    store = sqlite_store(tmp_path)
    with pytest.raises(IsADirectoryError) as raised:
        await store.start()
    assert str(tmp_path) in str(raised.value)
    assert os.listdir(tmp_path) == []
    await store.close()


# ------------------------------------------------------------------ empty and damaged files


async def test_a_zero_byte_file_is_a_new_store_that_keeps_working(tmp_path: Path) -> None:
    """SQLite reads an empty file as an empty database: the store makes its schema there."""
    path = tmp_path / "state.db"
    path.touch()
    async with sqlite_store(path) as store:
        await store.save_event(event("t", 0))
    async with sqlite_store(path) as store:
        await store.save_event(event("t", 1))
        assert [e.payload["i"] for e in await store.load_history("t")] == [0, 1]


async def test_a_file_of_random_bytes_is_refused_at_open(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    garbage = random.Random(7).randbytes(64 * 1024)
    path.write_bytes(garbage)
    store = sqlite_store(path)
    with pytest.raises(IncompatibleStoreError, match="not a SQLite database") as raised:
        await store.start()
    assert str(path) in str(raised.value)
    assert path.read_bytes() == garbage
    await store.close()


async def test_a_file_with_a_sqlite_header_and_random_pages_is_refused_at_open(
    tmp_path: Path,
) -> None:
    """Page 1 of a real store, then random pages: the schema reads, the tables do not."""
    path = await filled_store(tmp_path, events=2000)
    data = bytearray(path.read_bytes())
    data[4096:] = random.Random(7).randbytes(len(data) - 4096)
    path.write_bytes(data)
    await expect_damaged(path, bytes(data))


async def test_a_file_whose_last_pages_were_zeroed_is_refused_at_open(tmp_path: Path) -> None:
    """Without the check this file opens, and every commit that reaches those pages fails."""
    path = await filled_store(tmp_path, events=2000)
    data = bytearray(path.read_bytes())
    data[-8 * 4096 :] = bytes(8 * 4096)
    path.write_bytes(data)
    await expect_damaged(path, bytes(data))


async def filled_store(tmp_path: Path, *, events: int) -> Path:
    """A closed store holding ``events`` events, all checkpointed into the main file."""
    path = tmp_path / "state.db"
    async with sqlite_store(path) as store:
        for i in range(events):
            await store.save_event(event(f"t{i % 50}", i))
    assert not (tmp_path / "state.db-wal").exists()
    return path


async def expect_damaged(path: Path, data: bytes) -> None:
    store = sqlite_store(path)
    with pytest.raises(IncompatibleStoreError, match="damaged") as raised:
        await store.start()
    assert str(path) in str(raised.value)
    assert not store.opened
    assert path.read_bytes() == data
    await store.close()
