"""A circuit breaker under load: it hears of a call's outcome when the call ends.

Routing a result into a full floe waits for the consumer; a breaker that learned of a trial's
success only once its result was enqueued would stay half-open that long, rejecting every
other message meanwhile. Runs under ``looptime``: the breaker, the node and the consumer all
read or sleep on the loop's virtual clock, so the load costs no real time and the times can
be compared exactly.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from core.helpers import floe, make_msg, node, running

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError
from penguiflow.node import BreakerPolicy
from penguiflow.types import Message

if TYPE_CHECKING:
    from penguiflow.metrics import FlowEvent

MESSAGES = 500
FAILING_UNTIL = 30.0
"""Virtual seconds during which every other call of the node fails."""
ARRIVAL_S = 0.1
"""Virtual seconds between two messages the producer emits (unless backpressure holds it)."""
CONSUMER_S = 1.0
"""Virtual seconds the consumer takes per message: much slower than the node."""


class Service:
    """The guarded node: fails every other call until ``FAILING_UNTIL``, then recovers.

    It keeps when and for which payload each successful call returned.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.returned: list[tuple[float, Any]] = []

    async def __call__(self, msg: Message, ctx: Any) -> Message:
        loop = asyncio.get_running_loop()
        self.calls += 1
        await asyncio.sleep(0.01)
        if loop.time() < FAILING_UNTIL and self.calls % 2:
            raise RuntimeError(f"down ({msg.payload})")
        self.returned.append((loop.time(), msg.payload))
        return msg


@pytest.mark.looptime
async def test_a_half_open_breaker_closes_when_its_trials_return_not_when_enqueued() -> None:
    """500 messages through a flaky node into a full floe that a slow consumer drains.

    Each time the breaker closes, the trial call that closed it has just returned: the
    breaker closes at that very virtual instant, while the floe towards the consumer is full
    and the trial's result is neither on it nor consumed yet. Every message ends exactly once
    at the Rookery: its result, or its ``FlowError``.
    """
    loop = asyncio.get_running_loop()
    service = Service()
    consumed: list[Any] = []

    async def consumer(msg: Message, ctx: Any) -> Message:
        await asyncio.sleep(CONSUMER_S)
        consumed.append(msg.payload)
        return msg

    svc = node(
        service.__call__,
        "svc",
        concurrency=4,
        breaker=BreakerPolicy(failures=99, failure_ratio=0.5, window=10, cooldown_s=0.5),
    )
    sink = node(consumer, "sink")
    closings: list[dict[str, Any]] = []
    transitions: list[str] = []

    async def watch(event: FlowEvent) -> None:
        if not event.event_type.startswith("circuit_"):
            return
        transitions.append(event.event_type)
        if event.event_type == "circuit_closed":
            edge = floe(flow, svc, sink)
            closings.append(
                {
                    "at": loop.time(),
                    "last_return": service.returned[-1],
                    "queued": {item.payload for item in edge.items},
                    "full": len(edge.items) == edge.maxsize,
                    "consumed": set(consumed),
                }
            )

    flow = PenguiFlow(
        svc.to(sink), sink.to(), queue_maxsize=4, middlewares=[watch], emit_errors_to_rookery=True
    )

    async def produce() -> None:
        # Arrivals at a steady rate, so that load is still coming when the node recovers.
        for i in range(MESSAGES):
            await flow.emit(make_msg(i, trace_id=f"t-{i}"))
            await asyncio.sleep(ARRIVAL_S)

    async with running(flow):
        producer = asyncio.create_task(produce())
        async with asyncio.timeout(MESSAGES * CONSUMER_S + FAILING_UNTIL + 60.0):
            results = [await flow.fetch() for _ in range(MESSAGES)]
        await producer
        assert flow.health().nodes[0].breaker == "closed"

    assert transitions[0] == "circuit_open" and transitions[-1] == "circuit_closed"
    assert closings, transitions
    for closing in closings:
        returned_at, trial = closing["last_return"]
        assert closing["at"] == returned_at, closing
        assert trial not in closing["queued"] and trial not in closing["consumed"], closing
    # The scenario this is about: most closings came while the consumer's floe was full, so
    # routing the closing trial's result would have waited for the consumer.
    assert sum(closing["full"] for closing in closings) >= len(closings) - 1, closings
    delivered = sorted(item.trace_id for item in results)
    assert delivered == sorted(f"t-{i}" for i in range(MESSAGES))
    succeeded = [item.payload for item in results if isinstance(item, Message)]
    assert sorted(succeeded) == sorted(consumed)
    errors = [item for item in results if isinstance(item, FlowError)]
    assert {error.code for error in errors} <= {"NODE_EXCEPTION", "CIRCUIT_OPEN"}
    # A half-open breaker turns messages away only while a trial call runs (none here); one
    # that waited for the trial's result to be enqueued turned away over a hundred.
    turned_away = [error for error in errors if error.metadata.get("breaker") == "half_open"]
    assert len(turned_away) <= len(closings), len(turned_away)
