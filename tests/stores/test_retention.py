"""Retention: ``prune`` removes ended traces past an age, with their events and bindings.

Run against every store (see ``conftest.backend``). Time is the stores' injected clock: traces
are started and ended at chosen instants, then the clock is moved on before pruning. Ordering
against the writer is by an ``asyncio.Event`` gate in the commit hook, never by sleeping.
"""

from __future__ import annotations

import asyncio
import math
from typing import TYPE_CHECKING

import pytest

from penguiflow.state import RemoteBinding, StoredEvent
from penguiflow.stores import DEFAULT_RETENTION_S, StoreClosedError
from stores.conftest import FakeClock, GatedCommits

if TYPE_CHECKING:
    from penguiflow.stores._base import StoreBase

    from .conftest import Backend

DAY = 24 * 3600.0
START = 1_000_000.0


def event(trace_id: str | None, i: int) -> StoredEvent:
    return StoredEvent(trace_id, float(i), "node_success", "n", "id", {"i": i})


def binding(trace_id: str, task_id: str) -> RemoteBinding:
    return RemoteBinding(
        trace_id=trace_id, context_id="ctx", task_id=task_id, agent_url="http://agent",
        router_session_id="session",
    )  # fmt: skip


async def record(store: StoreBase, trace_id: str, end: str | None, events: int = 3) -> None:
    """Start ``trace_id`` now, save its events and a binding, and end it with ``end``."""
    await store.save_trace_start(trace_id, '{"q": 1}', flow_key="flow")
    for i in range(events):
        await store.save_event(event(trace_id, i))
    await store.save_remote_binding(binding(trace_id, f"task-{trace_id}"))
    if end is not None:
        await store.save_trace_end(trace_id, end)


async def trace_ids(store: StoreBase) -> set[str]:
    return {trace.trace_id for trace in await store.list_traces(limit=1000)}


async def test_default_retention_is_seven_days() -> None:
    assert DEFAULT_RETENTION_S == 7 * DAY


async def test_prune_removes_old_ended_traces_with_their_events_and_bindings(
    backend: Backend,
) -> None:
    clock = FakeClock(START)
    store = await backend.open(clock=clock)
    for trace_id, end in (("done", "finished"), ("broke", "failed"), ("stopped", "cancelled")):
        await record(store, trace_id, end)
    await record(store, "stuck", None)  # started as long ago, never ended
    clock.now += 30 * DAY
    await record(store, "fresh", "finished")
    clock.now += 1.0

    assert await store.prune() == 3

    assert await trace_ids(store) == {"stuck", "fresh"}
    for gone in ("done", "broke", "stopped"):
        assert await store.load_history(gone) == []
    for kept in ("stuck", "fresh"):
        assert [e.payload["i"] for e in await store.load_history(kept)] == [0, 1, 2]
    bindings = await store.list_bindings(router_session_id="session")
    assert sorted(b.trace_id for b in bindings) == ["fresh", "stuck"]
    assert (await store.unfinished_traces("flow"))[0].trace_id == "stuck"

    assert await store.prune() == 0  # a second prune finds nothing left to remove
    assert await trace_ids(store) == {"stuck", "fresh"}


async def test_running_traces_are_kept_whatever_their_age(backend: Backend) -> None:
    """A trace restarted after it ended is running again, so it is kept too."""
    clock = FakeClock(START)
    store = await backend.open(clock=clock)
    await record(store, "never-ended", None)
    await record(store, "restarted", "failed")
    clock.now += DAY
    await store.save_trace_start("restarted", '{"q": 2}', flow_key="flow")
    clock.now += 10_000 * DAY

    assert await store.prune(0) == 0

    assert await trace_ids(store) == {"never-ended", "restarted"}
    assert len(await store.load_history("restarted")) == 3


async def test_age_is_measured_from_the_end_strictly(backend: Backend) -> None:
    """A trace is removed only once it ended more than ``older_than_s`` before now."""
    clock = FakeClock(START)
    store = await backend.open(clock=clock)
    await store.save_trace_start("t", "{}", flow_key="flow")
    clock.now += 100.0  # a long run: the age counts from the end, not the start
    await store.save_trace_end("t", "finished")
    clock.now += 60.0

    assert await store.prune(60.0) == 0
    clock.now += 0.5
    assert await store.prune(120.0) == 0
    assert await store.prune(60.0) == 1
    assert await trace_ids(store) == set()


async def test_events_of_no_known_trace_are_kept(backend: Backend) -> None:
    clock = FakeClock(START)
    store = await backend.open(clock=clock)
    await store.save_event(event(None, 1))  # saved without a trace id
    await store.save_event(event("unrecorded", 2))  # its trace was never started
    await record(store, "old", "finished")
    clock.now += 30 * DAY

    assert await store.prune() == 1

    assert [e.payload["i"] for e in await store.load_history("unrecorded")] == [2]
    assert await store.load_history("old") == []


async def test_prune_counts_the_writes_queued_before_it(backend: Backend) -> None:
    """Interleaving: a batch holding a trace's end is in flight (its commit held at the gate)
    when prune is called; prune waits for it, so the trace it ends is removed and counted.
    """
    clock = FakeClock(START)
    store = await backend.open(GatedCommits, clock=clock)
    store.arm()  # type: ignore[attr-defined]
    await store.save_trace_start("t", "{}", flow_key="flow")
    await store.save_trace_end("t", "cancelled")
    await store.entered.wait()  # type: ignore[attr-defined]
    clock.now += 10.0
    pruning = asyncio.create_task(store.prune(5.0))
    await asyncio.sleep(0)
    assert not pruning.done()
    store.gate.set()  # type: ignore[attr-defined]

    assert await asyncio.wait_for(pruning, 10.0) == 1
    assert await trace_ids(store) == set()


async def test_a_pruned_trace_can_start_again(backend: Backend) -> None:
    clock = FakeClock(START)
    store = await backend.open(clock=clock)
    await record(store, "t", "finished")
    clock.now += 30 * DAY
    assert await store.prune() == 1

    await store.save_trace_start("t", '{"q": 3}', flow_key="flow")
    (trace,) = await store.list_traces()
    assert (trace.status, trace.created_at, trace.input_json) == ("running", clock.now, '{"q": 3}')
    assert await store.load_history("t") == []


async def test_pruning_survives_reopening(backend: Backend) -> None:
    if not backend.durable:
        pytest.skip("a MemoryStore keeps nothing across instances")
    clock = FakeClock(START)
    store = await backend.open(clock=clock)
    await record(store, "old", "finished")
    await record(store, "live", None)
    clock.now += 30 * DAY
    assert await store.prune() == 1
    await store.close()

    reopened = await backend.open(clock=clock)
    assert await trace_ids(reopened) == {"live"}
    assert await reopened.load_history("old") == []
    assert await reopened.prune() == 0


@pytest.mark.parametrize("age", [-1.0, -DAY, math.nan, math.inf, -math.inf])
async def test_a_bad_age_is_refused(backend: Backend, age: float) -> None:
    clock = FakeClock(START)
    store = await backend.open(clock=clock)
    await record(store, "old", "finished")
    clock.now += 30 * DAY

    with pytest.raises(ValueError, match="older_than_s"):
        await store.prune(age)
    assert await trace_ids(store) == {"old"}


async def test_a_closed_store_refuses_to_prune(backend: Backend) -> None:
    store = await backend.open()
    await store.close()
    with pytest.raises(StoreClosedError):
        await store.prune()
