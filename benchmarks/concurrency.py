"""Per-node concurrency: four I/O-bound nodes (each awaits 5 ms), 400 traces in flight.

The runtime runs a 4-node chain with ``NodePolicy(concurrency=64)``; the floor is four
stages of 64 bare tasks each, reading from ``asyncio.Queue``s of the same size and awaiting
the same 5 ms. Both are driven the same way: a producer emits while a consumer fetches, and a
semaphore keeps 400 messages in flight. Target: at least 0.8x the floor's throughput.

Run: ``python benchmarks/concurrency.py [--messages 4000] [--rounds 5] [--loop asyncio|uvloop]``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from typing import Any

import _common as common

from penguiflow import Node, NodePolicy, create

STAGES = 4
CONCURRENCY = 64
IN_FLIGHT = 400
WORK_S = 0.005


async def work(message: Any, ctx: Any) -> Any:
    await asyncio.sleep(WORK_S)
    return message


class BareStages:
    """The floor: per stage, CONCURRENCY tasks moving items from one queue to the next."""

    def __init__(self) -> None:
        self.queues = [asyncio.Queue[Any](common.MAXSIZE) for _ in range(STAGES + 1)]
        self.tasks: list[asyncio.Task[None]] = []

    async def _stage(self, inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any]) -> None:
        while True:
            item = await inbox.get()
            await work(item, None)
            await outbox.put(item)

    def start(self) -> None:
        for inbox, outbox in itertools.pairwise(self.queues):
            for _ in range(CONCURRENCY):
                self.tasks.append(asyncio.create_task(self._stage(inbox, outbox)))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def emit(self, item: Any) -> None:
        await self.queues[0].put(item)

    async def fetch(self) -> Any:
        return await self.queues[-1].get()


def flow_stages() -> common.FlowPipe:
    policy = NodePolicy(validate="none", concurrency=CONCURRENCY)
    nodes = [Node(work, name=f"io{i}", policy=policy) for i in range(STAGES)]
    adjacencies = [a.to(b) for a, b in itertools.pairwise(nodes)]
    return common.FlowPipe(create(*adjacencies, queue_maxsize=common.MAXSIZE))


async def bounded(pipe: BareStages | common.FlowPipe, messages: list[Any]) -> float:
    """Messages per second with at most IN_FLIGHT messages between emit and fetch."""
    room = asyncio.Semaphore(IN_FLIGHT)

    async def produce() -> None:
        for message in messages:
            await room.acquire()
            await pipe.emit(message)

    async def consume() -> None:
        for _ in messages:
            await pipe.fetch()
            room.release()

    pipe.start()
    started = time.perf_counter()
    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - started
    await pipe.stop()
    return len(messages) / elapsed


async def main(*, messages: int = 4_000, rounds: int = 5) -> dict[str, Any]:
    batch = common.make_messages(messages)
    await bounded(BareStages(), batch[:500])
    await bounded(flow_stages(), batch[:500])
    sides = {
        "floor_msgs_per_s": lambda: bounded(BareStages(), batch),
        "flow_msgs_per_s": lambda: bounded(flow_stages(), batch),
    }
    measured = await common.interleave(rounds, sides)
    results: dict[str, Any] = dict(measured)
    results["throughput_ratio"] = measured.ratio("flow_msgs_per_s", "floor_msgs_per_s")
    results.update(messages=messages, loop=common.loop_label())
    return results


def rows(r: dict[str, Any]) -> list[common.Row]:
    flow, floor = r["flow_msgs_per_s"], r["floor_msgs_per_s"]
    return [
        (
            f"concurrency {CONCURRENCY}: {STAGES} nodes awaiting {WORK_S * 1000:.0f} ms, "
            f"{IN_FLIGHT} in flight",
            ">= 0.8x floor msg/s",
            f"{r['throughput_ratio']:.2f}x ({common.rate(flow)} vs {common.rate(floor)}; "
            f"{flow * STAGES:,.0f} node invocations/s)",
        )
    ]


def cli() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--messages", type=int, default=4_000)
    args = parser.parse_args()
    coroutine = functools.partial(main, messages=args.messages, rounds=args.rounds)
    results = common.run(coroutine, args.loop)
    title = f"concurrency: {STAGES} stages x {CONCURRENCY}, floe size {common.MAXSIZE}"
    common.report(title, args.rounds, results["loop"], rows(results))


if __name__ == "__main__":
    cli()
