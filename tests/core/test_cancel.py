"""Spec section 7.12 (``cancel``) and the cancellation cases of 7.15 (subflows).

Scenario shape used throughout: one node whose invocations block on per-payload gates, so the
test decides exactly which trace is running and which items are still queued.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.core import PenguiFlow, TraceCancelled, call_playbook

from .helpers import (
    Gate,
    Recorder,
    echo,
    fetch,
    make_msg,
    node,
    rookery_empty,
    running,
    start,
    within,
)

if TYPE_CHECKING:
    from penguiflow.types import Message


class GatedNode:
    """A node body that blocks on the gate of each payload listed in ``gates``."""

    def __init__(self, *held: Any) -> None:
        self.gates = {p: Gate() for p in held}
        self.seen: list[Any] = []
        self.outcome: dict[Any, str] = {}

    async def __call__(self, msg: Message, ctx: Any) -> Any:
        self.seen.append(msg.payload)
        gate = self.gates.get(msg.payload)
        if gate is not None:
            try:
                await gate.pass_()
            except asyncio.CancelledError:
                self.outcome[msg.payload] = "cancelled"
                raise
            self.outcome[msg.payload] = "finished"
        return msg


async def test_cancel_requires_a_running_flow() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    with pytest.raises(RuntimeError) as info:
        await flow.cancel("t1")
    assert str(info.value) == "PenguiFlow is not running"


async def test_cancel_of_an_unknown_or_finished_trace_returns_false() -> None:
    rec = Recorder()
    flow = PenguiFlow(node(echo, "a").to(), middlewares=[rec])
    async with running(flow):
        assert await flow.cancel("never-seen") is False
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
        await flow.emit(make_msg("sentinel", trace_id="t2"))
        await fetch(flow)
        assert await flow.cancel("t1") is False
    assert rec.select("trace_cancel_start") == []


async def test_cancel_running_and_queued_items_while_other_traces_continue() -> None:
    """Node a runs T1 (blocked); U1, T2, U2 wait behind it. Cancelling T stops T1; T2 is
    dropped when the worker reaches it; U1, U2 still come out in order; the worker survives."""
    body = GatedNode("T1")
    rec = Recorder()
    a = node(body.__call__, "a", max_retries=2, backoff_base=0.0)
    flow = PenguiFlow(a.to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("T1", trace_id="T"))
        await body.gates["T1"].wait_entered()
        await flow.emit(make_msg("U1", trace_id="U"))
        await flow.emit(make_msg("T2", trace_id="T"))
        await flow.emit(make_msg("U2", trace_id="U"))
        assert await flow.cancel("T") is True
        outs = [await fetch(flow), await fetch(flow)]
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        assert "T" not in flow._trace_events
        assert rookery_empty(flow)
    assert [o.payload for o in outs] == ["U1", "U2"]
    assert body.seen == ["T1", "U1", "U2"]
    assert body.outcome == {"T1": "cancelled"}
    assert rec.types(trace_id="T") == [
        "node_start",
        "trace_cancel_start",
        "node_trace_cancelled",
        "trace_cancel_drop",
        "trace_cancel_finish",
    ]

    start_ev = rec.select("trace_cancel_start")[0]
    assert (start_ev.node_name, start_ev.node_id) == ("OpenSea", "OpenSea")
    assert start_ev.outgoing_edges == 1
    assert dict(start_ev.extra) == {"pending": 2}
    assert start_ev.trace_cancelled is True
    assert start_ev.trace_pending is not None
    assert start_ev.trace_pending >= 1
    assert start_ev.trace_inflight >= 1
    assert (start_ev.attempt, start_ev.latency_ms) == (0, None)

    finish = rec.select("trace_cancel_finish")[0]
    assert (finish.node_name, finish.node_id) == ("Rookery", "Rookery")
    assert (finish.trace_pending, finish.trace_inflight, finish.trace_cancelled) == (0, 0, False)
    assert dict(finish.extra) == {}

    dropped = rec.select("node_trace_cancelled")[0]
    assert (dropped.node_name, dropped.attempt, dropped.latency_ms) == ("a", 0, None)


async def test_cancel_of_queued_items_only() -> None:
    body = GatedNode("U1")
    rec = Recorder()
    flow = PenguiFlow(node(body.__call__, "a").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("U1", trace_id="U"))
        await body.gates["U1"].wait_entered()
        await flow.emit(make_msg("T1", trace_id="T"))
        await flow.emit(make_msg("T2", trace_id="T"))
        assert await flow.cancel("T") is True
        assert flow._contexts[flow._nodes[0]].queue_depth_in() == 2  # dropped when reached
        body.gates["U1"].open()
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        assert "T" not in flow._trace_events
        assert await flow.cancel("T") is False
        assert (await fetch(flow)).payload == "U1"
    assert body.seen == ["U1"]
    assert len(rec.select("trace_cancel_drop", trace_id="T")) == 2
    assert rec.select("trace_cancel_start")[0].extra["pending"] == 2
    assert len(rec.select("trace_cancel_start")) == 1
    assert len(rec.select("trace_cancel_finish")) == 1
    assert rec.select("node_trace_cancelled") == []


async def test_second_cancel_while_pending_emits_start_once() -> None:
    """Cancel a running T twice in a row: one ``trace_cancel_start``, one finish."""
    body = GatedNode("T1")
    rec = Recorder()
    flow = PenguiFlow(node(body.__call__, "a").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("T1", trace_id="T"))
        await body.gates["T1"].wait_entered()
        first = await flow.cancel("T")
        second = await flow.cancel("T")
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        assert await flow.cancel("T") is False
    assert first is True
    assert second in (True, False)  # True if T's invocation had not ended yet
    assert len(rec.select("trace_cancel_start")) == 1
    assert len(rec.select("trace_cancel_finish")) == 1
    assert len(rec.select("node_trace_cancelled")) == 1


async def test_a_cancelled_trace_id_starts_fresh_afterwards() -> None:
    body = GatedNode("T1")
    rec = Recorder()
    flow = PenguiFlow(node(body.__call__, "a").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("T1", trace_id="T"))
        await body.gates["T1"].wait_entered()
        assert await flow.cancel("T") is True
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        await flow.emit(make_msg("again", trace_id="T"))
        out = await fetch(flow)
    assert (out.payload, out.trace_id) == ("again", "T")


async def test_cancel_does_not_retry_or_report_an_error() -> None:
    body = GatedNode("T1")
    rec = Recorder()
    flow = PenguiFlow(
        node(body.__call__, "a", max_retries=3, backoff_base=0.0).to(),
        emit_errors_to_rookery=True,
        middlewares=[rec],
    )
    async with running(flow):
        await flow.emit(make_msg("T1", trace_id="T"))
        await body.gates["T1"].wait_entered()
        await flow.cancel("T")
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        await flow.emit(make_msg("next", trace_id="U"))
        assert (await fetch(flow)).payload == "next"
    types = rec.types(trace_id="T")
    for absent in ("node_error", "node_retry", "node_failed", "node_success"):
        assert absent not in types
    assert types.count("node_start") == 1


async def test_cancel_while_blocked_on_a_full_downstream_floe() -> None:
    """a's put into b's full floe is cancelled; nothing of T reaches b."""
    b_body = GatedNode("U1")
    rec = Recorder()
    a, b = node(echo, "a"), node(b_body.__call__, "b")
    flow = PenguiFlow(a.to(b), queue_maxsize=1, middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("U1", trace_id="U"))
        await b_body.gates["U1"].wait_entered()
        await flow.emit(make_msg("U2", trace_id="U"))  # fills a -> b once a forwards it
        await rec.wait_for("node_success", node_name="a", trace_id="U", count=2)
        await flow.emit(make_msg("T1", trace_id="T"))  # a blocks putting T1 into b's floe
        await rec.wait_for("node_start", node_name="a", trace_id="T")
        assert await flow.cancel("T") is True
        b_body.gates["U1"].open()
        outs = [await fetch(flow), await fetch(flow)]
        await rec.wait_for("trace_cancel_finish", trace_id="T")
    assert [o.payload for o in outs] == ["U1", "U2"]
    assert b_body.seen == ["U1", "U2"]
    assert [ev.node_name for ev in rec.select("node_start", trace_id="T")] == ["a"]


@pytest.mark.looptime
async def test_cancel_during_retry_backoff() -> None:
    loop = asyncio.get_running_loop()
    calls: list[float] = []

    async def fail(msg: Any, ctx: Any) -> Any:
        calls.append(loop.time())
        raise RuntimeError("x")

    rec = Recorder()
    flow = PenguiFlow(
        node(fail, "f", max_retries=3, backoff_base=10.0).to(),
        emit_errors_to_rookery=True,
        middlewares=[rec],
    )
    async with running(flow):
        t0 = loop.time()
        await flow.emit(make_msg("x", trace_id="T"))
        await rec.wait_for("node_retry", trace_id="T")
        assert await flow.cancel("T") is True
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        assert loop.time() - t0 < 10.0
        assert rookery_empty(flow)
    assert len(calls) == 1
    assert rec.types(trace_id="T")[-2:] == ["node_trace_cancelled", "trace_cancel_finish"]
    assert "node_failed" not in rec.types(trace_id="T")


# A node timeout sends every item down the worker's general path; without one, items run
# inline. Long enough never to expire within a test.
PATHS = {"inline": {}, "general": {"timeout_s": 1e6}}


@pytest.mark.parametrize("path", list(PATHS))
async def test_node_that_swallows_the_cancel_still_counts_as_cancelled(path: str) -> None:
    """A node that catches its ``CancelledError`` and returns: the message counts as
    cancelled, so its late result is not routed."""
    gate = Gate()

    async def stubborn(msg: Any, ctx: Any) -> Any:
        try:
            await gate.pass_()
        except asyncio.CancelledError:
            return "swallowed"
        return msg

    rec = Recorder()
    flow = PenguiFlow(node(stubborn, "s", **PATHS[path]).to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        await gate.wait_entered()
        await flow.cancel("T")
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        gate.open()
        await flow.emit(make_msg("y", trace_id="U"))
        out = await fetch(flow)
        assert rookery_empty(flow)
    assert out.payload == "y"
    assert "node_trace_cancelled" in rec.types(trace_id="T")
    assert "node_success" not in rec.types(trace_id="T")


async def test_cancel_while_a_retry_is_observed_stops_before_the_next_attempt() -> None:
    """The trace is cancelled while a middleware handles ``node_retry`` (outside the
    cancellable scope): the next attempt does not start, and nothing is reported as failed."""
    gate = Gate()
    calls: list[int] = []

    async def fail(msg: Any, ctx: Any) -> Any:
        calls.append(1)
        raise RuntimeError("x")

    rec = Recorder()

    async def observer(event: Any) -> None:
        await rec(event)
        if event.event_type == "node_retry":
            await gate.pass_()

    flow = PenguiFlow(node(fail, "f", max_retries=2, backoff_base=0.0).to(), middlewares=[observer])
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        await gate.wait_entered()
        assert await flow.cancel("T") is True
        gate.open()
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        assert rookery_empty(flow)
    assert calls == [1]
    assert rec.types(trace_id="T") == [
        "node_start",
        "node_error",
        "node_retry",
        "trace_cancel_start",
        "node_trace_cancelled",
        "trace_cancel_finish",
    ]


# --------------------------------------------------------------------------- our decision


async def test_waiting_trace_scoped_fetch_raises_trace_cancelled() -> None:
    """Beyond spec: ``fetch(trace_id=T)`` raises ``TraceCancelled`` when T is cancelled."""
    body = GatedNode("T1")
    flow = PenguiFlow(node(body.__call__, "a").to())
    async with running(flow):
        await flow.emit(make_msg("T1"), trace_id="T")
        await body.gates["T1"].wait_entered()
        waiter = await start(flow.fetch(trace_id="T"))
        assert not waiter.done()
        assert await flow.cancel("T") is True
        with pytest.raises(TraceCancelled) as info:
            await within(waiter)
        assert info.value.trace_id == "T"
        # The lock is free: a new roundtrip of T works.
        await within(flow.emit(make_msg("again"), trace_id="T"))
        assert (await fetch(flow, trace_id="T")).payload == "again"


async def test_cancel_releases_a_blocked_roundtrip_lock() -> None:
    """U holds the node; T1 is queued under T's roundtrip lock and T2 waits for that lock.
    Cancelling T lets T2 in; T2 joins a trace still cancelled (T1 is not dropped yet), so it
    is dropped too. Once T has ended, T3 starts it afresh."""
    body = GatedNode("U1")
    rec = Recorder()
    flow = PenguiFlow(node(body.__call__, "a").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("U1", trace_id="U"))
        await body.gates["U1"].wait_entered()
        await flow.emit(make_msg("T1"), trace_id="T")
        second = await start(flow.emit(make_msg("T2"), trace_id="T"))
        assert not second.done()
        assert await flow.cancel("T") is True
        await within(second)
        body.gates["U1"].open()
        assert (await fetch(flow)).payload == "U1"
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        await flow.emit(make_msg("T3"), trace_id="T")
        assert (await fetch(flow, trace_id="T")).payload == "T3"
    assert body.seen == ["U1", "T3"]


# --------------------------------------------------------------------------- subflows


def playbook(body: Any, created: list[PenguiFlow]) -> Any:
    def factory() -> tuple[PenguiFlow, None]:
        sub = PenguiFlow(node(body.__call__ if isinstance(body, GatedNode) else body, "sub").to())
        created.append(sub)
        return sub, None

    return factory


async def test_cancel_reaches_a_running_subflow_and_the_parent_keeps_serving() -> None:
    sub_body = GatedNode("T1")
    created: list[PenguiFlow] = []
    outcome: list[str] = []

    async def parent(msg: Message, ctx: Any) -> Any:
        if msg.payload == "T1":
            try:
                return await ctx.call_playbook(playbook(sub_body, created), msg)
            except asyncio.CancelledError:
                outcome.append("parent-cancelled")
                raise
        return msg

    rec = Recorder()
    flow = PenguiFlow(node(parent, "p").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("T1", trace_id="T"))
        await sub_body.gates["T1"].wait_entered()
        assert await flow.cancel("T") is True
        await rec.wait_for("node_trace_cancelled", trace_id="T")
        sub = created[0]
        assert sub._running is False
        assert not sub._tasks
        await flow.emit(make_msg("U1", trace_id="U"))
        assert (await fetch(flow)).payload == "U1"
    assert sub_body.outcome == {"T1": "cancelled"}
    assert outcome == ["parent-cancelled"]


async def test_subflow_of_an_already_cancelled_trace_never_runs() -> None:
    calls: list[Any] = []

    async def sub_body(msg: Any, ctx: Any) -> Any:
        calls.append(msg)
        return msg

    created: list[PenguiFlow] = []
    parent = PenguiFlow(node(echo, "a").to())
    async with running(parent):
        flag = asyncio.Event()
        flag.set()
        parent._trace_events["T"] = flag
        with pytest.raises(TraceCancelled) as info:
            await within(
                call_playbook(
                    playbook(sub_body, created), make_msg("x", trace_id="T"), runtime=parent
                )
            )
        assert info.value.trace_id == "T"
        assert str(info.value) == "trace cancelled: T"
    assert calls == []
    sub = created[0]
    assert sub._running is False
    assert not sub._tasks


async def test_parent_trace_cancelled_before_the_node_calls_the_subflow() -> None:
    """The parent node waits at a gate; T's flag is set directly (no cancel of the running
    invocation), then the node calls the subflow, which refuses with ``TraceCancelled``.
    A later trace U goes through the subflow normally."""
    gate = Gate()
    created: list[PenguiFlow] = []
    calls: list[Any] = []
    raised: list[TraceCancelled] = []

    async def sub_body(msg: Any, ctx: Any) -> Any:
        calls.append(msg.trace_id)
        return msg

    async def parent(msg: Message, ctx: Any) -> Any:
        await gate.pass_()
        try:
            return await ctx.call_playbook(playbook(sub_body, created), msg)
        except TraceCancelled as exc:
            raised.append(exc)
            return None

    flow = PenguiFlow(node(parent, "p").to())
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        await gate.wait_entered()
        flow._trace_events["T"].set()
        gate.open()
        await flow.emit(make_msg("y", trace_id="U"))
        out = await fetch(flow)
    assert out == "y"
    assert [exc.trace_id for exc in raised] == ["T"]
    assert calls == ["U"]
    assert len(created) == 2
    assert all(not sub._running and not sub._tasks for sub in created)


async def test_cancel_purges_results_waiting_in_the_dispatcher() -> None:
    """In dispatcher mode a finished but unfetched result of T is purged by ``cancel``."""
    rec = Recorder()
    flow = PenguiFlow(node(echo, "a").to(), middlewares=[rec])
    async with running(flow):
        await flow.emit(make_msg("scoped"), trace_id="S")
        await fetch(flow, trace_id="S")  # the dispatcher is now running
        await flow.emit(make_msg("T1", trace_id="T"))
        await rec.wait_for("node_success", trace_id="T")
        assert await flow.cancel("T") is True
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        await flow.emit(make_msg("U1", trace_id="U"))
        assert (await fetch(flow)).payload == "U1"
        assert rookery_empty(flow)


async def test_node_that_swallows_the_cancel_then_raises_is_not_retried_nor_reported() -> None:
    """A node that catches its trace's ``CancelledError`` and then raises: the trace is
    cancelled, so there is no retry, no ``node_failed`` and no ``FlowError`` at the Rookery."""
    gate = Gate()
    calls = 0

    async def stubborn(msg: Any, ctx: Any) -> Any:
        nonlocal calls
        calls += 1
        try:
            await gate.pass_()
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None
        return msg

    rec = Recorder()
    flaky = node(stubborn, "s", max_retries=3, backoff_base=0.0)
    flow = PenguiFlow(flaky.to(), middlewares=[rec], emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        await gate.wait_entered()
        await flow.cancel("T")
        await rec.wait_for("trace_cancel_finish", trace_id="T")
        assert rookery_empty(flow)
    assert calls == 1
    types = rec.types(trace_id="T")
    assert "node_trace_cancelled" in types
    assert "node_retry" not in types
    assert "node_failed" not in types
