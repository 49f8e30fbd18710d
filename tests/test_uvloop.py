"""The runtime on uvloop: trace cancellation (Task.uncancel), roundtrips and stop().

Each test runs its own uvloop loop; the scenarios are the ones that lean on asyncio task
internals the most.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from penguiflow import Headers, Message, Node, NodePolicy, create
from penguiflow.errors import TraceCancelled

uvloop = pytest.importorskip("uvloop")


def run_on_uvloop(main: Any) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main())


def test_trace_cancel_and_roundtrips_on_uvloop() -> None:
    """One trace is cancelled mid-node; its roundtrip raises TraceCancelled, the others
    complete, and after stop() no task of the flow is left."""

    async def main() -> tuple[list[str], bool, set[asyncio.Task[Any]]]:
        entered = asyncio.Event()
        cancelled: list[str] = []

        async def work(msg: Message, ctx: Any) -> Message:
            if msg.payload == "slow":
                entered.set()
                try:
                    await asyncio.Event().wait()
                except asyncio.CancelledError:
                    cancelled.append(msg.trace_id)
                    raise
            return msg.model_copy(update={"payload": f"done:{msg.payload}"})

        flow = create(Node(work, policy=NodePolicy(validate="none")).to())
        flow.run()
        try:

            async def ask(trace: str, payload: str) -> str:
                await flow.emit(
                    Message(payload=payload, headers=Headers(tenant="t")), trace_id=trace
                )
                out = await flow.fetch(trace_id=trace)
                return str(out.payload)

            slow = asyncio.create_task(ask("s", "slow"))
            await entered.wait()
            fast = [asyncio.create_task(ask(f"f{i}", str(i))) for i in range(5)]
            await flow.cancel("s")
            results = [await task for task in fast]
            with pytest.raises(TraceCancelled):
                await slow
        finally:
            await flow.stop()
        leftover = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
        return results, cancelled == ["s"], leftover

    results, cancelled_once, leftover = run_on_uvloop(main)
    assert results == [f"done:{i}" for i in range(5)]
    assert cancelled_once
    assert leftover == set()
