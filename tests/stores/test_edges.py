"""Failures a user can cause at a store's open: each is provoked for real and must be named.

A flow given a store nobody opened; a PostgreSQL server that accepts and never answers (a
TCP server in the test); a SQLite path in a missing directory or naming a directory; a 0-byte
file, a file of random bytes and a file whose last pages were zeroed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from penguiflow import Headers, Message, Node, NodePolicy, create
from penguiflow.state import StoredEvent
from penguiflow.stores import MemoryStore

if TYPE_CHECKING:
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
