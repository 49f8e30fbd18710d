"""A circuit breaker in front of a failing dependency, and the flow's health while it trips.

The ``charge`` node calls a payment service that is down. After three failed messages its
breaker opens: later messages are rejected at once with a ``FlowError`` of code
``CIRCUIT_OPEN`` (the service is not called), and ``flow.health()`` reports the flow as
failing. After the cool-down a trial message goes through, the service is back, and the
breaker closes.

Run it with ``python examples/resilience.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from penguiflow import FlowError, FlowEvent, Headers, Message, Node, NodePolicy, create
from penguiflow.node import BreakerPolicy

SERVICE = {"up": False, "calls": 0}


async def charge(message: Message, ctx: Any) -> Message:
    SERVICE["calls"] += 1
    if not SERVICE["up"]:
        raise ConnectionError("payment service unavailable")
    return message.model_copy(update={"payload": f"charged order {message.payload}"})


async def main(cooldown_s: float = 0.2) -> dict[str, Any]:
    transitions: list[str] = []

    async def watch(event: FlowEvent) -> None:
        if event.event_type.startswith("circuit_"):
            transitions.append(event.event_type)
            print(f"  breaker: {event.event_type}")

    breaker = BreakerPolicy(failures=3, cooldown_s=cooldown_s)
    node = Node(charge, policy=NodePolicy(validate="none", breaker=breaker))
    flow = create(node.to(), emit_errors_to_rookery=True, middlewares=[watch])
    flow.run()
    codes: list[str] = []
    try:

        async def order(number: int) -> Any:
            trace = f"order-{number}"
            await flow.emit(Message(payload=number, headers=Headers(tenant="shop")), trace_id=trace)
            return await flow.fetch(trace_id=trace)

        for number in range(5):
            result = await order(number)
            assert isinstance(result, FlowError)
            codes.append(result.code)
            print(f"order {number}: {result.code}")
        health = flow.health()
        print(f"health: {health.status}, breaker {health.nodes[0].breaker}")
        await asyncio.sleep(cooldown_s)  # the cool-down passes; the service recovers
        SERVICE["up"] = True
        recovered = await order(5)
        print(f"order 5: {recovered.payload}")
        final = flow.health()
        print(f"health: {final.status}, breaker {final.nodes[0].breaker}")
    finally:
        await flow.stop()
    return {
        "codes": codes,
        "calls": SERVICE["calls"],
        "transitions": transitions,
        "status_while_open": health.status,
        "status_after": final.status,
    }


if __name__ == "__main__":
    asyncio.run(main())
