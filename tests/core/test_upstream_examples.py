"""Calls that upstream's own examples make, which users copy."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.core import PenguiFlow, call_playbook

from .helpers import fetch, make_msg, node, running

if TYPE_CHECKING:
    from penguiflow.types import Message


async def test_a_node_sends_a_status_update_straight_to_the_caller() -> None:
    """Upstream's ``status_roadmap_flow`` calls ``ctx.runtime._emit_to_rookery(update,
    source=ctx.owner)`` before its answer; the caller fetches the update, then the answer."""

    async def plan(msg: Message, ctx: Any) -> Message:
        update = msg.model_copy(update={"payload": "status: planning"})
        await ctx.runtime._emit_to_rookery(update, source=ctx.owner)
        return msg.model_copy(update={"payload": "answer"})

    planner, worker = node(plan, "planner"), node(_echo, "worker")
    flow = PenguiFlow(planner.to(worker), worker.to())
    async with running(flow):
        await flow.emit(make_msg("q"), trace_id="t1")
        first = await fetch(flow, trace_id="t1")
        second = await fetch(flow, trace_id="t1")
    assert [first.payload, second.payload] == ["status: planning", "answer"]
    assert first.trace_id == second.trace_id == "t1"


async def test_emit_to_rookery_without_a_source_uses_the_first_rookery_floe() -> None:
    flow = PenguiFlow(node(_echo, "a").to())
    async with running(flow):
        await flow._emit_to_rookery(make_msg("direct", trace_id="t1"))
        assert (await fetch(flow)).payload == "direct"
        assert flow._traces.records == {}


async def _echo(msg: Any, ctx: Any) -> Any:
    return msg


async def test_a_playbook_factory_of_the_wrong_shape_is_named() -> None:
    def bare_flow() -> Any:
        return PenguiFlow(node(_echo, "sub").to())

    with pytest.raises(TypeError, match=r"must return a \(flow, registry\) pair .* got PenguiFlow"):
        await call_playbook(bare_flow, make_msg("x"))


async def test_a_flag_set_by_hand_ends_the_subflow_call_with_trace_cancelled() -> None:
    """Spec 7.17 lets callers set a trace's flag themselves. The subflow watcher cancels the
    subflow's work, and ``call_playbook`` raises ``TraceCancelled`` instead of waiting for a
    result that cannot come; the parent's worker goes on to the next trace."""
    import asyncio

    from penguiflow.core import TraceCancelled

    entered, outcomes = asyncio.Event(), []

    async def stuck(msg: Any, ctx: Any) -> Any:
        entered.set()
        await asyncio.Event().wait()

    def playbook() -> Any:
        return PenguiFlow(node(stuck, "sub").to()), None

    async def parent(msg: Any, ctx: Any) -> Any:
        if msg.trace_id == "U":
            return msg
        try:
            return await ctx.call_playbook(playbook, msg)
        except TraceCancelled as error:
            outcomes.append(error.trace_id)
            raise

    flow = PenguiFlow(node(parent, "p").to())
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        await entered.wait()
        flow._trace_events["T"].set()
        await flow.emit(make_msg("y", trace_id="U"))
        assert (await fetch(flow)).payload == "y"
    assert outcomes == ["T"]
