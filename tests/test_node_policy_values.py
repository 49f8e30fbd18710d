"""``NodePolicy`` values at their extremes: non-finite numbers, thousands of retries, and a
retry machinery that fails.

A message must never be lost to the machinery around a node: whatever happens while retrying
it, it ends with a ``FlowError`` at the Rookery. Flows run under ``looptime``, so backoff
costs no real time and a lost message fails its test at once (the fetch's bound is virtual).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from typing import Any

import pytest
from core.helpers import Recorder, fetch, make_msg, running

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError
from penguiflow.node import BreakerPolicy, Node, NodePolicy

FLOAT_FIELDS = ("timeout_s", "backoff_base", "backoff_mult", "max_backoff")


async def always_fails(msg: Any, ctx: Any) -> Any:
    raise RuntimeError(f"down ({msg.payload})")


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
@pytest.mark.parametrize("field", FLOAT_FIELDS)
def test_non_finite_numbers_are_rejected_naming_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=rf"^NodePolicy\.{field} must be a finite number"):
        NodePolicy(**{field: value})


def test_a_breaker_policy_error_names_the_breaker_policy() -> None:
    with pytest.raises(ValueError, match=r"^BreakerPolicy\.cooldown_s must be"):
        BreakerPolicy(cooldown_s=-1.0)


@pytest.mark.parametrize(
    ("base", "mult"),
    [(0.5, 2.0), (1, 2), (0.001, 10.0), (0.0, 1e300), (1e-300, 2.0)],
    ids=["default", "ints", "steep", "zero-base", "tiny-base"],
)
def test_backoff_delay_over_5000_retries_never_overflows(base: float, mult: float) -> None:
    """``max_retries=5000`` with ``max_backoff`` set: each delay is a float within the cap."""
    policy = NodePolicy(max_retries=5000, backoff_base=base, backoff_mult=mult, max_backoff=30.0)
    delays = [policy.backoff_delay(n) for n in range(1, policy.max_retries + 1)]
    assert all(type(delay) is float for delay in delays)
    assert delays[0] == min(float(base), 30.0)
    assert delays == sorted(delays)  # never decreasing, never above the cap
    assert delays[-1] == (0.0 if base == 0 else 30.0)


def test_backoff_delay_without_a_cap_grows_to_infinity_not_to_an_error() -> None:
    policy = NodePolicy(max_retries=5000)
    assert policy.backoff_delay(3) == 2.0  # the exact values below the float range stay exact
    assert policy.backoff_delay(5000) == math.inf


@pytest.mark.looptime
async def test_two_thousand_retries_end_in_a_flow_error() -> None:
    """A node that always fails, retried 2000 times with a capped backoff.

    Past retry 1024 the uncapped delay exceeds any float; the message still ends with its
    ``FlowError`` after 2000 retries of 1 ms each, in virtual time.
    """
    loop = asyncio.get_running_loop()
    policy = NodePolicy(validate="none", max_retries=2000, backoff_base=0.001, max_backoff=0.001)
    svc = Node(always_fails, name="svc", policy=policy)
    flow = PenguiFlow(svc.to(), emit_errors_to_rookery=True)
    async with running(flow):
        started = loop.time()
        await flow.emit(make_msg("x", trace_id="t-x"))
        error = await fetch(flow)
        assert loop.time() - started == pytest.approx(2.0)
        assert flow.health().nodes[0].restarts == 0
    assert isinstance(error, FlowError)
    assert (error.code, error.node_name, error.trace_id) == ("NODE_EXCEPTION", "svc", "t-x")
    assert error.metadata["attempt"] == 2000


@dataclasses.dataclass(slots=True)
class BrokenBackoff(NodePolicy):
    """A policy whose retry machinery fails: its ``backoff_delay`` raises."""

    def backoff_delay(self, attempt: int) -> float:
        raise ArithmeticError(f"no delay for retry {attempt}")


@dataclasses.dataclass(slots=True)
class NonsenseBackoff(NodePolicy):
    """A policy whose ``backoff_delay`` returns something no sleep can take."""

    def backoff_delay(self, attempt: int) -> float:
        return math.nan


@pytest.mark.looptime
@pytest.mark.parametrize(
    ("policy_type", "retry_exception"),
    [
        (BrokenBackoff, "ArithmeticError('no delay for retry 1')"),
        (NonsenseBackoff, "ValueError('backoff_delay(1) returned nan, not a number >= 0')"),
    ],
)
async def test_a_failing_retry_machinery_ends_the_message_with_a_flow_error(
    policy_type: type[NodePolicy], retry_exception: str
) -> None:
    """The node fails; computing its retry's delay fails too.

    The message is not lost in a worker restart: it fails for good with the node's own error,
    and the ``FlowError`` says why it was not retried. The worker serves on.
    """
    rec = Recorder()
    policy = policy_type(validate="none", max_retries=3)
    flow = PenguiFlow(
        Node(always_fails, name="svc", policy=policy).to(),
        middlewares=[rec],
        emit_errors_to_rookery=True,
    )
    async with running(flow):
        for payload in ("first", "second"):
            await flow.emit(make_msg(payload, trace_id=f"t-{payload}"))
            error = await fetch(flow)
            assert isinstance(error, FlowError)
            assert (error.code, error.node_name, error.trace_id) == (
                "NODE_EXCEPTION",
                "svc",
                f"t-{payload}",
            )
            assert error.message == f"Node 'svc' raised RuntimeError: down ({payload})"
            assert error.metadata["attempt"] == 0
            assert error.metadata["retry_exception"] == retry_exception
        health = flow.health()
        assert (health.nodes[0].restarts, health.nodes[0].workers_alive) == (0, 1)
    assert rec.select("node_retry") == [] and rec.select("worker_restarted") == []
    assert len(rec.select("node_failed")) == 2
