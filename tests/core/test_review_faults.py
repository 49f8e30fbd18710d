"""Faults a review of the engine found, each provoked here: a put let into a purged floe, a
floe named twice, emitters waiting through ``stop()``, a node that swallows ``stop()``'s
cancellation, a roundtrip given up while it waited for room, and per-event caches."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from penguiflow.core import PenguiFlow

from .helpers import Gate, Recorder, echo, fetch, make_msg, node, running, settled, start, within


async def test_a_cancel_does_not_let_the_traces_waiting_result_into_the_rookery() -> None:
    """T's node waits to push its second result onto the full Rookery floe; cancelling T
    frees that floe's slot, and the waiting push must not take it."""
    rec = Recorder()

    async def two(msg: Any, ctx: Any) -> Any:
        await ctx.emit(msg.model_copy(update={"payload": "r1"}))
        return msg.model_copy(update={"payload": "r2"})

    flow = PenguiFlow(node(two, "a").to(), queue_maxsize=1, middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        while flow._contexts[flow._nodes[0]].queue_depth_out() < 1 or not flow._workers[0].in_scope:
            await asyncio.sleep(0)
        assert await flow.cancel("T") is True
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        assert flow._residue()["traces"] == 0
        await flow.emit(make_msg("after", trace_id="U"))
        assert (await fetch(flow)).payload == "r1"  # U's first result: nothing of T got in


async def test_a_floe_named_twice_gets_both_copies_and_counts_them() -> None:
    b = node(echo, "b")

    async def twice(msg: Any, ctx: Any) -> None:
        await ctx.emit(msg, to=[b, b])

    flow = PenguiFlow(node(twice, "a").to(b), b.to(), queue_maxsize=1)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        assert [(await fetch(flow)).payload for _ in range(2)] == ["x", "x"]
        await settled(flow)


async def test_stop_refuses_emitters_still_waiting_for_room() -> None:
    gate = Gate()

    async def held(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    flow = PenguiFlow(node(held, "n").to(), queue_maxsize=1)
    flow.run()
    await flow.emit(make_msg("held", trace_id="A"))
    await gate.wait_entered()
    await flow.emit(make_msg("queued", trace_id="B"))
    waiting = await start(flow.emit(make_msg("late", trace_id="C")))
    assert not waiting.done()
    await flow.stop()
    with pytest.raises(RuntimeError, match="stopped while a put waited for room"):
        await within(waiting)
    assert not any(flow._residue().values())


async def test_stop_returns_when_a_node_swallows_its_cancellation() -> None:
    entered = asyncio.Event()

    async def stubborn(msg: Any, ctx: Any) -> Any:
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):  # a handler that forgets to re-raise
            await asyncio.Event().wait()
        return msg

    flow = PenguiFlow(node(stubborn, "s").to())
    flow.run()
    await flow.emit(make_msg("x", trace_id="T"))
    await entered.wait()
    await within(flow.stop())
    assert flow._tasks == []


async def test_a_roundtrip_given_up_while_waiting_for_room_releases_its_lock() -> None:
    gate = Gate()

    async def held(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    flow = PenguiFlow(node(held, "n").to(), queue_maxsize=1)
    async with running(flow):
        await flow.emit(make_msg(1, trace_id="X"))
        await gate.wait_entered()
        await flow.emit(make_msg(2, trace_id="X"))  # the ingress floe is full now
        waiting = await start(flow.emit(make_msg(3), trace_id="T"))
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert len(flow._results.locks) == 0
        gate.open()
        await within(flow.emit(make_msg(4), trace_id="T"))
        answers = {(await fetch(flow, trace_id="T")).payload}
        assert answers == {4}


async def test_events_about_foreign_contexts_leave_no_cache_behind() -> None:
    from penguiflow.core import Context

    rec = Recorder()
    a = node(echo, "a")
    flow = PenguiFlow(a.to(), middlewares=[rec])
    kept = len(flow._events.templates)
    async with running(flow):
        for i in range(50):
            await flow.record_remote_event(
                event="remote_call", node=a, context=Context(a), trace_id=f"t{i}", latency_ms=1.0
            )
    assert len(rec.select("remote_call")) == 50
    assert len(flow._events.templates) == kept


async def test_a_node_that_cancels_its_own_trace_leaves_its_worker_alive() -> None:
    async def a(msg: Any, ctx: Any) -> Any:
        if msg.payload == "stop-me":
            await ctx.runtime.cancel(msg.trace_id)
        return msg

    rec = Recorder()
    flow = PenguiFlow(node(a, "a").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("stop-me", trace_id="T"))
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        await flow.emit(make_msg("next", trace_id="T2"))
        assert (await fetch(flow)).payload == "next"  # nothing of T reached the Rookery
        assert flow.health().nodes[0].workers_alive == 1


async def test_a_node_subclass_with_the_contracts_invoke_signature_runs_the_general_path() -> None:
    from penguiflow.node import Node, NodePolicy

    calls: list[str] = []

    class TracedNode(Node):
        async def invoke(self, message: Any, ctx: Any, *, registry: Any) -> Any:
            calls.append(message.payload)
            return await Node.invoke(self, message, ctx, registry=registry)

    traced = TracedNode(echo, name="n", policy=NodePolicy(timeout_s=5, validate="none"))
    flow = PenguiFlow(traced.to())
    async with running(flow):
        await flow.emit(make_msg("hi", trace_id="T"))
        assert (await fetch(flow)).payload == "hi"
    assert calls == ["hi"]
