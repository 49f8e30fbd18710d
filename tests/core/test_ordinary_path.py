"""The worker's ordinary path: items processed inline when nothing observes events.

Most tests attach a recording middleware, so their items run inline with events
(``test_watched_path``). The tests here attach none (and the ``penguiflow`` loggers stay at
their default level), so items take the quiet inline path with its pending-count handoff;
they check that cancellation, failures, retries and accounting behave exactly as on the
general path.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError

from .helpers import Gate, assert_accounted, echo, fetch, make_msg, node, running, settled


def test_nothing_observes_events_here() -> None:
    """Guard: the premise of this module (no logger enabled at INFO)."""
    import logging

    assert not logging.getLogger("penguiflow.core").isEnabledFor(logging.INFO)


async def test_cancel_of_a_running_node_on_the_ordinary_path() -> None:
    """The node sees CancelledError, the worker serves the next trace, nothing is left."""
    gate = Gate()
    seen: list[str] = []

    async def hold(msg: Any, ctx: Any) -> Any:
        if msg.trace_id == "T":
            try:
                await gate.pass_()
            except asyncio.CancelledError:
                seen.append("cancelled")
                raise
        return msg

    flow = PenguiFlow(node(hold, "a").to())
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        await flow.emit(make_msg("y", trace_id="U"))
        await gate.wait_entered()
        assert_accounted(flow)
        assert await flow.cancel("T") is True
        out = await fetch(flow)
        assert out.payload == "y"
        await settled(flow)
    assert seen == ["cancelled"]


async def test_swallowed_cancel_on_the_ordinary_path_drops_the_result() -> None:
    gate = Gate()

    async def stubborn(msg: Any, ctx: Any) -> Any:
        if msg.trace_id == "T":
            try:
                await gate.pass_()
            except asyncio.CancelledError:
                return msg.model_copy(update={"payload": "late"})
        return msg

    flow = PenguiFlow(node(stubborn, "a").to())
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        await gate.wait_entered()
        await flow.cancel("T")
        await flow.emit(make_msg("y", trace_id="U"))
        assert (await fetch(flow)).payload == "y"
        await settled(flow)


@pytest.mark.looptime
async def test_failure_on_the_ordinary_path_retries_then_reports() -> None:
    """The first attempt runs inline; its failure is handed to the general path, which
    backs off on the loop clock, retries and finally delivers a FlowError."""
    calls = 0

    async def flaky(msg: Any, ctx: Any) -> Any:
        nonlocal calls
        calls += 1
        raise ValueError(f"boom {calls}")

    loop = asyncio.get_running_loop()
    flaky_node = node(flaky, "f", max_retries=2, backoff_base=1.0, backoff_mult=3.0)
    flow = PenguiFlow(flaky_node.to(), emit_errors_to_rookery=True)
    async with running(flow):
        started = loop.time()
        await flow.emit(make_msg("x", trace_id="T"))
        err = await fetch(flow)
        elapsed = loop.time() - started
    assert isinstance(err, FlowError)
    assert calls == 3
    assert elapsed == pytest.approx(1.0 + 3.0)
    assert err.code == "NODE_EXCEPTION"
    assert err.message == "Node 'f' raised ValueError: boom 3"
    assert err.metadata["attempt"] == 2
    assert err.metadata["latency_ms"] >= 0.0


async def test_recovery_on_the_ordinary_path_after_one_failure() -> None:
    calls = 0

    async def once(msg: Any, ctx: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("first call fails")
        return msg

    flow = PenguiFlow(node(once, "o", max_retries=1, backoff_base=0.0).to())
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        assert (await fetch(flow)).payload == "x"
        await settled(flow)
    assert calls == 2


async def test_a_flag_set_directly_drops_queued_items_of_its_trace() -> None:
    """Setting a trace's flag by hand (no cancel()) drops its items still to be processed."""
    gate = Gate()

    async def hold(msg: Any, ctx: Any) -> Any:
        if msg.payload == "first":
            await gate.pass_()
        return msg

    flow = PenguiFlow(node(hold, "a").to(node(echo, "b")))
    async with running(flow):
        await flow.emit(make_msg("first", trace_id="T"))
        await gate.wait_entered()
        flow._trace_events["T"].set()
        gate.open()
        await flow.emit(make_msg("other", trace_id="U"))
        assert (await fetch(flow)).payload == "other"
        await settled(flow)


async def test_fan_out_on_the_ordinary_path_counts_every_copy() -> None:
    """A result fanned out to two successors is counted once per copy (the handoff gives
    the input's count to one copy and counts the other)."""
    gates = {"b": Gate(), "c": Gate()}

    def held(name: str) -> Any:
        async def body(msg: Any, ctx: Any) -> Any:
            await gates[name].pass_()
            return msg.model_copy(update={"payload": name})

        return body

    a, b, c = node(echo, "a"), node(held("b"), "b"), node(held("c"), "c")
    flow = PenguiFlow(a.to(b, c), b.to(), c.to())
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="T"))
        await gates["b"].wait_entered()
        await gates["c"].wait_entered()
        assert flow._traces.pending("T") == 2
        assert_accounted(flow)
        gates["b"].open()
        gates["c"].open()
        got = {(await fetch(flow)).payload, (await fetch(flow)).payload}
        await settled(flow)
    assert got == {"b", "c"}
