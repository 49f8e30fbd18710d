"""A node's policy is read when the flow starts: a change takes effect at the next ``run()``.

Every field alike, ``concurrency`` and ``breaker`` included; a breaker keeps its state across
runs while its policy is unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError
from penguiflow.node import BreakerPolicy, NodePolicy

from .helpers import fetch, make_msg, node, running


async def test_a_policy_changed_while_running_waits_for_the_next_run() -> None:
    calls: list[str] = []

    async def flaky(msg: Any, ctx: Any) -> Any:
        calls.append(msg.payload)
        raise ValueError("nope")

    a = node(flaky, "a")
    flow = PenguiFlow(a.to(), emit_errors_to_rookery=True)
    async with running(flow):
        a.policy.max_retries = 2  # mutated in place while running: not seen by this run
        a.policy = NodePolicy(validate="none", max_retries=3)  # replaced: not seen either
        await flow.emit(make_msg("first", trace_id="t1"))
        assert isinstance(await fetch(flow), FlowError)
    assert calls == ["first"]
    a.policy = NodePolicy(validate="none", max_retries=1, backoff_base=0.0)
    async with running(flow):
        await flow.emit(make_msg("second", trace_id="t2"))
        assert isinstance(await fetch(flow), FlowError)
    assert calls == ["first", "second", "second"]


async def test_concurrency_changes_at_the_next_run() -> None:
    inside = 0
    peak = 0
    gate = asyncio.Event()

    async def hold(msg: Any, ctx: Any) -> Any:
        nonlocal inside, peak
        inside += 1
        peak = max(peak, inside)
        await gate.wait()
        inside -= 1
        return msg

    a = node(hold, "a")
    flow = PenguiFlow(a.to())
    async with running(flow):
        a.policy.concurrency = 3
        assert [n.workers for n in flow.health().nodes] == [1]
    async with running(flow):
        assert [n.workers for n in flow.health().nodes] == [3]
        for i in range(3):
            await flow.emit(make_msg(i, trace_id=f"t{i}"))
        while inside < 3:
            await asyncio.sleep(0)
        gate.set()
        for _ in range(3):
            await fetch(flow)
    assert peak == 3


async def test_a_breaker_keeps_its_state_while_its_policy_is_unchanged() -> None:
    async def fail(msg: Any, ctx: Any) -> Any:
        raise ValueError("down")

    policy = BreakerPolicy(failures=1, cooldown_s=3600.0)
    a = node(fail, "a", breaker=policy)
    flow = PenguiFlow(a.to(), emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(make_msg("x", trace_id="t1"))
        await fetch(flow)
        assert flow.health().nodes[0].breaker == "open"
    async with running(flow):
        assert flow.health().nodes[0].breaker == "open"  # same policy: same breaker
    a.policy.breaker = BreakerPolicy(failures=5, cooldown_s=3600.0)
    async with running(flow):
        assert flow.health().nodes[0].breaker == "closed"  # a new policy starts closed
