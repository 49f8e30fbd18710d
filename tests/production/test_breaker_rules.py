"""Circuit-breaker rules ``test_breaker`` leaves open: what resets the failure count, stale
tickets, and cancelled messages (``BreakerPolicy``).

Every test drives a real flow, so the rules are checked through ``attempt.execute`` (which
hands the breaker its tickets and outcomes), not only on the ``Breaker`` object. Cool-downs run
under ``looptime``: the breaker reads the loop's clock, which is virtual there.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from core.helpers import Gate, Recorder, fetch, make_msg, node, running

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError
from penguiflow.node import BreakerPolicy


class Script:
    """A node body: payloads in ``failing`` raise, payloads with a gate wait at it first."""

    def __init__(self, *, failing: set[Any] | None = None, gated: tuple[Any, ...] = ()) -> None:
        self.failing = set(failing or ())
        self.gates = {payload: Gate() for payload in gated}
        self.calls: list[Any] = []

    async def __call__(self, msg: Any, ctx: Any) -> Any:
        self.calls.append(msg.payload)
        gate = self.gates.get(msg.payload)
        if gate is not None:
            await gate.pass_()
        if msg.payload in self.failing:
            raise RuntimeError(f"down ({msg.payload})")
        return msg


def breaker_flow(script: Script, rec: Recorder, *, concurrency: int = 1, **policy: Any) -> Any:
    guarded = node(script.__call__, "svc", concurrency=concurrency, breaker=BreakerPolicy(**policy))
    return PenguiFlow(guarded.to(), middlewares=[rec], emit_errors_to_rookery=True)


async def send(flow: PenguiFlow, payload: Any) -> Any:
    """Emit ``payload`` on its own trace and return what reaches the Rookery."""
    await flow.emit(make_msg(payload, trace_id=f"t-{payload}"))
    return await fetch(flow)


def transitions(rec: Recorder) -> list[str]:
    return [ev.event_type for ev in rec.events if ev.event_type.startswith("circuit_")]


def outcome(item: Any) -> str:
    """``"ok"`` for a result that went through the node, else the ``FlowError`` code."""
    return item.code if isinstance(item, FlowError) else "ok"


async def test_a_success_resets_the_consecutive_failure_count() -> None:
    """failures=2: F S F leaves it closed (the success reset the count); one more F opens."""
    script, rec = Script(failing={"f1", "f2", "f3"}), Recorder()
    flow = breaker_flow(script, rec, failures=2)
    async with running(flow):
        seen = [outcome(await send(flow, p)) for p in ("f1", "s1", "f2")]
        assert seen == ["NODE_EXCEPTION", "ok", "NODE_EXCEPTION"]
        assert transitions(rec) == []
        assert flow.health().nodes[0].breaker == "closed"
        assert outcome(await send(flow, "f3")) == "NODE_EXCEPTION"
        await rec.wait_for("circuit_open")
        assert outcome(await send(flow, "s2")) == "CIRCUIT_OPEN"
    assert script.calls == ["f1", "s1", "f2", "f3"]


@pytest.mark.looptime
async def test_closing_from_half_open_resets_the_count_and_the_ratio_window() -> None:
    """failures=2, or 2 of the last 3 failed. F F opens it (count 2, window [F, F]); after
    the cool-down a successful trial closes it. The next failure then leaves it closed: the
    count restarts at 1 (not 3) and the window holds [F] (not [F, F, F])."""
    script, rec = Script(failing={"f1", "f2", "f3", "f4"}), Recorder()
    flow = breaker_flow(script, rec, failures=2, failure_ratio=0.6, window=3, cooldown_s=10.0)
    async with running(flow):
        assert outcome(await send(flow, "f1")) == "NODE_EXCEPTION"
        assert outcome(await send(flow, "f2")) == "NODE_EXCEPTION"
        await rec.wait_for("circuit_open")
        await asyncio.sleep(10.0)  # the cool-down, in virtual time
        assert outcome(await send(flow, "trial")) == "ok"
        await rec.wait_for("circuit_closed")
        assert outcome(await send(flow, "f3")) == "NODE_EXCEPTION"
        assert transitions(rec) == ["circuit_open", "circuit_half_open", "circuit_closed"]
        # The count goes on from there: the next failure in a row opens it.
        assert outcome(await send(flow, "f4")) == "NODE_EXCEPTION"
        await rec.wait_for("circuit_open", count=2)
        assert outcome(await send(flow, "s1")) == "CIRCUIT_OPEN"
    assert script.calls == ["f1", "f2", "trial", "f3", "f4"]


@pytest.mark.looptime
async def test_a_call_admitted_before_a_transition_cannot_close_the_breaker() -> None:
    """Two workers share the breaker (failures=1, one half-open trial).

    Interleaving: ``slow`` is admitted while closed and holds worker 1 at its gate; ``bad``
    fails on worker 2 and opens the breaker. After the cool-down ``trial`` is admitted
    (half-open) and holds worker 2. Then ``slow`` finishes successfully: its ticket is from
    before the opening, so it must not count as the trial nor close the breaker. ``probe``
    goes to worker 1 once ``slow`` is fully done (worker 2 is still held), and is rejected
    because the one trial slot is taken. Finally ``trial`` succeeds and closes it.
    """
    script, rec = Script(failing={"bad"}, gated=("slow", "trial")), Recorder()
    flow = breaker_flow(script, rec, concurrency=2, failures=1, cooldown_s=5.0)
    async with running(flow):
        await flow.emit(make_msg("slow", trace_id="t-slow"))
        await script.gates["slow"].wait_entered()
        assert outcome(await send(flow, "bad")) == "NODE_EXCEPTION"
        await rec.wait_for("circuit_open")
        await asyncio.sleep(5.0)
        await flow.emit(make_msg("trial", trace_id="t-trial"))
        await script.gates["trial"].wait_entered()
        assert transitions(rec) == ["circuit_open", "circuit_half_open"]
        script.gates["slow"].open()
        assert (await fetch(flow)).payload == "slow"
        probe = await send(flow, "probe")
        assert isinstance(probe, FlowError) and probe.code == "CIRCUIT_OPEN"
        assert probe.metadata["breaker"] == "half_open"
        assert transitions(rec) == ["circuit_open", "circuit_half_open"]
        script.gates["trial"].open()
        assert (await fetch(flow)).payload == "trial"
        await rec.wait_for("circuit_closed")
        assert outcome(await send(flow, "after")) == "ok"
    assert script.calls == ["slow", "bad", "trial", "after"]


@pytest.mark.parametrize("reaction", ["propagates", "swallows"])
async def test_a_cancelled_message_is_not_a_breaker_failure(reaction: str) -> None:
    """failures=1: a message whose trace is cancelled while the node runs does not open the
    breaker, so the next message is called, not rejected. The node either lets the
    ``CancelledError`` out (the attempt ends by raising) or swallows it and returns (the
    attempt ends as cancelled); neither is a failure."""
    gate = Gate()
    calls: list[Any] = []

    async def body(msg: Any, ctx: Any) -> Any:
        calls.append(msg.payload)
        if msg.payload == "held":
            try:
                await gate.pass_()
            except asyncio.CancelledError:
                if reaction == "propagates":
                    raise
        return msg

    rec = Recorder()
    guarded = node(body, "svc", breaker=BreakerPolicy(failures=1))
    flow = PenguiFlow(guarded.to(), middlewares=[rec], emit_errors_to_rookery=True)
    async with running(flow):
        await flow.emit(make_msg("held", trace_id="t-held"))
        await gate.wait_entered()
        assert await flow.cancel("t-held") is True
        await rec.wait_for("node_trace_cancelled", trace_id="t-held")
        await rec.wait_for("trace_cancel_finish", trace_id="t-held")
        assert outcome(await send(flow, "next")) == "ok"
        assert transitions(rec) == []
        assert flow.health().nodes[0].breaker == "closed"
    assert calls == ["held", "next"]


@pytest.mark.looptime
async def test_a_cancelled_half_open_trial_gives_its_place_back() -> None:
    """The trial's trace is cancelled mid-call: the breaker stays half-open but lets the
    next call try, instead of turning every later message away."""
    import asyncio

    from penguiflow.errors import FlowError

    held = asyncio.Event()

    async def body(msg: Any, ctx: Any) -> Any:
        if msg.payload == "bad":
            raise RuntimeError("down")
        if msg.payload == "trial":
            held.set()
            await asyncio.Event().wait()
        return msg

    flow = PenguiFlow(
        node(body, "svc", breaker=BreakerPolicy(failures=1, cooldown_s=1.0)).to(),
        emit_errors_to_rookery=True,
    )
    async with running(flow):
        await flow.emit(make_msg("bad", trace_id="t-bad"))
        assert isinstance(await fetch(flow), FlowError)
        await asyncio.sleep(2.0)  # virtual: past the cool-down
        await flow.emit(make_msg("trial", trace_id="t-trial"))
        await held.wait()
        assert await flow.cancel("t-trial") is True
        await flow.emit(make_msg("ok", trace_id="t-ok"))
        assert (await fetch(flow)).payload == "ok"
        assert flow.health().nodes[0].breaker == "closed"
