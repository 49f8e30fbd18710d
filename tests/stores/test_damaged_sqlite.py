"""A ``SQLiteStore`` file whose last two pages are zeroed, as a failing disk or a careless
copy would leave it: while the store is closed, and while it is open under a running flow.

Closed, opening refuses the file. Open, the writer's connection works from its page cache
until something makes it read the file again; here another connection writes to the file,
as another process sharing it would, and the writer's next commits read the zeroed pages and
fail. Either way nothing hangs: ``recover()``, reads, ``stop()`` and ``close()`` return within
their bounds, and the failure shows in ``flow.health()``.
"""

from __future__ import annotations

import os
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest
from core.helpers import echo, make_msg, node, within

from penguiflow.core import PenguiFlow
from penguiflow.state import StoredEvent
from penguiflow.stores import FlushTimeoutError, IncompatibleStoreError, WritesAbandonedError
from penguiflow.stores.sqlite import SQLiteStore

from .faults import Stopwatch, eventually

if TYPE_CHECKING:
    from pathlib import Path

FAILING_AFTER_S = 0.5
MALFORMED = "database disk image is malformed"


async def filled_store(path: Path) -> None:
    """A closed store of 2000 events over 50 traces, all checkpointed into the main file."""
    async with SQLiteStore(path) as store:
        for i in range(2000):
            await store.save_event(StoredEvent(f"t{i % 50}", 1.0, "k", "n", "id", {"i": i}))
    assert not path.with_name(path.name + "-wal").exists()


def zero_last_pages(path: Path, count: int) -> None:
    with sqlite3.connect(path) as probe:
        (page_size,) = probe.execute("PRAGMA page_size").fetchone()
    probe.close()
    size = path.stat().st_size
    with open(path, "r+b") as file:
        file.seek(size - count * page_size)
        file.write(bytes(count * page_size))
        file.flush()
        os.fsync(file.fileno())


def write_from_another_connection(path: Path) -> None:
    """Commit a change to page 1 only: the store's connections must then re-read the file."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("PRAGMA user_version = 7")
    finally:
        other.close()


async def test_a_file_whose_last_two_pages_were_zeroed_while_closed_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    await filled_store(path)
    zero_last_pages(path, 2)
    damaged = path.read_bytes()
    store = SQLiteStore(path)
    with pytest.raises(IncompatibleStoreError, match="damaged") as raised:
        await within(store.start(), 5.0)
    assert str(path) in str(raised.value)
    assert path.read_bytes() == damaged  # left as it was
    await store.close()


async def test_pages_zeroed_under_an_open_store_fail_its_commits_and_nothing_hangs(
    tmp_path: Path, record_property: Any
) -> None:
    path = tmp_path / "state.db"
    await filled_store(path)
    # "queued": the trace goes through while nothing commits (with "commit", emit and fetch
    # would wait for the commits, as test_durability checks).
    store = SQLiteStore(path, failing_after_s=FAILING_AFTER_S, retry_max_s=0.1, durability="queued")
    await store.start()
    flow = PenguiFlow(node(echo, "a").to(), state_store=store)
    flow.run()
    try:
        zero_last_pages(path, 2)
        write_from_another_connection(path)
        clock = Stopwatch()
        await flow.emit(make_msg("x", trace_id="first"))
        await within(flow.fetch(), 5.0)
        await eventually(lambda: store.status != "ok", within_s=5.0, what="degraded")
        record_property("degraded_s", clock())
        health = flow.health()
        assert health.store_status == "degraded"
        assert health.store == f"{store.describe()}: {store.last_error!r}"
        assert isinstance(store.last_error, sqlite3.DatabaseError)
        assert MALFORMED in str(store.last_error)
        # A read waits for the writes queued before it, but only while the store is degraded.
        clock = Stopwatch()
        with pytest.raises(FlushTimeoutError):
            await within(store.load_history("first"), 5.0)
        assert clock() < FAILING_AFTER_S + 0.5
        await eventually(lambda: flow.health().status == "failing", within_s=5.0, what="failing")
        with pytest.raises(RuntimeError, match="is failing"):
            await flow.emit(make_msg("y", trace_id="refused"))
        clock = Stopwatch()
        with pytest.raises(FlushTimeoutError) as late:  # failing: no wait at all
            await within(flow.recover(), 5.0)
        assert clock() < 0.5
        assert late.value.pending == store.pending_writes > 0
    finally:
        clock = Stopwatch()
        await within(flow.stop(), 10.0)
        assert clock() < 5.5  # stop() gives the store 5 s to flush
        clock = Stopwatch()
        with pytest.raises(WritesAbandonedError):
            await within(store.close(timeout_s=1.0), 5.0)
        assert clock() < 1.5
    reopened = SQLiteStore(path)
    with pytest.raises(IncompatibleStoreError, match="damaged"):
        await within(reopened.start(), 5.0)
    await reopened.close()


async def test_pages_zeroed_under_an_open_store_whose_writer_keeps_its_cache(
    tmp_path: Path,
) -> None:
    """Nobody else writes: the writer's commits go on from its cache (health stays ok), the
    reads that reach the zeroed pages fail at once with SQLite's error, and the next open
    refuses the file."""
    path = tmp_path / "state.db"
    await filled_store(path)
    store = SQLiteStore(path, failing_after_s=FAILING_AFTER_S)
    await store.start()
    flow = PenguiFlow(node(echo, "a").to(), state_store=store)
    flow.run()
    try:
        zero_last_pages(path, 2)
        await flow.emit(make_msg("x", trace_id="after"))
        await within(flow.fetch(), 5.0)
        await store.flush(timeout_s=5.0)
        assert flow.health().status == "ok"
        failed = []
        for i in range(50):
            try:
                await within(store.load_history(f"t{i}"), 5.0)
            except sqlite3.DatabaseError as error:
                failed.append(str(error))
        assert failed and set(failed) == {MALFORMED}
        assert await within(flow.recover(), 5.0) == 0  # the trace table is intact
    finally:
        await within(flow.stop(), 10.0)
        await within(store.close(timeout_s=1.0), 5.0)
    reopened = SQLiteStore(path)
    with pytest.raises(IncompatibleStoreError, match="damaged"):
        await within(reopened.start(), 5.0)
    await reopened.close()
