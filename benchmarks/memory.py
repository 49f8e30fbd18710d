"""Memory held per in-flight trace, and whether it all comes back, measured with tracemalloc.

The flow: one node on an unbounded floe (``queue_maxsize=0``) that awaits an
``asyncio.Event`` gate. We emit N messages with distinct trace ids: one waits in the node,
the rest in the floe, so N traces are in flight at once. The floor holds the same N
messages in an unbounded ``asyncio.Queue`` whose consumer task is blocked on the same kind
of gate and then forwards to an out queue. Both sides build their messages before the
baseline reading, so the message objects are not counted; what is counted is everything
the side allocates to hold them (the flow or queues themselves included).

Reported: runtime overhead per in-flight trace, (runtime held - floor held) / N; and, after
opening the gate, fetching all N, stopping and ``gc.collect()``, how far traced memory is
from where it started. The flow object stays referenced for that last reading so that any
per-trace state it kept would show. Allocations outside Python's allocator (libuv's, under
uvloop) are invisible to tracemalloc.

Run: ``python benchmarks/memory.py [--traces 10000] [--rounds 5] [--loop asyncio|uvloop]``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import statistics
import tracemalloc
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import _common as common

from penguiflow import Message, Node, NodePolicy, create

Probe = Callable[[str], Awaitable[None]]


def size(value: float, *, signed: bool = True) -> str:
    """Format a byte count, with its sign unless ``signed`` is false."""
    sign = "+" if signed else ""
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:{sign}.2f} {unit}"
    return f"{value:{sign}.0f} B"


async def settled() -> int:
    """Let finished callbacks run, collect garbage, and return the traced bytes."""
    for _ in range(3):
        await asyncio.sleep(0)
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def measure(
    hold: Callable[[Sequence[Message], Probe], Awaitable[None]], messages: Sequence[Message]
) -> dict[str, float]:
    """Run ``hold`` and return its readings in bytes over the baseline.

    ``hold`` calls ``probe("held")`` with every message in flight, and ``probe("after")``
    once drained and stopped, while it still references what it built.
    """
    readings: dict[str, float] = {}

    async def probe(when: str) -> None:
        if when == "held":
            current, peak = tracemalloc.get_traced_memory()
            readings.update(held=current - baseline, peak=peak - baseline)
        else:
            readings[when] = await settled() - baseline

    baseline = await settled()
    tracemalloc.reset_peak()
    await hold(messages, probe)
    readings["baseline"] = baseline
    return readings


async def hold_flow(messages: Sequence[Message], probe: Probe) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()

    async def gated(message: Any, ctx: Any) -> Any:
        entered.set()
        await gate.wait()
        return message

    node = Node(gated, name="gated", policy=NodePolicy(validate="none"))
    flow = create(node.to(), queue_maxsize=0)
    flow.run()
    for message in messages:
        await flow.emit(message)
    await entered.wait()
    await probe("held")
    gate.set()
    for _ in messages:
        await flow.fetch()
    await flow.stop()
    await probe("after")


async def hold_floor(messages: Sequence[Message], probe: Probe) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    pipe = common.QueuePipe(maxsize=0)

    async def consume() -> None:
        while True:
            item = await pipe.inbox.get()
            entered.set()
            await gate.wait()
            await pipe.out.put(item)

    pipe.spawn(consume())
    for message in messages:
        await pipe.emit(message)
    await entered.wait()
    await probe("held")
    gate.set()
    for _ in messages:
        await pipe.fetch()
    await pipe.stop()
    await probe("after")


async def main(*, traces: int = 10_000, rounds: int = 5) -> dict[str, Any]:
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        messages = common.make_messages(traces)
        samples: dict[str, list[dict[str, float]]] = {"floor": [], "flow": []}
        sides = {"floor": hold_floor, "flow": hold_flow}
        for hold in sides.values():  # warm-up: first-call caches are not per-trace costs
            await measure(hold, messages[:1000])
        for index in range(rounds):
            for side in ("floor", "flow") if index % 2 == 0 else ("flow", "floor"):
                samples[side].append(await measure(sides[side], messages))
    finally:
        if not was_tracing:
            tracemalloc.stop()
    results: dict[str, Any] = {
        f"{side}_{key}": statistics.median(reading[key] for reading in readings)
        for side, readings in samples.items()
        for key in ("held", "peak", "after", "baseline")
    }
    results["overhead_per_trace"] = (results["flow_held"] - results["floor_held"]) / traces
    results["flow_after_pct"] = 100 * results["flow_after"] / results["flow_baseline"]
    results["floor_after_pct"] = 100 * results["floor_after"] / results["floor_baseline"]
    results.update(traces=traces, loop=common.loop_label())
    return results


def rows(r: dict[str, Any]) -> list[common.Row]:
    return [
        (
            f"memory, {r['traces']:,} traces in flight",
            "<= 500 B per trace over floor",
            f"{r['overhead_per_trace']:,.0f} B/trace (held {size(r['flow_held'])} vs "
            f"{size(r['floor_held'])}; peak {size(r['flow_peak'])} vs {size(r['floor_peak'])})",
        ),
        (
            "memory after drain, stop, gc",
            "within 5% of start",
            f"{r['flow_after_pct']:+.2f}% ({size(r['flow_after'])} over "
            f"{size(r['flow_baseline'], signed=False)} at start; floor {size(r['floor_after'])})",
        ),
    ]


def cli() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--traces", type=int, default=10_000)
    args = parser.parse_args()
    coroutine = functools.partial(main, traces=args.traces, rounds=args.rounds)
    results = common.run(coroutine, args.loop)
    title = "memory: 1 gated node, unbounded floe, tracemalloc"
    common.report(title, args.rounds, results["loop"], rows(results))


if __name__ == "__main__":
    cli()
