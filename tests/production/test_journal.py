"""The trace journal and recovery, with a small in-test store that keeps lifecycles.

The durable stores (penguiflow.stores) are checked against the same behaviour in their own
suite, including a real crash (kill -9) and recovery in a new process.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from core.helpers import Gate, echo, fetch, make_msg, node, running, settled

from penguiflow.core import Context, Endpoint, PenguiFlow
from penguiflow.types import Headers, Message


@dataclass
class Trace:
    trace_id: str
    input_json: str
    flow_key: str
    status: str = "running"


class JournalStore:
    """StateStore plus the trace-journal capability, in memory."""

    def __init__(self) -> None:
        self.traces: dict[str, Trace] = {}
        self.events: list[Any] = []
        self.flushes = 0

    async def save_event(self, event: Any) -> None:
        self.events.append(event)

    async def load_history(self, trace_id: str) -> list[Any]:
        return [e for e in self.events if e.trace_id == trace_id]

    async def save_remote_binding(self, binding: Any) -> None:
        return None

    async def save_trace_start(self, trace_id: str, message_json: str, *, flow_key: str) -> None:
        self.traces[trace_id] = Trace(trace_id, message_json, flow_key)

    async def save_trace_end(self, trace_id: str, status: str) -> None:
        self.traces[trace_id].status = status

    async def unfinished_traces(self, flow_key: str) -> list[Trace]:
        return [t for t in self.traces.values() if t.status == "running" and t.flow_key == flow_key]

    async def flush(self) -> None:
        self.flushes += 1


async def test_starts_and_ends_are_journaled_with_their_status() -> None:
    store = JournalStore()

    async def picky(msg: Any, ctx: Any) -> Any:
        if msg.payload == "bad":
            raise ValueError("refused")
        return msg

    flow = PenguiFlow(node(picky, "p").to(), state_store=store, emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(make_msg("good", trace_id="ok"))
        await flow.emit(make_msg("bad", trace_id="ko"))
        await fetch(flow)
        await fetch(flow)
        await settled(flow)
    assert {t: store.traces[t].status for t in store.traces} == {"ok": "finished", "ko": "failed"}
    stored = Message.model_validate_json(store.traces["ok"].input_json)
    assert stored.payload == "good" and stored.trace_id == "ok"
    assert store.flushes == 1  # stop() flushed the store


async def test_a_cancelled_trace_is_journaled_as_cancelled() -> None:
    store = JournalStore()
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    flow = PenguiFlow(node(hold, "h").to(), state_store=store)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="c"))
        await gate.wait_entered()
        await flow.cancel("c")
        await settled(flow)
    assert store.traces["c"].status == "cancelled"


async def test_recover_drives_unfinished_traces_again() -> None:
    """A flow stops (as if it crashed) with two traces unfinished; a new flow of the same
    shape on the same store re-drives exactly those, with their trace ids."""
    store = JournalStore()
    gate = Gate()

    async def stuck(msg: Any, ctx: Any) -> Any:
        if msg.payload != "quick":
            await gate.pass_()
        return msg

    def build(body: Any) -> PenguiFlow:
        return PenguiFlow(node(body, "work").to(node(echo, "out")), state_store=store)

    first = build(stuck)
    async with running(first):
        await first.emit(make_msg("quick", trace_id="done"))
        assert (await fetch(first)).payload == "quick"
        await first.emit(make_msg("slow-1", trace_id="s1"))
        await first.emit(make_msg("slow-2", trace_id="s2"))
        await gate.wait_entered()
    assert {t.trace_id for t in await store.unfinished_traces(first._journal.key)} == {"s1", "s2"}

    second = build(echo)
    async with running(second):
        assert await second.recover() == 2
        got = {(await fetch(second)).trace_id for _ in range(2)}
        await settled(second)
    assert got == {"s1", "s2"}
    assert {t.status for t in store.traces.values()} == {"finished"}


async def test_recover_needs_a_running_flow_with_a_journal() -> None:
    plain = PenguiFlow(node(echo, "a").to())
    with pytest.raises(RuntimeError, match="not running"):
        await plain.recover()
    async with running(plain):
        with pytest.raises(RuntimeError, match="journals traces"):
            await plain.recover()


async def test_the_flow_key_depends_on_the_graph() -> None:
    store = JournalStore()
    one = PenguiFlow(node(echo, "a").to(node(echo, "b")), state_store=store)
    same = PenguiFlow(node(echo, "a").to(node(echo, "b")), state_store=store)
    other = PenguiFlow(node(echo, "a").to(node(echo, "c")), state_store=store)
    assert one._journal is not None and same._journal is not None and other._journal is not None
    assert one._journal.key == same._journal.key != other._journal.key


def test_idempotency_key_is_stable_and_specific() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    ctx_a, ctx_b = Context(a), Context(b)
    msg = Message(payload={"x": 1}, headers=Headers(tenant="t"), trace_id="T")
    rebuilt = Message(payload={"x": 1}, headers=Headers(tenant="t"), trace_id="T")  # new ts
    assert ctx_a.idempotency_key(msg) == ctx_a.idempotency_key(rebuilt)
    assert ctx_a.idempotency_key(msg) != ctx_b.idempotency_key(msg)
    other_trace = msg.model_copy(update={"trace_id": "U"})
    assert ctx_a.idempotency_key(msg) != ctx_a.idempotency_key(other_trace)
    other_payload = msg.model_copy(update={"payload": {"x": 2}})
    assert ctx_a.idempotency_key(msg) != ctx_a.idempotency_key(other_payload)
    assert Context(Endpoint("e")).idempotency_key("plain") == Context(
        Endpoint("e")
    ).idempotency_key("plain")


async def test_emit_nowait_journals_the_start_before_the_end() -> None:
    """emit_nowait cannot wait for the store, so its start record is written by a task; the
    trace's end must not reach the store before it, even when the trace ends first."""
    store = JournalStore()
    order: list[str] = []
    release = asyncio.Event()
    real_start, real_end = store.save_trace_start, store.save_trace_end

    async def slow_start(trace_id: str, message_json: str, *, flow_key: str) -> None:
        await release.wait()
        order.append("start")
        await real_start(trace_id, message_json, flow_key=flow_key)

    async def end(trace_id: str, status: str) -> None:
        order.append("end")
        await real_end(trace_id, status)

    store.save_trace_start = slow_start  # type: ignore[method-assign]
    store.save_trace_end = end  # type: ignore[method-assign]
    flow = PenguiFlow(node(echo, "a").to(), state_store=store)
    async with running(flow):
        flow.emit_nowait(make_msg("x", trace_id="n"))
        fetching = asyncio.create_task(fetch(flow))
        await asyncio.sleep(0)
        release.set()
        await fetching
        await settled(flow)
    assert order == ["start", "end"]
    assert store.traces["n"].status == "finished"
