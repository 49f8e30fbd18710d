"""The SQL stores fold each batch (``_fold``); they must end where one-by-one writes end.

``MemoryStore`` applies writes one by one, so it is the reference: hypothesis draws write
sequences over a few keys, the same sequence goes to a memory store and to a SQL store (one
held batch, so most writes fold together), and every read must agree.
"""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from typing import TYPE_CHECKING, Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from penguiflow.state import RemoteBinding, StoredEvent
from penguiflow.stores import MemoryStore, sqlite
from penguiflow.stores._fold import fold
from penguiflow.stores._types import BindingSave, BindingTerminal, TraceEnd, TraceStart
from penguiflow.stores.postgres import PostgresStore
from penguiflow.stores.sqlite import SQLiteStore

from .conftest import PG_DSN, postgres_connection
from .test_conformance import FakeClock, GatedCommits

if TYPE_CHECKING:
    from pathlib import Path

    from penguiflow.stores._base import StoreBase
    from penguiflow.stores._types import StoredTrace

TRACES = ("t0", "t1", "t2")
KEYS = (("t0", None, "a"), ("t0", "c", "a"), ("t1", None, "b"))

writes = st.lists(
    st.one_of(
        st.tuples(st.just("event"), st.sampled_from(TRACES)),
        st.tuples(st.just("start"), st.sampled_from(TRACES), st.sampled_from(["f", "g"])),
        st.tuples(st.just("end"), st.sampled_from(TRACES), st.sampled_from(["finished", "failed"])),
        st.tuples(
            st.just("save"),
            st.sampled_from(KEYS),
            st.sampled_from(["s1", "s2"]),
            st.booleans(),
            st.integers(0, 3),
        ),
        st.tuples(st.just("terminal"), st.sampled_from(KEYS)),
    ),
    max_size=30,
)


async def apply(store: StoreBase, clock: FakeClock, sequence: list[tuple[Any, ...]]) -> None:
    for n, (kind, *args) in enumerate(sequence):
        clock.now = 1000.0 + n
        if kind == "event":
            await store.save_event(StoredEvent(args[0], clock.now, "k", None, None, {"n": n}))
        elif kind == "start":
            await store.save_trace_start(args[0], f'{{"n": {n}}}', flow_key=args[1])
        elif kind == "end":
            await store.save_trace_end(args[0], args[1])
        elif kind == "save":
            (trace_id, context_id, task_id), session, terminal, meta = args
            binding = RemoteBinding(
                trace_id, context_id, task_id, "http://a", session, is_terminal=terminal
            )
            binding.metadata = {"m": meta}
            await store.save_remote_binding(binding)
        else:
            trace_id, context_id, task_id = args[0]
            await store.mark_binding_terminal(
                trace_id=trace_id, context_id=context_id, task_id=task_id
            )


def own(store: StoreBase, traces: list[StoredTrace]) -> list[StoredTrace]:
    """The traces with the store's own lease named "own", so that two stores compare equal."""
    return [
        dataclasses.replace(trace, lease_id="own")
        if trace.lease_id == store.lease.lease_id
        else trace
        for trace in traces
    ]


async def reads(store: StoreBase) -> dict[str, Any]:
    return {
        "traces": own(store, await store.list_traces(limit=100)),
        "unfinished": [own(store, await store.unfinished_traces(key)) for key in ("f", "g")],
        "histories": [await store.load_history(t) for t in TRACES],
        "bindings": [await store.list_bindings(router_session_id=s) for s in ("s1", "s2")],
        "found": [
            await store.find_binding(router_session_id=s, agent_url="http://a", remote_skill=None)
            for s in ("s1", "s2")
        ],
    }


async def outcome(store: StoreBase, sequence: list[tuple[Any, ...]]) -> dict[str, Any]:
    """Apply ``sequence`` as one held batch (after the first write), then read everything."""
    clock = FakeClock()
    store._clock = clock
    store.arm()  # type: ignore[attr-defined]
    try:
        await store.start()
        await apply(store, clock, sequence)
        store.gate.set()  # type: ignore[attr-defined]
        return await reads(store)
    finally:
        await store.close()


class GatedMemory(GatedCommits, MemoryStore):
    pass


class GatedSQLite(GatedCommits, SQLiteStore):
    pass


class GatedPostgres(GatedCommits, PostgresStore):
    pass


@pytest.mark.parametrize("kind", ["sqlite", "sqlite-3-rows", "postgres"])
@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sequence=writes)
async def test_folded_batches_end_like_writes_one_by_one(
    kind: str, tmp_path: Path, sequence: list[tuple[Any, ...]]
) -> None:
    expected = await outcome(GatedMemory(), sequence)
    if kind == "sqlite":
        got = await outcome(GatedSQLite(tmp_path / f"{uuid.uuid4().hex}.db"), sequence)
    elif kind == "sqlite-3-rows":
        # Statements of 3 event rows at most: most batches send their first events as JSON.
        with mock.patch.object(sqlite, "_most_event_rows", lambda: 3):
            got = await outcome(GatedSQLite(tmp_path / f"{uuid.uuid4().hex}.db"), sequence)
    else:
        connection = await postgres_connection()
        schema = f"pf_test_{uuid.uuid4().hex}"
        try:
            got = await outcome(GatedPostgres(PG_DSN, schema=schema), sequence)
        finally:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await connection.close()
    assert got == expected


@pytest.mark.parametrize("mixed", [False, True], ids=["events", "mixed"])
@pytest.mark.parametrize("count", [1, 8, 9, 1000, 2048, 4096 + 300])
async def test_sqlite_batches_of_any_size_keep_save_order(
    tmp_path: Path, count: int, mixed: bool
) -> None:
    """One batch of ``count`` events (a trace start among them if ``mixed``): statements
    padded to a few sizes, and past 4,096 events the first ones sent as JSON."""
    store = GatedSQLite(tmp_path / "batches.db", batch_size=5000, buffer_size=5000)
    store.arm()
    await store.start()
    try:
        await store.save_event(StoredEvent("first", 0.0, "k", None, None, {}))
        await store.entered.wait()  # that commit is held: what follows is one batch
        for n in range(count):
            if mixed and n == count // 2:
                await store.save_trace_start("t", "{}", flow_key="f")
            await store.save_event(StoredEvent("t", float(n), "k", "node", None, {"n": n}))
        store.gate.set()
        await store.flush()
        assert store.statistics().committed == 1 + count + mixed
        history = await store.load_history("t")
        assert [(event.ts, event.payload) for event in history] == [
            (float(n), {"n": n}) for n in range(count)
        ]
        assert [trace.trace_id for trace in await store.list_traces()] == ["t"] * mixed
    finally:
        await store.close()


def test_fold_keeps_the_final_effect_per_key() -> None:
    binding = RemoteBinding("t", None, "a", "http://a", "s")
    batch = [
        TraceEnd("old", "failed", 1.0),
        TraceStart("t", "{}", "f", 2.0),
        StoredEvent("t", 3.0, "k", None, None, {}),
        TraceEnd("t", "finished", 4.0),
        TraceEnd("old", "cancelled", 5.0),
        BindingTerminal("x", None, "y", 6.0),
        BindingSave(binding, 7.0),
        BindingTerminal("t", None, "a", 8.0),
    ]
    folded = fold(batch)
    assert [e.ts for e in folded.events] == [3.0]
    ((upsert),) = folded.trace_upserts
    assert (upsert.status, upsert.created_at, upsert.updated_at) == ("finished", 2.0, 4.0)
    assert [(e.trace_id, e.status) for e in folded.trace_ends] == [("old", "cancelled")]
    assert [(t.trace_id, t.task_id) for t in folded.binding_terminals] == [("x", "y")]
    ((save),) = folded.binding_saves
    assert (save.binding.is_terminal, save.at, binding.is_terminal) == (True, 8.0, False)
    assert not folded.events_only
    assert fold([StoredEvent("t", 1.0, "k", None, None, {})]).events_only


async def test_gate_helper_is_released() -> None:
    """The held-batch helper really holds: nothing is committed until the gate opens."""
    store = GatedMemory()
    store.arm()
    await store.start()
    await store.save_event(StoredEvent("t", 1.0, "k", None, None, {}))
    await store.entered.wait()
    assert store.statistics().committed == 0
    store.gate.set()
    await asyncio.wait_for(store.flush(), 10)
    await store.close()
