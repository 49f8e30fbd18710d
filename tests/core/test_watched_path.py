"""The worker's inline path while events are observed.

With middlewares (and no store, logging off), ordinary items run inline with their
``node_start`` and ``node_success``: a lone middleware is awaited directly, several go through
the event sink. These tests check that this path builds the very events the general path
builds, keeps the trace open while its observers run, and follows observers that come and
go while the flow runs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.core import PenguiFlow

from .helpers import Gate, Recorder, assert_accounted, echo, fetch, make_msg, node, running, settled

if TYPE_CHECKING:
    from penguiflow.metrics import FlowEvent

LOGGER = "penguiflow.core"


def diamond() -> PenguiFlow:
    """a fans out to b and c, which both feed d (a node with two incoming floes)."""
    a, b, c, d = (node(echo, name) for name in "abcd")
    return PenguiFlow(a.to(b, c), b.to(d), c.to(d), d.to())


def facts(event: FlowEvent) -> tuple[Any, ...]:
    """Every field of an event but the clock readings and the (random) node id."""
    return (
        event.event_type,
        event.node_name,
        event.trace_id,
        event.attempt,
        event.queue_depth_in,
        event.queue_depth_out,
        event.outgoing_edges,
        event.queue_maxsize,
        event.trace_pending,
        event.trace_inflight,
        event.trace_cancelled,
        dict(event.extra),
    )


async def run_diamond(middlewares: list[Any]) -> None:
    flow = diamond()
    for middleware in middlewares:
        flow.add_middleware(middleware)
    async with running(flow):
        for k in range(3):
            await flow.emit(make_msg(k, trace_id=f"t{k}"))
            await fetch(flow)
            await fetch(flow)
            await settled(flow)


async def test_a_lone_middleware_sees_what_several_see() -> None:
    """The inline events (one middleware) equal the sink's (two), field by field."""
    alone, first = Recorder(), Recorder()

    async def other(event: FlowEvent) -> None:
        return None

    await run_diamond([alone])
    await run_diamond([first, other])
    assert [facts(ev) for ev in alone.events] == [facts(ev) for ev in first.events]
    assert len(alone.select("node_success")) == 3 * 5  # d runs twice per trace
    # d reads two incoming floes. At each of its node_success the trace holds d's input, its
    # output, and the other copy (still queued for d, or already waiting in the Rookery).
    d_success = alone.select("node_success", node_name="d")
    assert [ev.trace_pending for ev in d_success] == [3] * 6


async def test_node_success_sees_input_and_output_and_the_trace_waits_for_it() -> None:
    """Spec 7.9: node_success(A) sees A's input and its output. While a middleware still
    handles that event, the output is already fetchable but the trace is not over. As
    upstream, an event about a call does not count that call in ``trace_inflight``."""
    gate = Gate()
    seen: list[FlowEvent] = []

    async def slow_observer(event: FlowEvent) -> None:
        seen.append(event)
        if event.event_type == "node_success":
            await gate.pass_()

    flow = PenguiFlow(node(echo, "a").to(), middlewares=[slow_observer])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        await gate.wait_entered()
        assert (await fetch(flow)).payload == "x"
        assert flow._traces.records["T"].pending == 1  # a's input, released after the event
        assert flow._traces.records["T"].inflight == 0  # the call is over; only its event runs
        assert_accounted(flow)
        gate.open()
        await settled(flow)
    assert [(ev.event_type, ev.trace_pending, ev.trace_inflight) for ev in seen[:2]] == [
        ("node_start", 1, 0),
        ("node_success", 2, 0),
    ]


@pytest.mark.parametrize("policy", [{}, {"timeout_s": 1e6}], ids=["inline", "general"])
async def test_cancel_while_node_start_is_observed_skips_the_node(policy: dict[str, Any]) -> None:
    """Also on the general path (a node timeout sends items there)."""
    gate = Gate()
    events: list[FlowEvent] = []
    calls: list[str] = []

    async def observer(event: FlowEvent) -> None:
        events.append(event)
        if event.event_type == "node_start":
            await gate.pass_()

    async def work(msg: Any, ctx: Any) -> Any:
        calls.append(msg.trace_id)
        return msg

    flow = PenguiFlow(node(work, "a", **policy).to(), middlewares=[observer])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        await gate.wait_entered()
        assert await flow.cancel("T") is True
        gate.open()
        await settled(flow)
    assert calls == []
    kinds = [ev.event_type for ev in events if ev.node_name == "a" and ev.trace_id == "T"]
    assert kinds == ["node_start", "node_trace_cancelled"]
    assert [ev.event_type for ev in events if ev.node_name == "Rookery"] == ["trace_cancel_finish"]


async def test_a_lone_failing_middleware_is_logged_per_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(event: FlowEvent) -> None:
        raise RuntimeError("observer down")

    a, b = node(echo, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(b), b.to(), middlewares=[broken])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        assert (await fetch(flow)).payload == "x"
        await settled(flow)
    errors = [
        r
        for r in caplog.records
        if r.getMessage() == "middleware_error" and r.event_type != "node_cancelled"
    ]
    assert [(r.event_type, r.node_name) for r in errors] == [
        ("node_start", "a"),
        ("node_success", "a"),
        ("node_start", "b"),
        ("node_success", "b"),
    ]
    assert all(r.middleware == repr(broken) for r in errors)
    assert all(r.exception == "RuntimeError('observer down')" for r in errors)


async def test_observers_may_come_and_go_while_the_flow_runs() -> None:
    """No observer, one, two, none again: each message is seen by exactly who was there."""
    first, second = Recorder(), Recorder()
    flow = PenguiFlow(node(echo, "a").to())
    async with running(flow):

        async def through(trace_id: str) -> None:
            await flow.emit(make_msg(trace_id, trace_id=trace_id))
            assert (await fetch(flow)).trace_id == trace_id
            await settled(flow)

        await through("quiet")
        flow.add_middleware(first)
        await through("one")
        flow.add_middleware(second)
        await through("two")
        flow._middlewares.clear()
        await through("none")
    assert {ev.trace_id for ev in first.events} == {"one", "two"}
    assert {ev.trace_id for ev in second.events} == {"two"}
    assert first.types(trace_id="one") == ["node_start", "node_success"]
    assert second.types(trace_id="two") == ["node_start", "node_success"]


async def test_info_logging_alone_logs_node_success_inline(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Logging at INFO observes node_success; node_start (DEBUG) stays unlogged."""
    caplog.set_level(logging.INFO, logger=LOGGER)
    flow = PenguiFlow(node(echo, "a").to())
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        await fetch(flow)
        await settled(flow)
    logged = [(r.event, r.trace_id, r.trace_pending) for r in caplog.records]
    assert ("node_success", "T", 2) in logged
    assert all(message != "node_start" for message, _, _ in logged)
