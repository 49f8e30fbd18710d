"""Fairness: 1,000 producers emitting in a loop into one full floe, against an asyncio.Queue floor.

Each producer is a task that emits messages one after another, as fast as the floe lets it,
into the ingress floe (size 64) of a running one-node flow; the node takes each message and
routes nothing (validation off). A run is a fixed number of messages in total, not a wall
time, so it ends by itself: each producer claims the next message, emits it and counts the
emit once it has completed, until none are left. The floor runs the same workload on a bare
``asyncio.Queue`` of the same size: the producers ``await queue.put()`` and one consumer task
takes the items.

Every producer asks all the time, so a fair edge gives each about the same number of emits:
the fair share, messages / producers. Printed for each side, side by side: emits per producer
(min, median, max), how many producers never emitted, max and min over the fair share, and
throughput. ``asyncio.Queue`` does not serve waiting putters in order (a woken putter can find
its slot taken by a newcomer's ``put`` and queues again at the back); a floe moves the
longest-waiting producer's item into the slot a consumer frees.

Run: ``python benchmarks/fairness.py [--messages 200000] [--producers 1000] [--maxsize 64]
[--loop asyncio|uvloop]``. One run per side. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import sys
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import _common as common

from penguiflow import Node, NodePolicy, create

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

SIDES = {"flow": "PenguiFlow", "floor": "asyncio.Queue"}
WARMUP_MESSAGES = 2_000
WARMUP_PRODUCERS = 100


class Claims:
    """Hands out the messages one at a time, to whichever producer asks next."""

    def __init__(self, messages: Sequence[Any]) -> None:
        self.messages = messages
        self.taken = 0

    def take(self) -> Any | None:
        """Return the next message, or None when all have been handed out."""
        if self.taken == len(self.messages):
            return None
        message = self.messages[self.taken]
        self.taken += 1
        return message


@dataclass(frozen=True, slots=True)
class Shares:
    """What one side's run measured."""

    counts: list[int]
    """Emits completed by each producer, in the order the producers started."""
    elapsed_s: float
    """From the first producer's start until the consumer had taken every message."""

    def figures(self) -> dict[str, float]:
        counts = self.counts
        total = sum(counts)
        fair = total / len(counts)
        return {
            "min": min(counts),
            "median": statistics.median(counts),
            "max": max(counts),
            "never": sum(1 for count in counts if count == 0),
            "max_over_fair": max(counts) / fair,
            "min_over_fair": min(counts) / fair,
            "total": total,
            "msgs_per_s": total / self.elapsed_s,
        }


async def drive(
    emit: Callable[[Any], Awaitable[None]], messages: Sequence[Any], producers: int
) -> list[int]:
    """Run ``producers`` tasks emitting the messages until none are left; return their counts."""
    claims = Claims(messages)
    counts = [0] * producers

    async def produce(index: int) -> None:
        while (message := claims.take()) is not None:
            await emit(message)
            counts[index] += 1

    await asyncio.gather(*(produce(index) for index in range(producers)))
    return counts


async def on_flow(messages: Sequence[Any], producers: int, maxsize: int) -> Shares:
    """The runtime side: the producers ``emit`` into a one-node flow."""
    taken_all = asyncio.Event()
    taken = 0

    async def take(message: Any, ctx: Any) -> None:
        nonlocal taken
        taken += 1
        if taken == len(messages):
            taken_all.set()

    node = Node(take, name="take", policy=NodePolicy(validate="none"))
    flow = create(node.to(), queue_maxsize=maxsize)
    flow.run()
    try:
        started = time.perf_counter()
        counts = await drive(flow.emit, messages, producers)
        await taken_all.wait()
        elapsed = time.perf_counter() - started
    finally:
        await flow.stop()
    return Shares(counts, elapsed)


async def on_queue(messages: Sequence[Any], producers: int, maxsize: int) -> Shares:
    """The floor: the producers ``put`` onto a bare ``asyncio.Queue``; one task takes."""
    queue = asyncio.Queue[Any](maxsize)

    async def consume() -> None:
        for _ in messages:
            await queue.get()

    started = time.perf_counter()
    consumer = asyncio.create_task(consume())
    try:
        counts = await drive(queue.put, messages, producers)
        await consumer
    finally:
        consumer.cancel()
    elapsed = time.perf_counter() - started
    return Shares(counts, elapsed)


async def main(
    *, messages: int = 200_000, producers: int = 1_000, maxsize: int = common.MAXSIZE
) -> dict[str, Any]:
    batch = common.make_messages(messages)
    # Warm up both sides so that imports and first-call costs are not measured.
    warmup = batch[: min(messages, WARMUP_MESSAGES)]
    await on_queue(warmup, min(producers, WARMUP_PRODUCERS), maxsize)
    await on_flow(warmup, min(producers, WARMUP_PRODUCERS), maxsize)
    results: dict[str, Any] = {
        "floor": (await on_queue(batch, producers, maxsize)).figures(),
        "flow": (await on_flow(batch, producers, maxsize)).figures(),
    }
    results.update(
        messages=messages, producers=producers, maxsize=maxsize, loop=common.loop_label()
    )
    return results


def rows(r: dict[str, Any]) -> list[tuple[str, str, str]]:
    """One row per figure: (what, the flow's figure, the floor's figure)."""
    formats: list[tuple[str, str, Callable[[float], str]]] = [
        ("emits per producer, min", "min", "{:,.0f}".format),
        ("emits per producer, median", "median", "{:,.1f}".format),
        ("emits per producer, max", "max", "{:,.0f}".format),
        ("producers that never emitted", "never", "{:,.0f}".format),
        ("max / fair share", "max_over_fair", "{:.2f}x".format),
        ("min / fair share", "min_over_fair", "{:.2f}x".format),
        ("throughput", "msgs_per_s", common.rate),
    ]
    return [(label, fmt(r["flow"][key]), fmt(r["floor"][key])) for label, key, fmt in formats]


def report(r: dict[str, Any]) -> None:
    fair = r["messages"] / r["producers"]
    print(
        f"fairness: {r['producers']:,} producers emitting into one full floe of size "
        f"{r['maxsize']}, {r['messages']:,} messages -- python {sys.version.split()[0]}, "
        f"{r['loop']}, one run per side"
    )
    print(f"  fair share: {fair:,.1f} emits per producer")
    table = [("", SIDES["flow"], SIDES["floor"]), *rows(r)]
    width = max(len(label) for label, _, _ in table)
    columns = [max(len(row[i]) for row in table) for i in (1, 2)]
    for label, flow, floor in table:
        print(f"  {label:<{width}}  {flow:>{columns[0]}}  {floor:>{columns[1]}}")


def cli() -> None:
    summary = (__doc__ or "").strip().splitlines()[0]
    parser = argparse.ArgumentParser(description=summary)
    parser.add_argument("--messages", type=int, default=200_000, help="messages in total")
    parser.add_argument("--producers", type=int, default=1_000, help="producer tasks")
    parser.add_argument("--maxsize", type=int, default=common.MAXSIZE, help="floe size")
    parser.add_argument("--loop", choices=common.LOOPS, default="asyncio", help="event loop")
    args = parser.parse_args()
    coroutine = functools.partial(
        main, messages=args.messages, producers=args.producers, maxsize=args.maxsize
    )
    report(common.run(coroutine, args.loop))


if __name__ == "__main__":
    cli()
