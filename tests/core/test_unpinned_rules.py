"""Rules of the contract that no other test pins down: the token budget's exact boundary
(7.7 A.2), the subflow watcher (7.15), fair multi-floe fetching, and ``cancel`` reaching the
tasks registered for a trace (7.12, 7.14)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.core import PenguiFlow
from penguiflow.types import WM, FinalAnswer

from .helpers import Gate, Recorder, echo, fetch, make_msg, node, running, within

if TYPE_CHECKING:
    from penguiflow.types import Message


# --------------------------------------------------------------------------- 7.7 A.2


async def test_token_budget_boundary_budget_minus_one_continues_budget_stops() -> None:
    """budget_tokens=12, the controller spends 1 token per hop starting from 10: its result
    with 11 tokens (budget - 1) hops on, its result with 12 (= budget) ends the loop with
    "Token budget exhausted". So the controller runs exactly twice."""
    seen: list[int] = []

    async def spend_one(msg: Message, ctx: Any) -> Message:
        wm = msg.payload
        seen.append(wm.tokens_used)
        return msg.model_copy(
            update={"payload": wm.model_copy(update={"tokens_used": wm.tokens_used + 1})}
        )

    ctrl = node(spend_one, "ctrl", allow_cycle=True)
    flow = PenguiFlow(ctrl.to(ctrl))
    start = WM(query="q", tokens_used=10, budget_tokens=12, budget_hops=None)
    async with running(flow):
        await flow.emit(make_msg(start, trace_id="t1"))
        out = await fetch(flow)
    assert out.payload == FinalAnswer(text="Token budget exhausted")
    assert out.trace_id == "t1"
    assert seen == [10, 11]


# --------------------------------------------------------------------------- 7.15


@pytest.mark.looptime
async def test_the_subflow_watcher_carries_a_parent_cancel_into_the_subflow() -> None:
    """Cancelling the parent trace T while its node waits in ``ctx.call_playbook`` cancels
    the subflow's running node, and the parent flow goes on serving trace U.

    The parent node shields the call, so the parent's cancellation stops at the shield and
    never reaches ``call_playbook`` itself: only the watcher (which follows T's cancel flag)
    can carry the cancel into the subflow. Interleaving: the subflow node for T enters its
    gate; ``flow.cancel("T")``; the subflow node must then see ``CancelledError`` (it never
    returns on its own); U then goes through the parent.
    """
    sub_entered, sub_cancelled = asyncio.Event(), asyncio.Event()
    created: list[PenguiFlow] = []
    calls: list[asyncio.Task[Any]] = []

    async def sub_body(msg: Message, ctx: Any) -> Any:
        sub_entered.set()
        try:
            await asyncio.Event().wait()  # only a cancel ends this
        except asyncio.CancelledError:
            sub_cancelled.set()
            raise
        return msg

    def playbook() -> tuple[PenguiFlow, None]:
        sub = PenguiFlow(node(sub_body, "sub").to())
        created.append(sub)
        return sub, None

    async def parent(msg: Message, ctx: Any) -> Any:
        if msg.payload != "T1":
            return msg
        call = asyncio.ensure_future(ctx.call_playbook(playbook, msg))
        calls.append(call)
        return await asyncio.shield(call)

    rec = Recorder()
    flow = PenguiFlow(node(parent, "p").to(), middlewares=[rec])
    try:
        async with running(flow):
            await flow.emit(make_msg("T1", trace_id="T"))
            await within(sub_entered.wait())
            assert await flow.cancel("T") is True
            await within(sub_cancelled.wait())
            await rec.wait_for("node_trace_cancelled", trace_id="T")
            await flow.emit(make_msg("U1", trace_id="U"))
            assert (await fetch(flow)).payload == "U1"
        # The subflow has nothing left to answer for T, so the call waits until its caller
        # gives up; cancelling it stops the subflow.
        assert [call.done() for call in calls] == [False]
    finally:
        for call in calls:
            call.cancel()
        if calls:
            await asyncio.wait(calls)
    assert calls[0].cancelled()
    (sub,) = created
    assert sub._running is False
    assert not sub._tasks


# --------------------------------------------------------------------------- fair fetching


async def test_a_busy_floe_does_not_starve_the_other_incoming_floe() -> None:
    """Node ``c`` reads two floes, from ``first`` and ``second`` (in its context's order).

    Interleaving: ``c`` takes x0 from the first floe and holds at its gate; meanwhile four
    items queue on the first floe and two on the second. Once released, ``c`` must alternate
    between the floes (round-robin) rather than drain the first floe before the second.
    """
    gate = Gate()
    order: list[str] = []

    async def sink(msg: Message, ctx: Any) -> Message:
        order.append(msg.payload)
        if msg.payload == "x0":
            await gate.pass_()
        return msg

    a, b, c = node(echo, "a"), node(echo, "b"), node(sink, "c")
    rec = Recorder()
    flow = PenguiFlow(a.to(c), b.to(c), c.to(), middlewares=[rec])
    incoming = flow._contexts[c]._all_in
    first, second = incoming[0].source, incoming[1].source
    assert {first, second} == {a, b}
    async with running(flow):
        await flow.emit(make_msg("x0", trace_id="tx0"), to=first)
        await gate.wait_entered()
        for i in range(1, 5):
            await flow.emit(make_msg(f"x{i}", trace_id=f"tx{i}"), to=first)
        for i in range(1, 3):
            await flow.emit(make_msg(f"y{i}", trace_id=f"ty{i}"), to=second)
        await rec.wait_for("node_success", node_name=first.name, count=5)
        await rec.wait_for("node_success", node_name=second.name, count=2)
        gate.open()
        results = [(await fetch(flow)).payload for _ in range(7)]
    assert order == ["x0", "y1", "x1", "y2", "x2", "x3", "x4"]
    assert results == order


# --------------------------------------------------------------------------- 7.12 / 7.14


@pytest.mark.looptime
async def test_cancel_cancels_the_tasks_registered_for_the_trace() -> None:
    """Each trace's node run registers a side task and holds at its gate. Cancelling T
    cancels T's side task at once (before anything stops); U's side task keeps running
    until the flow stops."""
    gates = {"T": Gate(), "U": Gate()}
    side: dict[str, asyncio.Task[None]] = {}

    async def body(msg: Message, ctx: Any) -> Message:
        task = asyncio.ensure_future(asyncio.Event().wait())
        side[msg.trace_id] = task
        ctx.runtime.register_external_task(msg.trace_id, task)
        await gates[msg.trace_id].pass_()
        return msg

    flow = PenguiFlow(node(body, "n", concurrency=2).to())
    async with running(flow):
        await flow.emit(make_msg("t", trace_id="T"))
        await flow.emit(make_msg("u", trace_id="U"))
        await gates["T"].wait_entered()
        await gates["U"].wait_entered()
        assert await flow.cancel("T") is True
        await within(asyncio.wait([side["T"]]))
        assert side["T"].cancelled()
        assert not side["U"].done()
        gates["U"].open()
        assert (await fetch(flow)).payload == "u"
        assert not side["U"].done()
    assert side["U"].cancelled()
