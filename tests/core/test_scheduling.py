"""Spec section 7.16: observable scheduling guarantees.

These tests use ``await asyncio.sleep(0)`` on purpose: the guarantees are about what has run
after exactly one pass of the event loop.
"""

from __future__ import annotations

import asyncio
from typing import Any

from penguiflow.core import OPEN_SEA, PenguiFlow

from .helpers import Gate, echo, fetch, floe, node, running, within


async def test_run_creates_the_worker_tasks_synchronously() -> None:
    a, b = node(echo, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(b))
    loop = asyncio.get_running_loop()
    async with running(flow):
        tasks = list(flow._tasks)
        assert len(tasks) == 2
        for task in tasks:
            assert isinstance(task, asyncio.Task)
            assert task.get_loop() is loop
            assert not task.done()


async def test_spec_example_one_loop_pass_with_queue_maxsize_one() -> None:
    """After ``emit("one")``, two emit tasks and one ``sleep(0)``: the worker holds "one",
    the first task has finished and the second is blocked."""
    gate = Gate()
    held: list[Any] = []

    async def hold(msg: Any, ctx: Any) -> Any:
        held.append(msg)
        await gate.pass_()
        return msg

    a = node(hold, "a")
    flow = PenguiFlow(a.to(), queue_maxsize=1)
    async with running(flow):
        await flow.emit("one")
        t1 = asyncio.create_task(flow.emit("two"))
        t2 = asyncio.create_task(flow.emit("three"))
        await asyncio.sleep(0)
        assert t1.done()
        assert not t2.done()
        assert floe(flow, OPEN_SEA, a).queue.qsize() == 1
        await gate.wait_entered()
        assert held == ["one"]
        gate.open()
        results = [await fetch(flow) for _ in range(3)]
        await within(t2)
    assert results == ["one", "two", "three"]


async def test_worker_takes_an_already_queued_item_in_its_first_step() -> None:
    """Queue an item right after ``run()``; a task created afterwards runs after the worker's
    first step, by which time the ingress floe is empty again."""
    a = node(echo, "a")
    flow = PenguiFlow(a.to())
    depth_seen_later: list[int] = []
    async with running(flow):
        flow.emit_nowait("x")

        async def later() -> None:
            depth_seen_later.append(floe(flow, OPEN_SEA, a).queue.qsize())

        await within(asyncio.create_task(later()))
        assert await fetch(flow) == "x"
    assert depth_seen_later == [0]


async def test_emit_with_room_never_suspends() -> None:
    """A task created before the emits cannot run unless an emit yields to the loop."""
    a, b = node(echo, "a"), node(echo, "b")
    flow = PenguiFlow(a.to(), b.to(), queue_maxsize=8)
    ran = asyncio.Event()
    async with running(flow):
        witness = asyncio.create_task(asyncio.sleep(0, result=None))
        witness.add_done_callback(lambda _: ran.set())
        for i in range(4):
            await flow.emit(f"e{i}")
            flow.emit_nowait(f"n{i}", to=b)
        assert not ran.is_set()
        await witness
        got = [await fetch(flow) for _ in range(12)]
    assert sorted(got) == sorted([f"e{i}" for i in range(4)] * 2 + [f"n{i}" for i in range(4)])


async def test_processing_is_fifo_end_to_end() -> None:
    a, b, c = node(echo, "a"), node(echo, "b"), node(echo, "c")
    flow = PenguiFlow(a.to(b), b.to(c), queue_maxsize=3)

    async def produce() -> None:
        for i in range(50):
            await flow.emit(i)

    async with running(flow):
        producer = asyncio.create_task(produce())
        got = [await fetch(flow) for _ in range(50)]
        await within(producer)
    assert got == list(range(50))
