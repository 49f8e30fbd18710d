"""``BatchWriter`` on its own: batching, backpressure, retries, close, and a dead writer.

The commit is a recording fake; gates are ``asyncio.Event``s; the backoff ``sleep`` is a fake
that records the requested delays, so retry schedules are checked without real time passing.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from penguiflow.stores import (
    Backoff,
    BatchWriter,
    StoreBrokenError,
    StoreClosedError,
    WriteBufferFull,
)

from .test_conformance import settle

if TYPE_CHECKING:
    from collections.abc import Sequence


class Recorder:
    """A commit that records batches; optionally held on ``gate`` or failing ``fail`` times."""

    def __init__(self, *, gated: bool = False, fail: int = 0) -> None:
        self.batches: list[list[object]] = []
        self.gate = asyncio.Event()
        self.entered = asyncio.Event()
        if not gated:
            self.gate.set()
        self.fail = fail

    async def __call__(self, batch: Sequence[object]) -> None:
        self.entered.set()
        await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise OSError("disk on fire")
        self.batches.append(list(batch))

    @property
    def items(self) -> list[object]:
        return [item for batch in self.batches for item in batch]


class FakeSleep:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


def test_backoff_doubles_up_to_its_cap() -> None:
    backoff = Backoff(0.5, 3.0)
    assert [backoff.delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert backoff.delay(10_000) == 3.0
    with pytest.raises(ValueError, match="initial_s <= max_s"):
        Backoff(2.0, 1.0)
    with pytest.raises(ValueError, match="initial_s <= max_s"):
        Backoff(-1.0, 1.0)


def test_sizes_are_checked() -> None:
    async def commit(batch: Sequence[object]) -> None:
        return None

    with pytest.raises(ValueError, match="batch_size <= buffer_size"):
        BatchWriter(commit, name="w", batch_size=10, buffer_size=5)
    with pytest.raises(ValueError, match="batch_size <= buffer_size"):
        BatchWriter(commit, name="w", batch_size=0)


async def test_group_commit_takes_what_is_there_up_to_batch_size() -> None:
    commit = Recorder()
    writer = BatchWriter(commit, name="w", batch_size=4, buffer_size=16)
    for i in range(10):
        writer.put_nowait(i)  # the writer task has not run yet: all ten wait together
    await writer.flush()
    assert commit.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert writer.statistics().committed == 10
    await writer.close()


async def test_flush_waits_only_for_what_was_accepted_before_it() -> None:
    commit = Recorder(gated=True)
    writer = BatchWriter(commit, name="w", batch_size=1, buffer_size=8)
    await writer.flush()  # nothing accepted: returns at once
    await writer.put("a")
    flushing = asyncio.create_task(writer.flush())
    await writer.put("b")
    await commit.entered.wait()
    assert not flushing.done()
    commit.gate.set()
    await flushing
    assert commit.items[0] == "a"
    await writer.close()
    assert commit.items == ["a", "b"]


async def test_put_nowait_refuses_when_full_or_savers_wait() -> None:
    """Interleaving: "a" held in commit, "b" fills the buffer; a waiting saver keeps FIFO."""
    commit = Recorder(gated=True)
    writer = BatchWriter(commit, name="w", batch_size=1, buffer_size=2)
    writer.put_nowait("a")
    await commit.entered.wait()
    writer.put_nowait("b")
    with pytest.raises(WriteBufferFull, match="full"):
        writer.put_nowait("c")
    waiting = asyncio.create_task(writer.put("c"))
    await settle(lambda: writer.statistics().waiting_savers == 1)
    commit.gate.set()
    await waiting
    await writer.flush()
    assert commit.items == ["a", "b", "c"]
    await writer.close()


async def test_cancelled_blocked_put_withdraws_its_item() -> None:
    commit = Recorder(gated=True)
    writer = BatchWriter(commit, name="w", batch_size=1, buffer_size=1)
    await writer.put("kept")
    await commit.entered.wait()
    blocked = asyncio.create_task(writer.put("withdrawn"))
    after = asyncio.create_task(writer.put("after"))
    await settle(lambda: writer.statistics().waiting_savers == 2)
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert writer.statistics().waiting_savers == 1
    commit.gate.set()
    await after
    await writer.close()
    assert commit.items == ["kept", "after"]


async def test_failed_commits_back_off_then_succeed(caplog: pytest.LogCaptureFixture) -> None:
    commit = Recorder(fail=4)
    sleep = FakeSleep()
    writer = BatchWriter(commit, name="w", backoff=Backoff(0.05, 0.3), sleep=sleep)
    await writer.put("x")
    await writer.flush()
    assert commit.items == ["x"]
    assert sleep.delays == [0.05, 0.1, 0.2, 0.3]
    assert writer.failures == 4
    failed = [r for r in caplog.records if r.getMessage() == "state_store_write_failed"]
    assert [r.attempt for r in failed] == [1, 2, 3, 4]  # type: ignore[attr-defined]
    assert {r.name for r in failed} == {"penguiflow.stores"}
    assert all(r.exc_info is not None for r in failed)
    await writer.close()


async def test_cancelled_close_abandons_and_says_so(caplog: pytest.LogCaptureFixture) -> None:
    """Interleaving: commit held; a saver and a flusher wait; close is cancelled mid-drain."""
    commit = Recorder(gated=True)
    writer = BatchWriter(commit, name="w", batch_size=1, buffer_size=2)
    for item in ("a", "b"):
        await writer.put(item)
    await commit.entered.wait()
    saver = asyncio.create_task(writer.put("c"))
    flusher = asyncio.create_task(writer.flush())
    closing = asyncio.create_task(writer.close())
    await settle(lambda: writer.statistics().waiting_savers == 1)
    with pytest.raises(StoreClosedError):
        await writer.put("refused")
    closing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await closing
    with pytest.raises(StoreClosedError):
        await saver
    with pytest.raises(StoreClosedError):
        await flusher
    (record,) = [r for r in caplog.records if r.getMessage() == "state_store_writes_abandoned"]
    assert record.count == 3  # type: ignore[attr-defined]
    await writer.close()


async def test_a_writer_that_dies_wakes_everyone(caplog: pytest.LogCaptureFixture) -> None:
    commit = Recorder(gated=True)
    writer = BatchWriter(commit, name="w", batch_size=1, buffer_size=1)
    await writer.put("a")
    await commit.entered.wait()
    saver = asyncio.create_task(writer.put("b"))
    flusher = asyncio.create_task(writer.flush())
    await settle(lambda: writer.statistics().waiting_savers == 1)
    writer._task.cancel()  # type: ignore[union-attr]  # not through close(): a stray cancel
    with pytest.raises(StoreBrokenError, match="stopped unexpectedly"):
        await saver
    with pytest.raises(StoreBrokenError):
        await flusher
    with pytest.raises(StoreBrokenError):
        await writer.put("c")
    with pytest.raises(StoreBrokenError):
        await writer.flush()
    (record,) = [r for r in caplog.records if r.getMessage() == "state_store_writer_stopped"]
    assert record.levelno == logging.ERROR
    await writer.close()


async def test_closed_writer_refuses_start_and_put() -> None:
    commit = Recorder()
    writer = BatchWriter(commit, name="w")
    await writer.close()  # never started: nothing to drain
    with pytest.raises(StoreClosedError, match="w is closed"):
        writer.start()
    with pytest.raises(StoreClosedError):
        writer.put_nowait(1)


@settings(max_examples=40, deadline=None)
@given(
    capacity=st.integers(1, 6),
    batch=st.integers(1, 6),
    producers=st.lists(st.integers(0, 12), min_size=1, max_size=5),
    yields=st.lists(st.integers(0, 3), min_size=1, max_size=8),
)
async def test_no_loss_order_kept_capacity_never_exceeded(
    capacity: int, batch: int, producers: list[int], yields: list[int]
) -> None:
    batch = min(batch, capacity)
    seen: list[tuple[int, int]] = []
    peaks: list[int] = []
    turn = 0

    async def commit(items: Sequence[object]) -> None:
        nonlocal turn
        peaks.append(writer.statistics().buffered)
        for _ in range(yields[turn % len(yields)]):
            await asyncio.sleep(0)
        turn += 1
        seen.extend(items)  # type: ignore[arg-type]

    writer: BatchWriter[tuple[int, int]] = BatchWriter(
        commit, name="w", batch_size=batch, buffer_size=capacity
    )

    async def produce(who: int, count: int) -> None:
        for i in range(count):
            await writer.put((who, i))

    async with asyncio.timeout(10), asyncio.TaskGroup() as group:
        for who, count in enumerate(producers):
            group.create_task(produce(who, count))
    await writer.close()
    for who, count in enumerate(producers):
        assert [i for w, i in seen if w == who] == list(range(count))
    assert len(seen) == sum(producers)
    assert all(peak <= capacity for peak in peaks)
