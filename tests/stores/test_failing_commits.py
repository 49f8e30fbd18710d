"""A store whose commits keep failing: health says so, new traces are refused, and
``stop()``, ``flush()`` and ``close()`` return within their bounds, saying what was lost.

The failure is a fake at the commit boundary: a ``SQLiteStore`` subclass whose
``_commit_batch`` raises a real ``sqlite3.OperationalError("database or disk is full")``
while ``full`` is set, and otherwise commits to the real file. (Running as root, a read-only
file or a removed directory does not make a WAL-mode SQLite commit fail, so the disk-full
error is injected there.) Tests run under ``looptime``: the 30 s, 5 s and 10 s bounds pass in
virtual time, and the simulated time is asserted.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from typing import TYPE_CHECKING, Any

import pytest
from core.helpers import echo, fetch, make_msg, node

from penguiflow.core import PenguiFlow
from penguiflow.state import StoredEvent
from penguiflow.stores import (
    FlushTimeoutError,
    MemoryStore,
    StoreFailingError,
    WritesAbandonedError,
)
from penguiflow.stores._writer import STALLED_AFTER_S
from penguiflow.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from penguiflow.stores._types import WriteOp


class FullDisk(SQLiteStore):
    """A SQLite store whose commits fail as on a full disk while ``full`` is set."""

    full = False

    async def _commit_batch(self, batch: Sequence[WriteOp]) -> None:
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        await super()._commit_batch(batch)


class FullMemory(MemoryStore):
    """The same failure on a ``MemoryStore``: for the tests whose healthy commits must not
    wait on aiosqlite's thread (while the loop waits for a thread, looptime jumps virtual
    time to the next timer: a 10 s close bound, or the 2 s a commit may go unanswered)."""

    full = False

    async def _commit_batch(self, batch: Sequence[WriteOp]) -> None:
        if self.full:
            raise sqlite3.OperationalError("database or disk is full")
        await super()._commit_batch(batch)


def event(trace_id: str, i: int) -> StoredEvent:
    return StoredEvent(trace_id, 1000.0 + i, "node_success", "n", "id", {"i": i})


async def until(condition: Callable[[], bool], *, step_s: float = 0.5) -> None:
    """Let virtual time pass in ``step_s`` steps until ``condition`` holds."""
    while not condition():
        await asyncio.sleep(step_s)


def assert_no_new_threads(before: set[threading.Thread]) -> None:
    """No thread started since ``before`` is still alive (aiosqlite's ends just after close)."""
    for thread in set(threading.enumerate()) - before:
        thread.join(timeout=2.0)
        assert not thread.is_alive(), f"thread left running: {thread!r}"


def status_of(store: MemoryStore | SQLiteStore) -> str:
    """Read ``status`` afresh (mypy would otherwise keep it narrowed across awaits)."""
    return store.status


def records(caplog: pytest.LogCaptureFixture, name: str) -> list[Any]:
    return [r for r in caplog.records if r.getMessage() == name]


@pytest.mark.looptime
async def test_status_goes_degraded_then_failing_then_ok(tmp_path: Path) -> None:
    store = FullMemory()
    await store.start()
    loop = asyncio.get_running_loop()
    try:
        assert status_of(store) == "ok"
        store.full = True
        start = loop.time()
        await store.save_event(event("t", 1))
        await until(lambda: store.write_failures >= 1, step_s=0.01)
        assert status_of(store) == "degraded"
        assert isinstance(store.last_error, sqlite3.OperationalError)
        await until(lambda: store.status == "failing")
        assert 30.0 <= loop.time() - start <= 31.0  # the documented default bound
        store.full = False
        await until(lambda: store.status == "ok")
        assert store.last_error is None
        assert [e.payload["i"] for e in await store.load_history("t")] == [1]
    finally:
        await store.close()


@pytest.mark.looptime
async def test_flow_health_and_emit_follow_the_store() -> None:
    """Interleaving: while commits fail (degraded) an emit waits for its start to be durable;
    after 30 s of failures the flow is failing, that emit raises (its trace cancelled) and a
    new trace is refused; after a commit succeeds the flow is ok and accepts traces again."""
    store = FullMemory(failing_after_s=30.0)
    await store.start()
    flow = PenguiFlow(node(echo, "a").to(), state_store=store)
    flow.run()
    try:
        assert flow.health().status == "ok"
        assert flow.health().store == store.describe()
        store.full = True
        emitting = asyncio.create_task(flow.emit(make_msg("one", trace_id="t1")))
        await until(lambda: store.status == "degraded", step_s=0.01)
        assert not emitting.done()  # its start is not committed yet
        health = flow.health()
        assert health.status == "degraded" and health.store_status == "degraded"
        assert health.store is not None and "database or disk is full" in health.store
        assert store.describe() in health.store
        await until(lambda: store.status == "failing")
        assert flow.health().status == "failing"
        with pytest.raises(StoreFailingError, match="is failing") as failed:
            await emitting
        assert store.describe() in str(failed.value)
        assert "database or disk is full" in str(failed.value)
        with pytest.raises(RuntimeError, match="is failing") as refused:
            await flow.emit(make_msg("two", trace_id="t2"))
        assert store.describe() in str(refused.value)
        with pytest.raises(RuntimeError, match="is failing"):
            await flow.emit(make_msg("two", trace_id="t2"), trace_id="t2")
        with pytest.raises(RuntimeError, match="is failing"):
            flow.emit_nowait(make_msg("two", trace_id="t2"))
        # t1 was cancelled when it could not be made durable; nothing of t2 was sent.
        assert flow.health().traces_in_flight == 0
        store.full = False
        await until(lambda: store.status == "ok")
        assert flow.health().status == "ok" and flow.health().store == store.describe()
        await flow.emit(make_msg("three", trace_id="t3"))
        assert (await fetch(flow)).payload == "three"
    finally:
        await flow.stop()
    traces = {t.trace_id: t.status for t in await store.list_traces()}
    assert traces == {"t1": "cancelled", "t3": "finished"}
    await store.close()


@pytest.mark.looptime
async def test_stop_and_close_are_bounded_and_count_the_lost_writes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    threads = set(threading.enumerate())
    # "queued": emit and fetch return while nothing commits (with "commit" they would wait).
    store = FullDisk(tmp_path / "s.db", durability="queued")
    await store.start()
    flow = PenguiFlow(node(echo, "a").to(), state_store=store)
    flow.run()
    loop = asyncio.get_running_loop()
    store.full = True
    await flow.emit(make_msg("one", trace_id="t1"))
    await fetch(flow)
    start = loop.time()
    await flow.stop()
    assert loop.time() - start == pytest.approx(5.0, abs=0.1)
    (timed_out,) = records(caplog, "state_store_flush_timed_out")
    pending = store.pending_writes
    assert pending > 0 and timed_out.count == pending
    assert timed_out.store == f"{store.describe()}: {store.last_error!r}"
    start = loop.time()
    with pytest.raises(WritesAbandonedError) as lost:
        await store.close()
    assert loop.time() - start == pytest.approx(10.0, abs=0.1)
    assert lost.value.count == pending and lost.value.timeout_s == 10.0
    assert isinstance(lost.value.__cause__, sqlite3.OperationalError)
    (abandoned,) = records(caplog, "state_store_writes_abandoned")
    assert abandoned.count == pending
    assert abandoned.levelno == logging.ERROR
    await store.close()  # idempotent, quiet
    assert_no_new_threads(threads)  # the aiosqlite thread is gone
    assert not store.opened


@pytest.mark.looptime
async def test_a_bounded_flush_keeps_the_writes_for_a_recovery(tmp_path: Path) -> None:
    store = FullMemory()
    await store.start()
    try:
        store.full = True
        await store.save_event(event("t", 1))
        with pytest.raises(FlushTimeoutError) as late:
            await store.flush(timeout_s=2.0)
        assert late.value.pending == 1 and late.value.timeout_s == 2.0
        store.full = False
        await store.flush()
        assert [e.payload["i"] for e in await store.load_history("t")] == [1]
    finally:
        await store.close()


@pytest.mark.looptime
async def test_close_without_timeout_waits_and_a_cancel_still_releases(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    threads = set(threading.enumerate())
    store = FullDisk(tmp_path / "s.db")
    await store.start()
    store.full = True
    await store.save_event(event("t", 1))
    closing = asyncio.create_task(store.close(timeout_s=None))
    done, _ = await asyncio.wait([closing], timeout=120.0)
    assert not done  # unbounded: still retrying after 120 s
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    (abandoned,) = records(caplog, "state_store_writes_abandoned")
    assert abandoned.count == 1
    assert_no_new_threads(threads)


@pytest.mark.looptime
async def test_a_read_waits_for_failing_commits_only_until_the_store_is_failing(
    tmp_path: Path,
) -> None:
    """Read-your-writes is bounded: a read gives up after failing_after_s, and at once while
    the store is failing, instead of hanging as long as commits fail (flow.recover() too)."""
    store = FullMemory()
    await store.start()
    loop = asyncio.get_running_loop()
    try:
        store.full = True
        await store.save_event(event("t", 1))
        start = loop.time()
        with pytest.raises(FlushTimeoutError) as late:
            await store.load_history("t")
        assert loop.time() - start == pytest.approx(30.0, abs=0.1)  # failing_after_s
        assert late.value.pending == 1
        assert isinstance(late.value.__cause__, sqlite3.OperationalError)
        await until(lambda: store.status == "failing")
        start = loop.time()
        with pytest.raises(FlushTimeoutError):
            await store.list_traces()
        assert loop.time() - start == 0.0
        store.full = False
        await until(lambda: store.status == "ok")
        assert [e.payload["i"] for e in await store.load_history("t")] == [1]
    finally:
        await store.close()


class StuckMemory(MemoryStore):
    """A store whose commits hang (a server that accepts and never answers) once ``stuck``."""

    stuck: asyncio.Event | None = None

    async def _commit_batch(self, batch: Sequence[WriteOp]) -> None:
        if self.stuck is not None:
            await self.stuck.wait()
        await super()._commit_batch(batch)


@pytest.mark.looptime
async def test_a_commit_with_no_answer_shows_as_degraded_then_failing() -> None:
    """No error ever comes back: the status still leaves ok after STALLED_AFTER_S, counted
    from when the commit began, and is failing after failing_after_s."""
    store = StuckMemory(failing_after_s=10.0)
    await store.start()
    loop = asyncio.get_running_loop()
    try:
        store.stuck = asyncio.Event()
        start = loop.time()
        await store.save_event(event("t", 1))
        await until(lambda: store.status != "ok", step_s=0.1)
        assert loop.time() - start == pytest.approx(STALLED_AFTER_S, abs=0.15)
        assert store.status == "degraded"
        assert isinstance(store.last_error, TimeoutError)
        assert "no answer" in str(store.last_error)
        await until(lambda: store.status == "failing", step_s=0.1)
        assert loop.time() - start == pytest.approx(10.0, abs=0.15)
        store.stuck.set()
        await until(lambda: store.status == "ok", step_s=0.1)
        assert store.last_error is None
    finally:
        store.stuck = None
        await store.close()
