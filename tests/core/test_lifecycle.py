"""Spec section 7.4: ``run`` / ``stop`` / ``add_middleware``; plus our ``stop`` drain decision."""

from __future__ import annotations

import asyncio
from typing import Any

import pydantic
import pytest
from differential import own

from penguiflow.core import OPEN_SEA, PenguiFlow
from penguiflow.registry import ModelRegistry

from .helpers import (
    Gate,
    Recorder,
    echo,
    fetch,
    ingress_depth,
    make_msg,
    node,
    rookery_empty,
    running,
    start,
    within,
)


class Model(pydantic.BaseModel):
    v: int


def test_run_outside_a_running_loop_fails() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    with pytest.raises(RuntimeError):
        flow.run()
    assert flow._running is False
    assert not flow._tasks


async def test_run_twice_is_refused() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    async with running(flow):
        with pytest.raises(RuntimeError) as info:
            flow.run()
        assert str(info.value) == "PenguiFlow already running"
        assert flow._running is True


async def test_run_starts_one_worker_per_node_and_stores_the_registry() -> None:
    a, b, c = node(echo, "a"), node(echo, "b"), node(echo, "c")
    flow = PenguiFlow(a.to(b, c))
    assert flow.registry is None
    reg = ModelRegistry()
    async with running(flow, registry=reg):
        assert flow._running is True
        assert flow.registry is reg
        assert len(flow._tasks) == 3
        assert all(isinstance(t, asyncio.Task) and not t.done() for t in flow._tasks)
    assert flow._running is False
    assert not flow._tasks


async def test_registry_must_cover_nodes_that_validate() -> None:
    zeta = node(echo, "zeta", validate="both")
    alpha = node(echo, "alpha", validate="in")
    mid = node(echo, "mid", validate="out")
    free = node(echo, "free", validate="none")
    flow = PenguiFlow(zeta.to(alpha), alpha.to(mid), mid.to(free))
    reg = ModelRegistry()
    reg.register("mid", Model, Model)
    try:
        with pytest.raises(RuntimeError) as info:
            flow.run(registry=reg)
        assert str(info.value) == (
            "ModelRegistry is missing entries for nodes requiring validation: alpha, zeta"
        )
    finally:
        await flow.stop()
    assert flow._running is False
    assert not flow._tasks


async def test_registry_check_passes_when_only_validate_none_nodes_are_missing() -> None:
    a = node(echo, "a", validate="none")
    flow = PenguiFlow(a.to())
    async with running(flow, registry=ModelRegistry()):
        await flow.emit("x")
        assert await fetch(flow) == "x"


async def test_stop_is_a_no_op_when_not_running() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    await flow.stop()
    assert flow._running is False
    async with running(flow):
        pass
    await flow.stop()
    assert flow._running is False


async def test_stop_cancels_each_worker_with_a_node_cancelled_event() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    rec = Recorder()
    flow = PenguiFlow(a.to(b), middlewares=[rec])
    async with running(flow):
        await flow.emit("warm-up")  # make sure both workers have started
        assert await fetch(flow) == "warm-up"
    cancelled = rec.select("node_cancelled")
    assert sorted(ev.node_name for ev in cancelled) == ["a", "b"]
    for ev in cancelled:
        assert ev.trace_id is None
        assert ev.attempt == 0
        assert ev.latency_ms is None
        assert ev.trace_pending is None
    assert {ev.node_id for ev in cancelled} == {a.node_id, b.node_id}


async def test_stop_right_after_run_still_reports_each_worker() -> None:
    """Spec 7.4: ``stop`` cancels the workers and *each* emits ``node_cancelled``, even a
    worker that had not taken its first step yet."""
    rec = Recorder()
    flow = PenguiFlow(node(echo, "a").to(), node(echo, "b").to(), middlewares=[rec])
    async with running(flow):
        pass
    assert sorted(ev.node_name for ev in rec.select("node_cancelled")) == ["a", "b"]


async def test_stop_cancels_an_in_flight_invocation() -> None:
    gate = Gate()
    outcome: list[str] = []

    async def slow(msg: Any, ctx: Any) -> Any:
        try:
            await gate.pass_()
        except asyncio.CancelledError:
            outcome.append("cancelled")
            raise
        outcome.append("finished")
        return msg

    flow = PenguiFlow(node(slow, "slow").to())
    m = make_msg("x")
    async with running(flow):
        await flow.emit(m)
        await gate.wait_entered()
    assert outcome == ["cancelled"]
    assert flow._running is False
    assert not flow._tasks
    assert flow._trace_events == {}


async def test_stop_clears_per_trace_state() -> None:
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    flow = PenguiFlow(node(hold, "hold").to())
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await flow.emit(make_msg("y", trace_id="t2"))
        await gate.wait_entered()
        assert set(flow._trace_events) == {"t1", "t2"}
    assert flow._trace_events == {}


async def test_stop_wakes_capacity_waiters() -> None:
    """A caller blocked in the capacity wait of ``emit_chunk`` is released by ``stop``.

    Two ingress nodes each take chunk 0 of trace "stream" and block, so its pending count is
    2 while both floes are empty; with maxsize 1 the next chunk waits for capacity
    (``pending - 1 >= 1``), not for floe space, until ``stop`` wakes it.
    """
    gates = {"p": Gate(), "q": Gate()}

    def holder(name: str) -> Any:
        async def hold(msg: Any, ctx: Any) -> Any:
            await gates[name].pass_()
            return msg

        return node(hold, name)

    flow = PenguiFlow(holder("p").to(), holder("q").to(), queue_maxsize=1)
    parent = make_msg("p", trace_id="stream")
    async with running(flow):
        await within(flow.emit_chunk(parent=parent, text="0"))
        await gates["p"].wait_entered()
        await gates["q"].wait_entered()
        assert ingress_depth(flow) == 0
        waiter = await start(flow.emit_chunk(parent=parent, text="1"))
        assert not waiter.done()
        assert ingress_depth(flow) == 0
    await within(asyncio.gather(waiter, return_exceptions=True))
    assert waiter.done()


async def test_flow_can_run_again_after_stop() -> None:
    a = node(echo, "a")
    flow = PenguiFlow(a.to())
    async with running(flow):
        await flow.emit(make_msg("first"))
        assert (await fetch(flow)).payload == "first"
    async with running(flow):
        assert len(flow._tasks) == 1
        await flow.emit(make_msg("second"))
        assert (await fetch(flow)).payload == "second"


async def test_add_middleware_appends_and_is_read_for_every_event() -> None:
    first, second = Recorder(), Recorder()
    flow = PenguiFlow(node(echo, "a").to(), middlewares=[first])
    async with running(flow):
        await flow.emit(make_msg("one", trace_id="t1"))
        await fetch(flow)
        flow.add_middleware(second)
        assert own(flow._middlewares) == [first, second]
        await flow.emit(make_msg("two", trace_id="t2"))
        await fetch(flow)
    assert {ev.trace_id for ev in first.select("node_start")} == {"t1", "t2"}
    assert {ev.trace_id for ev in second.select("node_start")} == {"t2"}


# --------------------------------------------------------------------------- our decision


async def test_stop_drains_queued_items_with_a_floe_drained_event() -> None:
    """Beyond spec: ``stop`` discards what is still queued and says so per floe.

    ``hold`` takes the first message and blocks; two more wait on its ingress floe.
    """
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    rec = Recorder()
    a = node(hold, "a")
    flow = PenguiFlow(a.to(), middlewares=[rec])
    async with running(flow):
        for i in range(3):
            await flow.emit(make_msg(i, trace_id=f"t{i}"))
        await gate.wait_entered()
        assert flow._contexts[a].queue_depth_in() == 2
    drained = rec.select("floe_drained")
    assert len(drained) == 1
    assert drained[0].extra["dropped"] == 2
    assert flow._contexts[a].queue_depth_in() == 0
    async with running(flow):
        assert rookery_empty(flow)


async def test_results_at_the_rookery_survive_stop_into_the_next_run() -> None:
    """As upstream: ``emit``, ``stop``, ``run``, ``fetch`` returns the result. Results wait at
    the Rookery (on its floes, or in the buffer where a trace-scoped dispatcher had sorted
    them), no longer counted against their traces; items still queued for a node are
    dropped with ``floe_drained``."""
    rec = Recorder()
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    a, b, c = node(echo, "a"), node(echo, "b"), node(hold, "c")
    flow = PenguiFlow(a.to(), b.to(), c.to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg(1, trace_id="t1"), to=a)
        await flow.emit(make_msg(2, trace_id="t2"), to=a)
        await flow.emit(make_msg(3, trace_id="t3"), to=b)
        await flow.emit(make_msg(4, trace_id="t4"), to=c)
        await flow.emit(make_msg(5, trace_id="t5"), to=c)
        await rec.wait_for("node_success", count=3)
        await gate.wait_entered()
    drained = [ev.extra["dropped"] for ev in rec.select("floe_drained")]
    assert drained == [1]  # t5, still queued for c
    assert flow._contexts[OPEN_SEA].queue_depth_out() == 0
    assert flow._traces.records == {}
    async with running(flow):
        got = sorted([(await fetch(flow)).payload for _ in range(3)])
        assert got == [1, 2, 3]
        assert rookery_empty(flow)


async def test_results_sorted_by_the_dispatcher_survive_stop_too() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    async with running(flow):
        await flow.emit(make_msg("mine"), trace_id="t1")
        await flow.emit(make_msg("other"))  # goes to the shared queue: nobody fetches it
        assert (await fetch(flow, trace_id="t1")).payload == "mine"
        while flow._results.shared.qsize() < 1:
            await asyncio.sleep(0)
    async with running(flow):
        assert (await fetch(flow)).payload == "other"
