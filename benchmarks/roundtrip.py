"""Roundtrips the way a server makes them, against a bare-asyncio floor, in the same process.

1,000 concurrent callers each send a message and wait for its own answer, over and over:
through the runtime, each caller does ``emit(msg, trace_id=T)`` then ``fetch(trace_id=T)`` on
a chain of 4 no-op nodes with floes of 256; through the floor, each caller puts
``(message, future)`` on the first of four ``asyncio.Queue``s of 256 (one task per hop) and
awaits its future, which the last hop resolves.

Run: ``python benchmarks/roundtrip.py [--callers 1000] [--requests 20000] [--rounds 5]
[--loop asyncio|uvloop]``. Prints medians and the paired ratio. Numbers, not assertions.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import time
from typing import TYPE_CHECKING, Any

import _common as common

import penguiflow
from penguiflow import Headers, Message

if TYPE_CHECKING:
    from types import ModuleType

HOPS = 4
MAXSIZE = 256


async def floor(callers: int, requests: int) -> float:
    """Requests per second through the bare chain, each caller awaiting its own future."""
    queues = [asyncio.Queue[Any](MAXSIZE) for _ in range(HOPS)]

    async def hop(inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any] | None) -> None:
        while True:
            item = await inbox.get()
            if outbox is None:
                item[1].set_result(item[0])
            else:
                await outbox.put(item)

    tasks = [
        asyncio.create_task(hop(inbox, outbox))
        for inbox, outbox in itertools.pairwise([*queues, None])
    ]
    headers = Headers(tenant="bench")
    loop = asyncio.get_running_loop()

    async def caller(count: int) -> None:
        for i in range(count):
            future: asyncio.Future[Any] = loop.create_future()
            await queues[0].put((Message(payload=i, headers=headers), future))
            await future

    started = time.perf_counter()
    await asyncio.gather(*(caller(requests // callers) for _ in range(callers)))
    elapsed = time.perf_counter() - started
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return (requests // callers) * callers / elapsed


async def noop(message: Any, ctx: Any) -> Any:
    return message


async def runtime(callers: int, requests: int, pf: ModuleType = penguiflow) -> float:
    """Requests per second through the flow, each caller doing emit then fetch by trace.

    ``pf`` is the penguiflow package to measure (``roundtrip_compare.py`` passes copies of
    other revisions).
    """
    policy = pf.NodePolicy(validate="none")
    nodes = [pf.Node(noop, name=f"n{i}", policy=policy) for i in range(HOPS)]
    flow = pf.create(*(a.to(b) for a, b in itertools.pairwise(nodes)), queue_maxsize=MAXSIZE)
    headers = pf.Headers(tenant="bench")
    flow.run()

    async def caller(index: int, count: int) -> None:
        for i in range(count):
            trace_id = f"c{index}-{i}"
            await flow.emit(pf.Message(payload=i, headers=headers), trace_id=trace_id)
            await flow.fetch(trace_id=trace_id)

    started = time.perf_counter()
    await asyncio.gather(*(caller(c, requests // callers) for c in range(callers)))
    elapsed = time.perf_counter() - started
    await flow.stop()
    return (requests // callers) * callers / elapsed


async def main(*, callers: int, requests: int, rounds: int) -> dict[str, Any]:
    await floor(callers, callers)  # warm up both sides
    await runtime(callers, callers)
    sides = {
        "floor_per_s": lambda: floor(callers, requests),
        "flow_per_s": lambda: runtime(callers, requests),
    }
    measured = await common.interleave(rounds, sides)
    results: dict[str, Any] = dict(measured)
    results["ratio"] = measured.ratio("flow_per_s", "floor_per_s")
    results.update(callers=callers, requests=requests, loop=common.loop_label())
    return results


def rows(r: dict[str, Any]) -> list[common.Row]:
    return [
        (
            f"roundtrips, {r['callers']:,} callers, {r['requests']:,} requests",
            ">= 0.5x floor requests/s",
            f"{r['ratio']:.2f}x ({r['flow_per_s']:,.0f}/s vs {r['floor_per_s']:,.0f}/s)",
        )
    ]


def cli() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--callers", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=20_000)
    args = parser.parse_args()
    coroutine = functools.partial(
        main, callers=args.callers, requests=args.requests, rounds=args.rounds
    )
    results = common.run(coroutine, args.loop)
    title = f"roundtrip: {HOPS} no-op hops, floes of {MAXSIZE}"
    common.report(title, args.rounds, results["loop"], rows(results))


if __name__ == "__main__":
    cli()
