"""Nodes that misbehave in ways the runtime must absorb as node errors, on both engine paths.

Every test runs with no per-attempt timeout (a node the worker may call inline) and with one
(a node that always takes the general path); the differential fixture also forces every item
down the general path. Waits are bounded in virtual time (``looptime``), so a message that is
lost fails its test at once instead of after the real timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError
from penguiflow.registry import ModelRegistry
from penguiflow.types import Message

from .helpers import Recorder, fetch, make_msg, node, running

if TYPE_CHECKING:
    from collections.abc import Coroutine

TIMEOUTS = pytest.mark.parametrize("timeout_s", [None, 60.0], ids=["no-timeout", "timeout"])


async def _never() -> None:
    await asyncio.Event().wait()


@pytest.mark.looptime
@TIMEOUTS
async def test_a_node_awaiting_a_task_cancelled_elsewhere_fails_and_its_worker_lives(
    timeout_s: float | None,
) -> None:
    """A node awaits a shared task that someone else cancels: a node error, not a dead worker.

    Interleaving: the first call announces it entered and awaits the shared task; the test
    cancels that task, so ``CancelledError`` escapes the node while neither its trace nor its
    worker was cancelled. The retry awaits the (now cancelled) task again and fails at once.
    Then the message's ``FlowError`` arrives, the worker is still alive, and a later message
    is served.
    """
    shared = asyncio.create_task(_never())
    entered = asyncio.Event()
    calls = 0

    async def dedup(msg: Message, ctx: Any) -> Any:
        nonlocal calls
        calls += 1
        if msg.payload == "shared":
            entered.set()
            await shared
        return msg

    rec = Recorder()
    guarded = node(dedup, "dedup", timeout_s=timeout_s, max_retries=1, backoff_base=0.0)
    flow = PenguiFlow(guarded.to(), middlewares=[rec], emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(make_msg("shared", trace_id="t-shared"))
        await asyncio.wait_for(entered.wait(), 5.0)
        shared.cancel()
        error = await fetch(flow)
        assert isinstance(error, FlowError)
        assert (error.code, error.node_name, error.trace_id) == (
            "NODE_EXCEPTION",
            "dedup",
            "t-shared",
        )
        assert error.message == "Node 'dedup' raised CancelledError: "
        assert isinstance(error.unwrap(), asyncio.CancelledError)
        assert error.metadata["attempt"] == 1
        assert calls == 2  # retried once, per policy
        assert rec.types(trace_id="t-shared").count("node_error") == 2
        assert "node_trace_cancelled" not in rec.types()
        assert "node_cancelled" not in rec.types()
        health = flow.health()
        assert (health.status, health.nodes[0].workers_alive, health.nodes[0].restarts) == (
            "ok",
            1,
            0,
        )
        await flow.emit(make_msg("later", trace_id="t-later"))
        later = await fetch(flow)
        assert isinstance(later, Message) and later.payload == "later"
    assert shared.cancelled()


@TIMEOUTS
async def test_a_trace_cancel_while_awaiting_a_shared_task_stays_a_trace_cancel(
    timeout_s: float | None,
) -> None:
    """The worker's own mark wins: cancelling the trace is not turned into a node error.

    The node awaits an event while the test cancels its trace; the node ends with
    ``node_trace_cancelled`` and no ``FlowError``, and the worker serves the next message.
    """
    entered = asyncio.Event()

    async def waiter(msg: Message, ctx: Any) -> Any:
        if msg.payload == "wait":
            entered.set()
            await asyncio.Event().wait()
        return msg

    rec = Recorder()
    flow = PenguiFlow(
        node(waiter, "waiter", timeout_s=timeout_s).to(),
        middlewares=[rec],
        emit_errors_to_rookery=True,
    )
    async with running(flow):
        await flow.emit(make_msg("wait", trace_id="t-wait"))
        await asyncio.wait_for(entered.wait(), 5.0)
        assert await flow.cancel("t-wait")
        await rec.wait_for("node_trace_cancelled", trace_id="t-wait")
        await flow.emit(make_msg("next", trace_id="t-next"))
        out = await fetch(flow)
        assert isinstance(out, Message) and out.payload == "next"
    assert rec.select("node_error") == [] and rec.select("node_failed") == []


@TIMEOUTS
async def test_stop_while_a_node_awaits_a_shared_task_still_stops_the_worker(
    timeout_s: float | None,
) -> None:
    """``stop()`` cancels the worker's task: that cancellation propagates, no node error."""
    shared = asyncio.create_task(_never())
    entered = asyncio.Event()

    async def dedup(msg: Message, ctx: Any) -> Any:
        entered.set()
        await asyncio.shield(shared)
        return msg

    rec = Recorder()
    flow = PenguiFlow(node(dedup, "dedup", timeout_s=timeout_s).to(), middlewares=[rec])
    flow.run()
    await flow.emit(make_msg("x", trace_id="t-x"))
    await asyncio.wait_for(entered.wait(), 5.0)
    await flow.stop()
    shared.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await shared
    assert "node_cancelled" in rec.types()
    assert rec.select("node_error") == [] and rec.select("node_failed") == []


@pytest.mark.looptime
@TIMEOUTS
@pytest.mark.parametrize("validate", ["none", "both"])
async def test_a_node_returning_a_coroutine_it_never_awaited_fails(
    timeout_s: float | None, validate: str
) -> None:
    """A node that forgot an ``await`` and returned ``lookup(...)`` itself: a node error.

    The coroutine is not delivered as the node's result (nor validated against its output
    model): each attempt fails with a ``TypeError`` naming the node, the retry likewise, and
    every coroutine returned is closed, so Python never warns that it was not awaited (the
    suite turns that warning into an error).
    """
    returned: list[Coroutine[Any, Any, Any]] = []

    async def lookup(msg: Any) -> Any:
        return msg

    async def forgetful(msg: Any, ctx: Any) -> Any:
        coro = lookup(msg)
        returned.append(coro)
        return coro

    registry = ModelRegistry()
    registry.register("forgetful", Message, Message)
    guarded = node(
        forgetful,
        "forgetful",
        validate=validate,
        timeout_s=timeout_s,
        max_retries=1,
        backoff_base=0.0,
    )
    flow = PenguiFlow(guarded.to(), emit_errors_to_rookery=True)
    async with running(flow, registry=registry):
        await flow.emit(make_msg({"x": 1}, trace_id="t-1"))
        error = await fetch(flow)
        assert flow.health().nodes[0].workers_alive == 1
    assert isinstance(error, FlowError)
    assert (error.code, error.node_name, error.exception_type) == (
        "NODE_EXCEPTION",
        "forgetful",
        "TypeError",
    )
    assert error.message == (
        "Node 'forgetful' raised TypeError: Node 'forgetful' returned the coroutine "
        "'test_a_node_returning_a_coroutine_it_never_awaited_fails.<locals>.lookup', which was "
        "never awaited (a missing 'await' in the node?)"
    )
    assert error.metadata["attempt"] == 1
    assert len(returned) == 2
    assert all(inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED for coro in returned)
