"""Per-node concurrency: ``NodePolicy(concurrency=N)`` runs up to N invocations at once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from core.helpers import assert_accounted, fetch, make_msg, node, running, settled, within

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError
from penguiflow.node import NodePolicy


class Room:
    """Counts invocations inside a node and holds them until released."""

    def __init__(self) -> None:
        self.inside = 0
        self.peak = 0
        self.changed = asyncio.Event()
        self.release = asyncio.Event()

    async def enter(self) -> None:
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        self.changed.set()
        try:
            await self.release.wait()
        finally:
            self.inside -= 1

    async def until_inside(self, count: int) -> None:
        async with asyncio.timeout(5):
            while self.inside < count:
                self.changed.clear()
                await self.changed.wait()


def test_concurrency_must_be_a_positive_int() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="concurrency"):
            NodePolicy(concurrency=bad)  # type: ignore[arg-type]


async def test_up_to_n_invocations_run_at_once() -> None:
    """Five messages, concurrency 3: three enter the node, the others wait on the floe."""
    room = Room()

    async def body(msg: Any, ctx: Any) -> Any:
        await room.enter()
        return msg

    flow = PenguiFlow(node(body, "n", concurrency=3).to())
    async with running(flow):
        for i in range(5):
            await flow.emit(make_msg(i, trace_id=f"t{i}"))
        await room.until_inside(3)
        await asyncio.sleep(0)  # a fourth worker, if there were one, would enter now
        assert room.inside == 3
        assert_accounted(flow)
        room.release.set()
        got = sorted([(await fetch(flow)).payload for _ in range(5)])
        await settled(flow)
    assert got == [0, 1, 2, 3, 4]
    assert room.peak == 3


async def test_workers_are_named_and_all_stopped() -> None:
    flow = PenguiFlow(node(lambda_echo, "n", concurrency=3).to())
    async with running(flow):
        assert sorted(t.get_name() for t in flow._tasks) == [
            "penguiflow:n",
            "penguiflow:n#1",
            "penguiflow:n#2",
        ]
        health = flow.health()
        assert health.nodes[0].workers == 3 and health.nodes[0].workers_alive == 3
    assert flow._tasks == []


async def lambda_echo(msg: Any, ctx: Any) -> Any:
    return msg


async def test_cancelling_one_trace_leaves_the_other_invocations_running() -> None:
    room = Room()
    cancelled: list[str] = []

    async def body(msg: Any, ctx: Any) -> Any:
        try:
            await room.enter()
        except asyncio.CancelledError:
            cancelled.append(msg.trace_id)
            raise
        return msg

    flow = PenguiFlow(node(body, "n", concurrency=3).to())
    async with running(flow):
        for trace in ("a", "b", "c"):
            await flow.emit(make_msg(trace, trace_id=trace))
        await room.until_inside(3)
        assert await flow.cancel("b")
        room.release.set()
        got = {(await fetch(flow)).payload, (await fetch(flow)).payload}
        await settled(flow)
    assert got == {"a", "c"}
    assert cancelled == ["b"]


@pytest.mark.looptime
async def test_timeouts_and_retries_hold_per_invocation() -> None:
    """Three concurrent invocations, each timing out then succeeding on retry: every message
    gets its own timeout and backoff, in parallel (virtual time)."""
    calls: dict[str, int] = {}

    async def slow_once(msg: Any, ctx: Any) -> Any:
        calls[msg.trace_id] = calls.get(msg.trace_id, 0) + 1
        if calls[msg.trace_id] == 1:
            await asyncio.sleep(10)
        return msg

    loop = asyncio.get_running_loop()
    flow = PenguiFlow(
        node(slow_once, "n", concurrency=3, timeout_s=1.0, max_retries=1, backoff_base=2.0).to(),
        emit_errors_to_rookery=True,
    )
    async with running(flow):
        started = loop.time()
        for trace in ("a", "b", "c"):
            await flow.emit(make_msg(trace, trace_id=trace))
        got = {(await fetch(flow)).payload for _ in range(3)}
        elapsed = loop.time() - started
    assert got == {"a", "b", "c"}
    assert calls == {"a": 2, "b": 2, "c": 2}
    assert elapsed == pytest.approx(3.0)  # 1 s timeout + 2 s backoff, all three in parallel


async def test_failures_are_still_flow_errors() -> None:
    async def boom(msg: Any, ctx: Any) -> Any:
        raise RuntimeError(f"bad {msg.payload}")

    flow = PenguiFlow(node(boom, "n", concurrency=2).to(), emit_errors_to_rookery=True)
    async with running(flow):
        for i in range(4):
            await flow.emit(make_msg(i, trace_id=f"t{i}"))
        errors = [await within(fetch(flow)) for _ in range(4)]
    assert all(isinstance(e, FlowError) and e.code == "NODE_EXCEPTION" for e in errors)
    assert sorted(e.trace_id for e in errors) == ["t0", "t1", "t2", "t3"]
