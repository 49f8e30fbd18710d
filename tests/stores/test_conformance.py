"""What every store must do, checked against each of them (see ``conftest.backend``).

Ordering is by ``asyncio.Event`` gates inside test subclasses of the store (their
``_commit_batch`` hook), never by sleeping; ``settle`` only lets ready tasks run.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow import Headers, Message, Node, NodePolicy, create
from penguiflow.state import RemoteBinding, StateStore, StoredEvent, SupportsConversationBindings
from penguiflow.stores import StoreClosedError, SupportsTraceLifecycle
from stores.conftest import FakeClock, GatedCommits

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .conftest import Backend

TIMEOUT = 10.0


def event(trace_id: str | None, i: int, kind: str = "node_success", **extra: Any) -> StoredEvent:
    payload = {"event": kind, "trace_id": trace_id, "i": i, **extra}
    return StoredEvent(trace_id, 1000.0 + i, kind, f"n{i % 3}", f"id{i % 3}", payload)


async def settle(predicate: Callable[[], bool]) -> None:
    """Let ready tasks run until ``predicate`` holds (no clock involved)."""
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held while tasks ran")


class FailingCommits:
    """The first ``failures_left`` commits raise before writing anything."""

    failures_left = 2

    async def _commit_batch(self, batch: Sequence[Any]) -> None:
        if self.failures_left:
            self.failures_left -= 1
            raise ConnectionError("injected commit failure")
        await super()._commit_batch(batch)  # type: ignore[misc]


def numbers(history: Sequence[StoredEvent]) -> list[int]:
    return [e.payload["i"] for e in history]


# ------------------------------------------------------------------------ events


async def test_store_satisfies_the_protocols(backend: Backend) -> None:
    store = backend.make()
    assert isinstance(store, StateStore)
    assert isinstance(store, SupportsConversationBindings)
    assert isinstance(store, SupportsTraceLifecycle)


async def test_history_keeps_save_order_and_fields(backend: Backend) -> None:
    store = await backend.open()
    saved = [event("t", i) for i in range(50)]
    for e in saved:
        await store.save_event(e)
    history = await store.load_history("t")
    assert history == saved
    assert await store.load_history("unknown") == []


async def test_many_traces_interleaved(backend: Backend) -> None:
    store = await backend.open(batch_size=7)
    traces = [f"trace-{k}" for k in range(12)]
    for i in range(30):
        for trace_id in traces:
            await store.save_event(event(trace_id, i))
    await store.save_event(event(None, 99))  # a traceless event is kept, in no history
    for trace_id in traces:
        history = await store.load_history(trace_id)
        assert numbers(history) == list(range(30))
        assert {e.trace_id for e in history} == {trace_id}


async def test_payloads_that_json_cannot_hold_are_stringified(backend: Backend) -> None:
    store = await backend.open()

    class Odd:
        def __str__(self) -> str:
            return "odd!"

    cycle: list[Any] = []
    cycle.append(cycle)
    weird = event(
        "t",
        0,
        obj=Odd(),
        nan=float("nan"),
        tuple_keys={(1, 2): "x"},
        cycle=cycle,
        text="nul\x00 and \ud800 and é",
        nested={"a": [1, 2.5, None, True]},
    )
    await store.save_event(weird)
    (stored,) = await store.load_history("t")
    assert stored.payload["obj"] == "odd!"
    assert stored.payload["nan"] == "nan"
    assert stored.payload["tuple_keys"] == {"(1, 2)": "x"}
    assert stored.payload["cycle"] == ["<cycle>"]
    assert stored.payload["text"] == "nul\x00 and \ud800 and é"
    assert stored.payload["nested"] == {"a": [1, 2.5, None, True]}


async def test_odd_identity_text_is_still_written(backend: Backend) -> None:
    """Text columns cannot hold NUL or lone surrogates everywhere; the write must not stall."""
    store = await backend.open()
    await store.save_event(StoredEvent("t\x00x", 1.0, "k\ud800", "n", None, {}))
    (stored,) = await store.load_history("t\x00x")
    assert stored.node_id is None
    assert stored.kind.startswith("k")


# --------------------------------------------------------------------- lifecycle


async def test_trace_lifecycle(backend: Backend) -> None:
    clock = FakeClock()
    store = await backend.open(clock=clock)
    await store.save_trace_start("t1", '{"payload": 1}', flow_key="flow-a")
    clock.now += 1
    await store.save_trace_start("t2", '{"payload": 2}', flow_key="flow-a")
    await store.save_trace_start("t3", '{"payload": 3}', flow_key="flow-b")
    clock.now += 1
    await store.save_trace_end("t2", "finished")
    await store.save_trace_end("never-started", "failed")

    running = await store.unfinished_traces("flow-a")
    assert [(t.trace_id, t.status, t.input_json) for t in running] == [
        ("t1", "running", '{"payload": 1}')
    ]
    (t2,) = await store.list_traces(status="finished")
    assert (t2.trace_id, t2.flow_key, t2.created_at, t2.updated_at) == ("t2", "flow-a", 5001, 5002)
    assert [t.trace_id for t in await store.unfinished_traces("flow-b")] == ["t3"]

    clock.now += 1
    await store.save_trace_start("t2", '{"payload": "again"}', flow_key="flow-a")
    again = {t.trace_id: t for t in await store.unfinished_traces("flow-a")}
    assert again["t2"].input_json == '{"payload": "again"}'
    assert (again["t2"].created_at, again["t2"].updated_at) == (5001, 5003)
    assert list(again) == ["t1", "t2"]  # oldest first

    with pytest.raises(ValueError, match="status must be one of"):
        await store.save_trace_end("t1", "running")
    with pytest.raises(ValueError, match="status must be one of"):
        await store.list_traces(status="bogus")  # type: ignore[arg-type]


async def test_list_traces_by_status_time_and_flow(backend: Backend) -> None:
    clock = FakeClock(100.0)
    store = await backend.open(clock=clock)
    for k in range(6):
        clock.now = 100.0 + k
        await store.save_trace_start(f"t{k}", "{}", flow_key="even" if k % 2 == 0 else "odd")
    clock.now = 200.0
    await store.save_trace_end("t0", "cancelled")
    await store.save_trace_end("t1", "failed")

    # Newest update first; a tie (t0 and t1 ended at once) goes by trace id.
    assert [t.trace_id for t in await store.list_traces()] == ["t0", "t1", "t5", "t4", "t3", "t2"]
    assert [t.trace_id for t in await store.list_traces(limit=2)] == ["t0", "t1"]
    assert await store.list_traces(limit=0) == []
    assert [t.trace_id for t in await store.list_traces(status="running")] == [
        "t5",
        "t4",
        "t3",
        "t2",
    ]
    in_range = await store.list_traces(since=102.0, until=104.0)
    assert [t.trace_id for t in in_range] == ["t3", "t2"]
    assert [t.trace_id for t in await store.list_traces(since=200.0)] == ["t0", "t1"]
    odd_running = await store.list_traces(status="running", flow_key="odd")
    assert [t.trace_id for t in odd_running] == ["t5", "t3"]
    with pytest.raises(ValueError, match="limit"):
        await store.list_traces(limit=-1)


async def test_lifecycle_keeps_its_order_with_events(backend: Backend) -> None:
    """A start and end queued among events in one batch land in call order."""
    store = await backend.open(batch_size=64)
    for i in range(5):
        await store.save_trace_start(f"t{i}", "{}", flow_key="f")
        await store.save_event(event(f"t{i}", i))
        await store.save_trace_end(f"t{i}", "finished")
    await store.save_trace_start("t0", "{}", flow_key="f")
    assert [t.trace_id for t in await store.unfinished_traces("f")] == ["t0"]
    assert len(await store.list_traces(status="finished")) == 4


# ---------------------------------------------------------------------- bindings


def binding(task: str, **fields: Any) -> RemoteBinding:
    defaults: dict[str, Any] = {
        "trace_id": "t",
        "context_id": "ctx",
        "agent_url": "http://agent",
        "router_session_id": "s1",
        "remote_skill": "search",
    }
    defaults.update(fields)
    return RemoteBinding(task_id=task, **defaults)


async def test_bindings(backend: Backend) -> None:
    store = await backend.open()
    first = binding("task-1", metadata={"n": 1})
    await store.save_remote_binding(first)
    first.metadata = {"n": "changed after saving"}
    await store.save_remote_binding(binding("task-2", context_id=None, tenant_id="acme"))
    await store.save_remote_binding(binding("task-3", router_session_id="s2"))

    found = await store.find_binding(
        router_session_id="s1", agent_url="http://agent", remote_skill="search"
    )
    assert found is not None
    assert (found.task_id, found.metadata, found.is_terminal) == ("task-1", {"n": 1}, False)
    scoped = await store.find_binding(
        router_session_id="s1", agent_url="http://agent", remote_skill="search", tenant_id="acme"
    )
    assert scoped is not None
    assert (scoped.task_id, scoped.context_id) == ("task-2", None)
    assert (
        await store.find_binding(
            router_session_id="s1", agent_url="http://agent", remote_skill=None
        )
        is None
    )
    assert [b.task_id for b in await store.list_bindings(router_session_id="s1")] == [
        "task-1",
        "task-2",
    ]

    # Saving again replaces the binding and makes it the most recent.
    await store.save_remote_binding(binding("task-1", last_remote_task_id="r9"))
    listed = await store.list_bindings(router_session_id="s1")
    assert [(b.task_id, b.last_remote_task_id) for b in listed] == [
        ("task-2", None),
        ("task-1", "r9"),
    ]

    await store.mark_binding_terminal(trace_id="t", context_id=None, task_id="task-2")
    await store.mark_binding_terminal(trace_id="t", context_id="nope", task_id="task-2")
    listed = await store.list_bindings(router_session_id="s1")
    assert [(b.task_id, b.is_terminal) for b in listed] == [("task-2", True), ("task-1", False)]
    assert await store.list_bindings(router_session_id="unknown") == []


# ---------------------------------------------------------- writer behaviour


async def test_close_commits_everything_queued(backend: Backend) -> None:
    """Saves wait behind a held commit; close() releases nothing until all are committed."""
    store = await backend.open(GatedCommits, batch_size=4)
    store.arm()  # type: ignore[attr-defined]
    for i in range(20):
        await store.save_event(event("t", i))
    await store.entered.wait()  # type: ignore[attr-defined]
    closing = asyncio.create_task(store.close())
    await settle(lambda: store.statistics().committed == 0 and not closing.done())
    store.gate.set()  # type: ignore[attr-defined]
    await closing
    assert store.statistics().committed == 20
    with pytest.raises(StoreClosedError):
        await store.save_event(event("t", 20))
    with pytest.raises(StoreClosedError):
        await store.load_history("t")
    await store.close()  # idempotent
    if backend.durable:
        reopened = await backend.open()
        assert numbers(await reopened.load_history("t")) == list(range(20))


async def test_full_buffer_blocks_savers_without_losing_anything(backend: Backend) -> None:
    """Interleaving: commit of event 0 held; 1-3 fill the buffer; 4 waits; release; all land."""
    store = await backend.open(GatedCommits, buffer_size=4, batch_size=2)
    store.arm()  # type: ignore[attr-defined]
    await store.save_event(event("t", 0))
    await store.entered.wait()  # type: ignore[attr-defined]
    for i in range(1, 4):
        await store.save_event(event("t", i))
    assert store.statistics().buffered == 4
    blocked = asyncio.create_task(store.save_event(event("t", 4)))
    await settle(lambda: store.statistics().waiting_savers == 1)
    assert not blocked.done()
    assert store.statistics().buffered == 4

    store.gate.set()  # type: ignore[attr-defined]
    async with asyncio.timeout(TIMEOUT):
        await blocked
    assert numbers(await store.load_history("t")) == [0, 1, 2, 3, 4]
    assert store.statistics().buffered == 0


async def test_failing_commit_is_retried_and_logged(
    backend: Backend, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="penguiflow.stores")
    store = await backend.open(FailingCommits, retry_initial_s=0.0, retry_max_s=0.0)
    for i in range(10):
        await store.save_event(event("t", i))
    async with asyncio.timeout(TIMEOUT):
        await store.flush()
    assert numbers(await store.load_history("t")) == list(range(10))
    assert store.write_failures == 2
    failed = [r for r in caplog.records if r.getMessage() == "state_store_write_failed"]
    assert [(r.event, r.attempt) for r in failed] == [  # type: ignore[attr-defined]
        ("state_store_write_failed", 1),
        ("state_store_write_failed", 2),
    ]
    assert all("injected commit failure" in r.exception for r in failed)  # type: ignore[attr-defined]
    assert any(r.getMessage() == "state_store_write_recovered" for r in caplog.records)


async def test_concurrent_savers(backend: Backend) -> None:
    store = await backend.open(buffer_size=16, batch_size=8)

    async def saver(trace_id: str) -> None:
        for i in range(40):
            await store.save_event(event(trace_id, i))
            await store.save_event(event("shared", i, saver=trace_id))

    async with asyncio.timeout(TIMEOUT), asyncio.TaskGroup() as group:
        for k in range(8):
            group.create_task(saver(f"s{k}"))
    for k in range(8):
        assert numbers(await store.load_history(f"s{k}")) == list(range(40))
    shared = await store.load_history("shared")
    assert len(shared) == 8 * 40
    for k in range(8):
        mine = [e.payload["i"] for e in shared if e.payload["saver"] == f"s{k}"]
        assert mine == list(range(40))


# ------------------------------------------------------------------ a real flow


async def echo(message: Any, ctx: Any) -> Any:
    return message


async def test_flow_events_land_in_the_store(backend: Backend) -> None:
    store = await backend.open()
    policy = NodePolicy(validate="none")
    first, second = (
        Node(echo, name="first", policy=policy),
        Node(echo, name="second", policy=policy),
    )
    flow = create(first.to(second), state_store=store)
    messages = [Message(payload=i, headers=Headers(tenant="t")) for i in range(5)]
    flow.run()
    try:
        async with asyncio.timeout(TIMEOUT):
            for message in messages:
                await flow.emit(message)
            for _ in messages:
                await flow.fetch()
    finally:
        await flow.stop()
    await store.flush()
    for message in messages:
        history = await flow.load_history(message.trace_id)
        steps = [(e.kind, e.node_name) for e in history if e.kind.startswith("node_")]
        assert steps == [
            ("node_start", "first"),
            ("node_success", "first"),
            ("node_start", "second"),
            ("node_success", "second"),
        ]
        assert all(e.trace_id == message.trace_id for e in history)
        assert history[0].payload["event"] == "node_start"
