"""Spec section 7.14: bus envelopes, state store delegation and the small helper methods.

The store and bus are small in-test fakes implementing the protocols.
"""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace
from typing import Any

import pytest

from penguiflow.core import PenguiFlow

from .helpers import Recorder, echo, fetch, make_msg, node, running, start, within


async def _noop() -> None:
    return None


class FakeBus:
    """Records every envelope; optionally blocks each publish on ``gate``."""

    def __init__(self, gate: asyncio.Event | None = None) -> None:
        self.envelopes: list[Any] = []
        self.gate = gate
        self.waiting = asyncio.Event()

    async def publish(self, envelope: Any) -> None:
        if self.gate is not None:
            self.waiting.set()
            await self.gate.wait()
        self.envelopes.append(envelope)


class FakeStore:
    def __init__(self) -> None:
        self.events: list[Any] = []
        self.bindings: list[Any] = []

    async def save_event(self, event: Any) -> None:
        self.events.append(event)

    async def load_history(self, trace_id: str) -> list[Any]:
        return [e for e in self.events if e.trace_id == trace_id]

    async def save_remote_binding(self, binding: Any) -> None:
        self.bindings.append(binding)


# --------------------------------------------------------------------------- bus


async def test_every_enqueue_is_published_with_its_envelope() -> None:
    bus = FakeBus()
    a, b = node(echo, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(b), message_bus=bus)
    m = make_msg("x", trace_id="t1", meta={"k": "v"})
    async with running(flow):
        await flow.emit(m)
        await fetch(flow)
    assert [(e.edge, e.source, e.target) for e in bus.envelopes] == [
        ("OpenSea->a", "OpenSea", "a"),
        ("a->b", "a", "b"),
        ("b->Rookery", "b", "Rookery"),
    ]
    first = bus.envelopes[0]
    assert first.payload is m
    assert first.trace_id == "t1"
    assert first.headers == m.headers.model_dump()
    assert first.meta == {"k": "v"}
    for env in bus.envelopes:
        assert env.trace_id == "t1"
        assert env.headers == {"tenant": "t", "topic": None, "priority": 0}


async def test_non_message_envelopes_have_no_headers_or_meta() -> None:
    bus = FakeBus()
    flow = PenguiFlow(node(echo, "a").to(), message_bus=bus)
    async with running(flow):
        await flow.emit("plain")
        assert await fetch(flow) == "plain"
    assert len(bus.envelopes) == 2
    for env in bus.envelopes:
        assert (env.payload, env.trace_id, env.headers, env.meta) == ("plain", None, None, None)


async def test_emit_awaits_the_publish_before_enqueueing() -> None:
    gate = asyncio.Event()
    bus = FakeBus(gate)
    a = node(echo, "a")
    flow = PenguiFlow(a.to(), message_bus=bus)
    async with running(flow):
        emitting = asyncio.create_task(flow.emit(make_msg("x", trace_id="t1")))
        await within(bus.waiting.wait())
        assert not emitting.done()
        assert flow._contexts[a].queue_depth_in() == 0
        gate.set()
        await within(emitting)
        out = await fetch(flow)
    assert out.payload == "x"
    assert len(bus.envelopes) == 2


async def test_emit_nowait_schedules_the_publish_and_stop_awaits_it() -> None:
    gate = asyncio.Event()
    a = node(echo, "a")

    class SlowBus(FakeBus):
        async def publish(self, envelope: Any) -> None:
            if envelope.source == "OpenSea":
                await gate.wait()
            await super().publish(envelope)

    bus = SlowBus()
    flow = PenguiFlow(a.to(), message_bus=bus)
    flow.run()
    try:
        flow.emit_nowait("plain")  # enqueued at once; its publish is still pending
        assert await fetch(flow) == "plain"
        assert [e.edge for e in bus.envelopes] == ["a->Rookery"]
        stopping = await start(flow.stop())
        assert not stopping.done()  # stop waits for the scheduled publish
        gate.set()
        await within(stopping)
    finally:
        gate.set()
        await flow.stop()
    assert sorted(e.edge for e in bus.envelopes) == ["OpenSea->a", "a->Rookery"]


async def test_failing_publish_is_logged_and_the_flow_continues(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="penguiflow.core")

    class BrokenBus:
        async def publish(self, envelope: Any) -> None:
            raise ConnectionError("bus down")

    flow = PenguiFlow(node(echo, "a").to(), message_bus=BrokenBus())
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        assert (await fetch(flow)).payload == "x"
    failures = [r for r in caplog.records if r.getMessage() == "message_bus_publish_failed"]
    assert [r.edge for r in failures] == ["OpenSea->a", "a->Rookery"]
    for record in failures:
        assert record.event == "message_bus_publish_failed"
        assert record.trace_id == "t1"
        assert record.exception == "ConnectionError('bus down')"
        assert record.exc_info is not None


# --------------------------------------------------------------------------- state store


async def test_store_receives_stored_events() -> None:
    store = FakeStore()
    rec = Recorder()
    a = node(echo, "a")
    flow = PenguiFlow(a.to(), state_store=store, middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
        history = await flow.load_history("t1")
    assert [e.kind for e in history] == ["node_start", "node_success"]
    events = rec.select(trace_id="t1")
    for stored, ev in zip(history, events, strict=True):
        assert (stored.trace_id, stored.ts, stored.node_name, stored.node_id) == (
            "t1",
            ev.ts,
            "a",
            a.node_id,
        )
        assert dict(stored.payload) == ev.to_payload()


async def test_load_history_without_store_raises() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    with pytest.raises(RuntimeError) as info:
        await flow.load_history("t1")
    assert str(info.value) == "PenguiFlow was created without a state_store"


async def test_save_remote_binding_delegates_or_is_a_no_op() -> None:
    binding = SimpleNamespace(trace_id="t1")
    assert await PenguiFlow().save_remote_binding(binding) is None  # type: ignore[arg-type]
    store = FakeStore()
    await PenguiFlow(state_store=store).save_remote_binding(binding)  # type: ignore[arg-type]
    assert store.bindings == [binding]


async def test_failing_binding_save_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    class BrokenStore(FakeStore):
        async def save_remote_binding(self, binding: Any) -> None:
            raise OSError("nope")

    caplog.set_level(logging.DEBUG, logger="penguiflow.core")
    flow = PenguiFlow(state_store=BrokenStore())
    await flow.save_remote_binding(SimpleNamespace(trace_id="t1"))  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == ["state_store_binding_failed"]


# --------------------------------------------------------------------------- misc methods


async def test_record_remote_event_emits_a_custom_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="penguiflow.core")
    rec = Recorder()
    a = node(echo, "a")
    flow = PenguiFlow(a.to(), middlewares=[rec])
    await flow.record_remote_event(
        event="remote_call_start",
        node=a,
        context=flow._contexts[a],
        trace_id="t1",
        latency_ms=12.5,
        level=logging.WARNING,
        extra={"agent": "x"},
    )
    [ev] = rec.events
    assert (ev.event_type, ev.node_name, ev.node_id, ev.trace_id) == (
        "remote_call_start",
        "a",
        a.node_id,
        "t1",
    )
    assert (ev.attempt, ev.latency_ms, ev.outgoing_edges) == (0, 12.5, 1)
    assert dict(ev.extra) == {"agent": "x"}
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "remote_call_start"]
    assert record.levelno == logging.WARNING
    assert record.agent == "x"


async def test_ensure_trace_event_gets_or_creates_the_flag() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    async with running(flow):
        flag = flow.ensure_trace_event("t1")
        assert isinstance(flag, asyncio.Event)
        assert not flag.is_set()
        assert flow.ensure_trace_event("t1") is flag
        assert flow._trace_events["t1"] is flag


async def test_register_external_task_is_cancelled_by_stop() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    forever = asyncio.Event()
    async with running(flow):
        task = asyncio.create_task(forever.wait())
        flow.register_external_task("t1", task)
        done_early = asyncio.create_task(_noop())
        flow.register_external_task("t2", done_early)
        await done_early
    assert task.cancelled()


async def test_register_external_task_ignores_a_none_trace() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    forever = asyncio.Event()
    task = asyncio.create_task(forever.wait())
    try:
        async with running(flow):
            flow.register_external_task(None, task)  # type: ignore[arg-type]
        assert not task.done()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
