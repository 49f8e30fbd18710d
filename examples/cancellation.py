"""Cancellation: stop one request while its node is running; the others are unaffected.

    OpenSea -> lookup -> Rookery

Three traces are emitted. ``lookup`` answers ``job-a`` and ``job-c`` at once, but ``job-b``
waits on an upstream reply that never comes. As soon as ``job-b`` is inside the node, the
caller runs ``flow.cancel("job-b")``: the node sees ``CancelledError``, the worker moves on,
and ``job-c`` (queued behind ``job-b`` on the same worker) completes. A middleware prints the
``trace_cancel_start`` / ``trace_cancel_finish`` pair the runtime emits for the cancellation.

Ordering uses ``asyncio.Event``s only; nothing sleeps.

Run it with ``python examples/cancellation.py``.
"""

from __future__ import annotations

import asyncio
from typing import Any

from penguiflow import Context, FlowEvent, Headers, Message, Node, NodePolicy, PenguiFlow, create

CANCEL_EVENTS = ("trace_cancel_start", "trace_cancel_finish")


class Upstream:
    """A fake remote service: ``job-b``'s reply never arrives, the others are instant."""

    def __init__(self) -> None:
        self.waiting = asyncio.Event()  # set once job-b is blocked in the call
        self.never = asyncio.Event()  # nobody sets this: the reply that never comes
        self.interrupted: list[str] = []

    async def call(self, msg: Message) -> str:
        if msg.trace_id != "job-b":
            return f"{msg.payload} -> ok"
        self.waiting.set()
        try:
            await self.never.wait()
        except asyncio.CancelledError:
            # Only for the printout: record that the node saw the cancellation, then let it
            # propagate so the runtime can finish the trace.
            self.interrupted.append(msg.trace_id)
            print(f"  lookup: {msg.trace_id} interrupted by CancelledError")
            raise
        return f"{msg.payload} -> late"


class CancelLog:
    """Middleware that prints and records the trace-cancellation events."""

    def __init__(self) -> None:
        self.events: list[FlowEvent] = []
        self.finished = asyncio.Event()

    async def __call__(self, event: FlowEvent) -> None:
        if event.event_type not in CANCEL_EVENTS:
            return
        self.events.append(event)
        print(
            f"  {event.event_type:<20} trace={event.trace_id} at={event.node_name} "
            f"pending={event.trace_pending} inflight={event.trace_inflight}"
        )
        if event.event_type == "trace_cancel_finish":
            self.finished.set()


def build(upstream: Upstream, log: CancelLog) -> PenguiFlow:
    async def lookup(msg: Message, ctx: Context) -> Message:
        reply = await upstream.call(msg)
        return msg.model_copy(update={"payload": reply})

    node = Node(lookup, name="lookup", policy=NodePolicy(validate="none"))
    return create(node.to(), middlewares=[log])


async def main() -> dict[str, Any]:
    upstream = Upstream()
    log = CancelLog()
    flow = build(upstream, log)
    flow.run()
    results: dict[str, Any] = {}
    try:
        for trace_id in ("job-a", "job-b", "job-c"):
            await flow.emit(
                Message(payload=f"query {trace_id}", headers=Headers(tenant="t"), trace_id=trace_id)
            )
        print("emitted job-a, job-b, job-c")
        await upstream.waiting.wait()
        print("job-b is running in lookup; cancelling it")
        cancelled = await flow.cancel("job-b")
        for _ in range(2):
            out = await flow.fetch()
            results[out.trace_id] = out.payload
            print(f"  result {out.trace_id}: {out.payload}")
        await log.finished.wait()
    finally:
        await flow.stop()
    return {
        "cancelled": cancelled,
        "results": results,
        "interrupted": upstream.interrupted,
        "events": [(event.event_type, event.trace_id, event.node_name) for event in log.events],
    }


if __name__ == "__main__":
    asyncio.run(main())
