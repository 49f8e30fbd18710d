"""Results and the callers that fetch them: callers that go away, results nobody fetches.

See ``penguiflow._runtime.results`` for the rules these tests hold the runtime to.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from penguiflow._runtime.results import ABANDONED_TTL_S
from penguiflow.core import PenguiFlow

from .helpers import Gate, Recorder, drop, fetch, make_msg, node, running, settled, start, within


async def _label(msg: Any, ctx: Any) -> Any:
    return msg.model_copy(update={"payload": f"r:{msg.payload}"})


async def _give_up(flow: PenguiFlow, trace_id: str) -> None:
    """A caller that starts a roundtrip, waits for its result, and goes away before it."""
    await flow.emit(make_msg(trace_id), trace_id=trace_id)
    waiting = await start(flow.fetch(trace_id=trace_id))
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting


async def test_callers_that_give_up_do_not_hang_the_others() -> None:
    """Ten callers give up on a flow whose Rookery holds two results; their results arrive
    later. Every caller after them still gets its own answer."""
    gate = Gate()

    async def held(msg: Any, ctx: Any) -> Any:
        if msg.payload.startswith("gone"):
            await gate.pass_()
        return await _label(msg, ctx)

    flow = PenguiFlow(node(held, "a", concurrency=10).to(), queue_maxsize=2)
    async with running(flow):
        for i in range(10):
            await _give_up(flow, f"gone{i}")
        gate.open()
        answers = await within(
            asyncio.gather(*(_roundtrip(flow, f"live{i}") for i in range(20))), 5
        )
        assert answers == [f"r:live{i}" for i in range(20)]


async def _roundtrip(flow: PenguiFlow, trace_id: str) -> str:
    await flow.emit(make_msg(trace_id), trace_id=trace_id)
    return str((await flow.fetch(trace_id=trace_id)).payload)


async def test_a_caller_that_fetches_again_finds_its_results() -> None:
    """Polling with a timeout: the result that came between two tries is kept for the next."""
    gate = Gate()

    async def slow(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return await _label(msg, ctx)

    flow = PenguiFlow(node(slow, "a").to())
    async with running(flow):
        await _give_up(flow, "T")
        gate.open()
        await settled_results(flow, "T")
        assert (await fetch(flow, trace_id="T")).payload == "r:T"
        assert flow._results.inboxes == {}
        await settled(flow)


async def settled_results(flow: PenguiFlow, trace_id: str) -> None:
    """Wait until the trace's inbox holds a result (it is produced within a few steps)."""
    async with asyncio.timeout(5):
        while not flow._results.inboxes[trace_id].qsize():
            await asyncio.sleep(0)


def _gated(gate: Gate) -> Any:
    async def slow(msg: Any, ctx: Any) -> Any:
        if msg.payload == "T":
            await gate.pass_()
        return await _label(msg, ctx)

    return slow


@pytest.mark.looptime
async def test_abandoned_results_are_dropped_after_their_time_with_an_event() -> None:
    rec, gate = Recorder(), Gate()
    flow = PenguiFlow(node(_gated(gate), "a").to(), middlewares=[rec])
    async with running(flow):
        await _give_up(flow, "T")
        gate.open()
        await settled_results(flow, "T")
        assert "T" in flow._traces.records  # its result is still pending, held for a caller
        loop = asyncio.get_running_loop()
        before = loop.time()
        dropped = await rec.wait_for("results_dropped", timeout=ABANDONED_TTL_S + 5)
        assert loop.time() - before == pytest.approx(ABANDONED_TTL_S, abs=0.5)
        assert (dropped.trace_id, dropped.node_name) == ("T", "Rookery")
        assert dict(dropped.extra) == {"dropped": 1, "reason": "abandoned"}
        await settled(flow)
        assert flow._results.inboxes == {}
        assert flow._results.dropped == 1


async def test_abandoned_results_make_room_when_results_for_nobody_press() -> None:
    """A plain result needs the room an abandoned caller's result holds: the abandoned one
    is dropped at once, with its reason."""
    rec, gate = Recorder(), Gate()
    flow = PenguiFlow(node(_gated(gate), "a").to(), queue_maxsize=1, middlewares=[rec])
    async with running(flow):
        await _give_up(flow, "T")
        gate.open()
        await settled_results(flow, "T")
        assert flow._results.held == 1 == flow._results.capacity
        await flow.emit(make_msg("plain", trace_id="P"))
        assert (await fetch(flow)).payload == "r:plain"
        dropped = await rec.wait_for("results_dropped", trace_id="T")
        assert dropped.extra["reason"] == "capacity"
        await settled(flow)


async def test_results_nobody_fetches_stop_the_flow_instead_of_growing() -> None:
    """Plain results nobody fetches while trace-scoped fetching is on: they are held up to
    the Rookery's size, then wait on its floe, then the node and ``emit`` wait."""
    flow = PenguiFlow(node(_label, "a").to(), queue_maxsize=2)
    async with running(flow):
        assert await _roundtrip(flow, "on") == "r:on"  # turns trace-scoped delivery on
        sent = 0

        async def flood() -> None:
            nonlocal sent
            while True:
                await flow.emit(make_msg(sent, trace_id=f"p{sent}"))
                sent += 1

        flooding = asyncio.create_task(flood())
        for _ in range(50):
            await asyncio.sleep(0)
        assert not flooding.done()
        held = flow._results.held
        assert held == flow._results.capacity == 2
        health = flow.health()
        assert health.status == "degraded"
        assert (health.results_waiting, health.results_capacity) == (2, 2)
        assert sent <= 2 + 2 + 1 + 2 + 1  # held, Rookery floe, in the node, ingress, emit
        flooding.cancel()
        with pytest.raises(asyncio.CancelledError):
            await flooding


async def test_live_roundtrips_are_bounded_and_emit_waits_in_line() -> None:
    gate = Gate()

    async def slow(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return await _label(msg, ctx)

    flow = PenguiFlow(node(slow, "a").to())
    flow._results.roundtrip_limit = 2
    async with running(flow):
        await flow.emit(make_msg("1"), trace_id="t1")
        await flow.emit(make_msg("2"), trace_id="t2")
        third = await start(flow.emit(make_msg("3"), trace_id="t3"))
        assert not third.done()  # two roundtrips are live: the third waits
        health = flow.health()
        assert (health.status, health.roundtrips, health.roundtrip_limit) == ("degraded", 2, 2)
        gate.open()
        assert (await fetch(flow, trace_id="t1")).payload == "r:1"
        await within(third)
        assert (await fetch(flow, trace_id="t2")).payload == "r:2"
        assert (await fetch(flow, trace_id="t3")).payload == "r:3"


async def test_cancelling_an_abandoned_trace_drops_its_held_results() -> None:
    gate = Gate()

    async def two(msg: Any, ctx: Any) -> Any:
        await first_in.wait()
        await ctx.emit(await _label(msg, ctx))
        await gate.pass_()
        return await _label(msg, ctx)

    first_in = asyncio.Event()
    flow = PenguiFlow(node(two, "a").to())
    async with running(flow):
        await _give_up(flow, "T")
        first_in.set()
        await gate.wait_entered()
        await settled_results(flow, "T")
        assert flow._results.held == 1
        assert await flow.cancel("T") is True
        assert flow._results.held == 0
        assert "T" not in flow._results.inboxes
        await settled(flow)


async def test_a_callers_results_are_bounded_and_pass_nobody_else() -> None:
    """A node floods the trace of a caller that does not fetch yet: its inbox holds the
    Rookery's size, then its producer waits; another caller's results still get out."""

    async def flood(msg: Any, ctx: Any) -> Any:
        if msg.payload == "flood":
            for i in range(1000):
                await ctx.emit(msg.model_copy(update={"payload": i}))
            return None
        return await _label(msg, ctx)

    flow = PenguiFlow(node(flood, "a", concurrency=2).to(), queue_maxsize=4)
    async with running(flow):
        await flow.emit(make_msg("flood"), trace_id="F")
        while flow._traces.pending("F") < 4 + 4 + 1:  # inbox, Rookery floe, the input
            await asyncio.sleep(0)
        assert flow._results.inboxes["F"].qsize() == flow._results.capacity == 4
        assert await within(_roundtrip(flow, "other")) == "r:other"
        assert [(await fetch(flow, trace_id="F")).payload for _ in range(10)] == list(range(10))
        await flow.cancel("F")


@pytest.mark.looptime
async def test_a_caller_that_gives_up_on_a_trace_that_ended_empty_leaves_nothing() -> None:
    """The trace's only node delivers nothing, so the trace ends while its caller waits; the
    caller then gives up. Nothing can come for that trace any more: its inbox goes at once,
    with no ``results_dropped`` event when the abandonment time would have passed."""
    rec = Recorder()
    flow = PenguiFlow(node(drop, "a").to(), middlewares=[rec])
    async with running(flow):
        waiting = await start(flow.fetch(trace_id="T"))
        await flow.emit(make_msg("x", trace_id="T"))
        await settled(flow)
        assert "T" in flow._results.inboxes and not waiting.done()
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert flow._results.inboxes == {}
        await asyncio.sleep(ABANDONED_TTL_S + 1)  # virtual time: past the abandonment time
        assert "results_dropped" not in rec.types()
