"""Per-node concurrency: an I/O-bound node serving many traces at once.

``NodePolicy(concurrency=8)`` gives the ``lookup`` node eight workers, so eight calls to the
(simulated) remote service are in flight together; the flow stays bounded by its floes.

Run it with ``python examples/concurrency.py``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from penguiflow import Headers, Message, Node, NodePolicy, create

IN_FLIGHT = {"now": 0, "peak": 0}


async def lookup(message: Message, ctx: Any) -> Message:
    """Pretend to call a remote API that takes 20 ms."""
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["peak"] = max(IN_FLIGHT["peak"], IN_FLIGHT["now"])
    try:
        await asyncio.sleep(0.02)
    finally:
        IN_FLIGHT["now"] -= 1
    return message.model_copy(update={"payload": f"profile of user {message.payload}"})


async def main() -> dict[str, Any]:
    node = Node(lookup, policy=NodePolicy(validate="none", concurrency=8))
    flow = create(node.to())
    flow.run()
    started = time.perf_counter()
    try:

        async def ask(user: int) -> str:
            await flow.emit(
                Message(payload=user, headers=Headers(tenant="demo")), trace_id=f"u{user}"
            )
            return str((await flow.fetch(trace_id=f"u{user}")).payload)

        answers = await asyncio.gather(*(ask(user) for user in range(32)))
    finally:
        await flow.stop()
    elapsed = time.perf_counter() - started
    print(
        f"32 lookups of 20 ms each in {elapsed * 1000:.0f} ms, at most {IN_FLIGHT['peak']} at once"
    )
    print(answers[0])
    return {"answers": answers, "peak": IN_FLIGHT["peak"]}


if __name__ == "__main__":
    asyncio.run(main())
