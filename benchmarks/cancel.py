"""Cancelling many traces at once: loop time per cancel, against a bare-asyncio floor.

10,000 traces wait on the ingress floe of a one-node flow whose node is held (a floe of
10,000), and every one of them is cancelled, one ``await flow.cancel(T)`` after another. The
figure is the event loop's time for all the cancels, then the time until every cancelled
trace has ended once the node is let go (each queued item is dropped when the worker reaches
it). The floor sets 10,000 ``asyncio.Event``s: the least any per-trace cancel can cost.

Run: ``python benchmarks/cancel.py [--traces 10000] [--rounds 5] [--loop asyncio|uvloop]``.
Numbers, not assertions.
"""

from __future__ import annotations

import asyncio
import functools
import time
from typing import Any

import _common as common

from penguiflow import Headers, Message, Node, NodePolicy, create


async def floor(traces: int) -> float:
    """Seconds to set one Event per trace."""
    events = [asyncio.Event() for _ in range(traces)]
    started = time.perf_counter()
    for event in events:
        event.set()
    return time.perf_counter() - started


async def runtime(traces: int) -> tuple[float, float]:
    """Seconds of loop time for every cancel, then until every trace has ended."""
    gate = asyncio.Event()

    async def held(message: Any, ctx: Any) -> Any:
        await gate.wait()
        return message

    flow = create(
        Node(held, name="held", policy=NodePolicy(validate="none")).to(), queue_maxsize=traces + 1
    )
    flow.run()
    headers = Headers(tenant="bench")
    for i in range(traces):
        await flow.emit(Message(payload=i, headers=headers, trace_id=f"t{i}"))
    started = time.perf_counter()
    for i in range(traces):
        await flow.cancel(f"t{i}")
    cancelled = time.perf_counter() - started
    gate.set()
    started = time.perf_counter()
    while flow.health().traces_in_flight:  # noqa: ASYNC110 - polls between worker steps
        await asyncio.sleep(0)
    drained = time.perf_counter() - started
    await flow.stop()
    return cancelled, drained


async def main(*, traces: int, rounds: int) -> dict[str, Any]:
    await runtime(min(traces, 100))  # warm-up
    results: dict[str, list[float]] = {"floor_s": [], "cancel_s": [], "drain_s": []}
    for _ in range(rounds):
        results["floor_s"].append(await floor(traces))
        cancelled, drained = await runtime(traces)
        results["cancel_s"].append(cancelled)
        results["drain_s"].append(drained)
    medians = common.Rounds(results)
    out: dict[str, Any] = dict(medians)
    out.update(traces=traces, loop=common.loop_label())
    return out


def rows(r: dict[str, Any]) -> list[common.Row]:
    per_cancel_us = r["cancel_s"] / r["traces"] * 1e6
    return [
        (
            f"cancel {r['traces']:,} traces in flight",
            "< 1 s of loop time in all",
            f"{r['cancel_s']:.3f} s ({per_cancel_us:.1f} us per cancel; "
            f"floor {r['floor_s'] * 1e3:.1f} ms)",
        ),
        (
            "their queued items dropped as the worker reaches them",
            "(all traces end)",
            f"{r['drain_s']:.3f} s",
        ),
    ]


def cli() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--traces", type=int, default=10_000)
    args = parser.parse_args()
    results = common.run(functools.partial(main, traces=args.traces, rounds=args.rounds), args.loop)
    common.report("cancel", args.rounds, results["loop"], rows(results))


if __name__ == "__main__":
    cli()
