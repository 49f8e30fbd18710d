"""Circuit breakers: open after failures, reject fast, half-open after a cool-down, close.

Time-driven tests run under ``looptime``: the breaker reads the loop's clock, which is virtual
here, so cool-downs cost no real time and the simulated time can be asserted.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from core.helpers import Recorder, fetch, make_msg, node, running

from penguiflow._runtime.breaker import Breaker
from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError
from penguiflow.node import BreakerPolicy


class Switch:
    """A node body that fails while ``failing`` is set, and counts its calls."""

    def __init__(self) -> None:
        self.failing = True
        self.calls = 0

    async def __call__(self, msg: Any, ctx: Any) -> Any:
        self.calls += 1
        if self.failing:
            raise RuntimeError(f"down ({msg.payload})")
        return msg


def breaker_flow(switch: Switch, rec: Recorder, **policy: Any) -> PenguiFlow:
    guarded = node(switch.__call__, "svc", breaker=BreakerPolicy(**policy))
    return PenguiFlow(guarded.to(), middlewares=[rec], emit_errors_to_rookery=True)


async def send(flow: PenguiFlow, payload: Any) -> Any:
    await flow.emit(make_msg(payload, trace_id=f"t-{payload}"))
    return await fetch(flow)


def transitions(rec: Recorder) -> list[str]:
    return [ev.event_type for ev in rec.events if ev.event_type.startswith("circuit_")]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("failures", 0),
        ("window", 0),
        ("half_open_calls", 0),
        ("cooldown_s", -1.0),
        ("failure_ratio", 0.0),
        ("failure_ratio", 1.5),
    ],
)
def test_breaker_policy_rejects_bad_values(field: str, value: Any) -> None:
    with pytest.raises(ValueError, match=field):
        BreakerPolicy(**{field: value})


@pytest.mark.looptime
async def test_opens_rejects_half_opens_and_closes() -> None:
    switch, rec = Switch(), Recorder()
    flow = breaker_flow(switch, rec, failures=2, cooldown_s=30.0)
    loop = asyncio.get_running_loop()
    async with running(flow):
        first, second = await send(flow, 1), await send(flow, 2)
        assert [first.code, second.code] == ["NODE_EXCEPTION", "NODE_EXCEPTION"]
        assert transitions(rec) == ["circuit_open"]
        health = flow.health()
        assert health.nodes[0].breaker == "open" and health.status == "failing"
        assert health.nodes[0].last_error is not None
        rejected = await send(flow, 3)
        assert isinstance(rejected, FlowError) and rejected.code == "CIRCUIT_OPEN"
        assert rejected.message == "Node 'svc' circuit is open; the call was rejected"
        assert rejected.metadata["retry_after_s"] == pytest.approx(30.0)
        assert switch.calls == 2  # the node was not called
        opened = loop.time()
        await asyncio.sleep(30.0)  # the cool-down, in virtual time
        switch.failing = False
        trial = await send(flow, 4)
        assert trial.payload == 4
        assert loop.time() - opened == pytest.approx(30.0)
        assert transitions(rec) == ["circuit_open", "circuit_half_open", "circuit_closed"]
        assert flow.health().nodes[0].breaker == "closed"
        assert flow.health().status == "ok"


@pytest.mark.looptime
async def test_a_failed_trial_opens_it_again() -> None:
    switch, rec = Switch(), Recorder()
    flow = breaker_flow(switch, rec, failures=1, cooldown_s=5.0)
    async with running(flow):
        await send(flow, 1)
        await asyncio.sleep(5.0)
        trial = await send(flow, 2)
        assert trial.code == "NODE_EXCEPTION"
        assert transitions(rec) == ["circuit_open", "circuit_half_open", "circuit_open"]
        assert (await send(flow, 3)).code == "CIRCUIT_OPEN"
    assert switch.calls == 2


async def test_failures_count_after_retries() -> None:
    """A message retried twice and failing is one failure for the breaker."""
    switch, rec = Switch(), Recorder()
    guarded = node(
        switch.__call__, "svc", max_retries=2, backoff_base=0.0, breaker=BreakerPolicy(failures=2)
    )
    flow = PenguiFlow(guarded.to(), middlewares=[rec], emit_errors_to_rookery=True)
    async with running(flow):
        await send(flow, 1)
        assert switch.calls == 3 and transitions(rec) == []
        await send(flow, 2)
        assert transitions(rec) == ["circuit_open"]


async def test_failure_ratio_over_a_window() -> None:
    """failure_ratio=0.5 over 4 messages: F S F S opens at the fourth, not before."""
    rec = Recorder()
    outcomes = iter([False, True, False, True])

    async def body(msg: Any, ctx: Any) -> Any:
        if not next(outcomes):
            raise RuntimeError("no")
        return msg

    guarded = node(body, "svc", breaker=BreakerPolicy(failures=99, failure_ratio=0.5, window=4))
    flow = PenguiFlow(guarded.to(), middlewares=[rec], emit_errors_to_rookery=True)
    async with running(flow):
        for i in range(3):
            await send(flow, i)
            assert transitions(rec) == []
        await send(flow, 3)
        assert transitions(rec) == ["circuit_open"]


def test_outcomes_of_calls_admitted_before_a_transition_are_ignored() -> None:
    breaker = Breaker(BreakerPolicy(failures=1, cooldown_s=1.0))
    early, _ = breaker.admit(0.0)
    late, _ = breaker.admit(0.0)
    assert early is not None and late is not None
    assert breaker.record(early, ok=False, now=0.0) == "circuit_open"
    # ``late`` was admitted while closed; its success must not touch the open breaker.
    assert breaker.record(late, ok=True, now=0.5) is None
    assert breaker.state == "open"
    trial, event = breaker.admit(2.0)
    assert event == "circuit_half_open" and trial is not None
    assert breaker.admit(2.0) == (None, None)  # one trial at a time (half_open_calls=1)
    assert breaker.record(trial, ok=True, now=2.1) == "circuit_closed"
