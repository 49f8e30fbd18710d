"""Spec section 7.9: per-trace pending counts, forgetting a trace, event trace fields."""

from __future__ import annotations

import asyncio
from typing import Any

from penguiflow.core import PenguiFlow

from .helpers import Gate, Recorder, drop, echo, fetch, make_msg, node, rookery_empty, running


async def test_pending_counts_along_a_chain() -> None:
    """The spec's example: OpenSea -> A -> B -> Rookery.

    The counting rules put B's result at the Rookery (counted) before ``node_success(B)`` while
    B's own item is still pending, so that event sees 2; the spec's prose ("B's events see
    1") only holds for ``node_start(B)``. We follow the rules.
    """
    rec = Recorder()
    a, b = node(echo, "A"), node(echo, "B")
    flow = PenguiFlow(a.to(b), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
        assert "t1" not in flow._trace_events
    pending = [(ev.event_type, ev.node_name, ev.trace_pending) for ev in rec.select(trace_id="t1")]
    assert pending == [
        ("node_start", "A", 1),
        ("node_success", "A", 2),
        ("node_start", "B", 1),
        ("node_success", "B", 2),
    ]


async def test_first_enqueue_creates_an_unset_cancel_flag() -> None:
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        await gate.pass_()
        return msg

    flow = PenguiFlow(node(hold, "a").to())
    async with running(flow):
        assert "t1" not in flow._trace_events
        await flow.emit(make_msg("x", trace_id="t1"))
        flag = flow._trace_events["t1"]
        assert isinstance(flag, asyncio.Event)
        assert not flag.is_set()
        await gate.wait_entered()
        await flow.emit(make_msg("y", trace_id="t1"))
        assert flow._trace_events["t1"] is flag
        gate.open()
        await fetch(flow)
        assert "t1" in flow._trace_events  # the second item is still pending
        await fetch(flow)
        assert "t1" not in flow._trace_events


async def test_fan_out_counts_every_copy() -> None:
    rec = Recorder()
    a, b, c = node(echo, "a"), node(echo, "b"), node(echo, "c")
    flow = PenguiFlow(a.to(b, c), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
        await fetch(flow)
        assert "t1" not in flow._trace_events
    success_a = rec.select("node_success", node_name="a")[0]
    assert success_a.trace_pending == 3


async def test_dropping_node_forgets_the_trace_without_output() -> None:
    rec = Recorder()
    a, b = node(drop, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(), b.to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("gone", trace_id="t1"), to=a)
        await flow.emit(make_msg("sentinel", trace_id="t2"), to=a)
        await rec.wait_for("node_success", trace_id="t2")
        await flow.emit(make_msg("done", trace_id="t3"), to=b)
        await fetch(flow)
        assert "t1" not in flow._trace_events
        assert rookery_empty(flow)
    assert rec.select("node_success", trace_id="t1")[0].trace_pending == 1
    assert rec.select("trace_cancel_finish") == []


async def test_items_without_a_trace_are_not_counted() -> None:
    rec = Recorder()
    flow = PenguiFlow(node(echo, "a").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit("plain")
        assert await fetch(flow) == "plain"
        assert flow._trace_events == {}
    for ev in rec.select("node_start") + rec.select("node_success"):
        assert ev.trace_id is None
        assert ev.trace_pending is None
        assert ev.trace_inflight == 0
        assert ev.trace_cancelled is False


async def test_traces_are_counted_independently() -> None:
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        if msg.payload == "hold":
            await gate.pass_()
        return msg

    rec = Recorder()
    flow = PenguiFlow(node(hold, "a").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("hold", trace_id="t1"))
        await flow.emit(make_msg("x", trace_id="t2"))
        await flow.emit(make_msg("y", trace_id="t2"))
        await gate.wait_entered()
        gate.open()
        await rec.wait_for("node_success", count=3)
        for _ in range(3):
            await fetch(flow)
    t2_starts = [ev.trace_pending for ev in rec.select("node_start", trace_id="t2")]
    assert t2_starts == [2, 2]  # x running + y queued; then y running + x at the Rookery
    assert rec.select("node_start", trace_id="t1")[0].trace_pending == 1


def test_a_reused_record_starts_as_a_new_one() -> None:
    """An ended trace's record serves a later trace with nothing of the first left in it."""
    from penguiflow._runtime.traces import SPARE_RECORDS, TraceRecord, TraceRegistry

    traces = TraceRegistry(maxsize=4)
    traces.count("t1", 2)
    first = traces.records["t1"]
    first.inflight = 1
    first.cancel_announced = first.failed = True
    first.wm_hops = 3
    dropped: list[str] = []
    counters = {"s": 1}
    traces.track_stream("t1", counters, "s")
    traces.on_end("t1", lambda: dropped.append("t1"))
    first.inflight = 0
    traces.release("t1")
    traces.release("t1")
    assert (dropped, counters) == (["t1"], {})  # the first trace's leftovers went at its end
    traces.count("t2")
    second = traces.records["t2"]
    assert second is first  # reused, and reset
    assert second == TraceRecord(pending=1)
    assert traces.pending("t1") == 0 and "t1" not in traces.flags
    # Bounded, and a stop drops the spares.
    for index in range(SPARE_RECORDS + 10):
        traces.count(f"many-{index}")
    for index in range(SPARE_RECORDS + 10):
        traces.release(f"many-{index}")
    assert len(traces._spare) == SPARE_RECORDS
    traces.clear()
    assert traces._spare == []
