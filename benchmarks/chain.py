"""A 4-node identity chain against a bare-asyncio floor, measured in the same process.

The floor is a chain of ``asyncio.Queue``s (same capacity as the flow's floes) with one task
per hop moving the same ``Message`` objects. Two shapes:

- pipelined: a producer emits N messages while a consumer fetches them (throughput);
- one at a time: emit, then fetch, repeated (round-trip latency).

With ``--middleware`` a third side runs the pipelined shape on a flow with one no-op async
middleware, so that every event is built and delivered (two per node per message). Two more
sides take that line apart:

- ``events alone`` measures only what those events cost: building the ``2 * HOPS``
  ``FlowEvent``s of a message the way the runtime does and awaiting the middleware with each,
  with no runtime at all. Even a runtime that cost nothing could not beat
  ``floor / (floor + events alone)``.
- ``events free`` runs the middleware line again with the worker's event builder replaced by
  one that hands out a single prebuilt event: everything real (dispatch, middleware calls,
  accounting) except building the events. It is what the line would reach if building a
  ``FlowEvent`` cost nothing.

Run: ``python benchmarks/chain.py [--messages 20000] [--roundtrips 2000] [--middleware]
[--rounds 5] [--loop asyncio|uvloop]``. Prints medians and ratios. Numbers, not assertions.
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING, Any

import _common as common
from _common import BareChain, FlowPipe, flow_chain, pipelined

from penguiflow._runtime.context import Context
from penguiflow._runtime.endpoints import Endpoint
from penguiflow._runtime.events import EventTemplate
from penguiflow._runtime.traces import TraceRecord, TraceRegistry

if TYPE_CHECKING:
    from collections.abc import Mapping


async def noop(event: Any) -> None:
    return None


async def events_alone(messages: int) -> float:
    """Microseconds per message to build and deliver its events, and nothing else."""
    owner = Endpoint("n")
    template = EventTemplate(owner, Context(owner), TraceRegistry(64), 64)  # as a worker's
    record = TraceRecord(pending=1)
    started = time.perf_counter()
    for _ in range(messages):
        for _ in range(2 * common.HOPS):
            await noop(template.build("node_start", "t", record, 0, 0.0))
    return (time.perf_counter() - started) / messages * 1e6


async def events_free(batch: list[Any]) -> float:
    """The middleware line with the runtime's event builder replaced by a prebuilt event."""
    owner = Endpoint("n")
    prebuilt = EventTemplate(owner, Context(owner), TraceRegistry(64), 64).build(
        "node_start", "t", TraceRecord(pending=1), 0, 0.0
    )

    def hand_out(*fields: Any) -> Any:
        return prebuilt

    real = EventTemplate.build
    EventTemplate.build = hand_out  # type: ignore[method-assign]
    try:
        return await pipelined(flow_chain([noop]), batch)
    finally:
        EventTemplate.build = real  # type: ignore[method-assign]


async def one_at_a_time(pipe: BareChain | FlowPipe, messages: list[Any]) -> float:
    """Return the mean round trip in microseconds, one message in flight at a time."""
    pipe.start()
    started = time.perf_counter()
    for message in messages:
        await pipe.emit(message)
        await pipe.fetch()
    elapsed = time.perf_counter() - started
    await pipe.stop()
    return elapsed / len(messages) * 1e6


async def main(
    *, messages: int = 20_000, roundtrips: int = 2_000, middleware: bool = False, rounds: int = 5
) -> dict[str, Any]:
    batch = common.make_messages(messages)
    singles = common.make_messages(roundtrips)
    # Warm up every side once so that imports and first-call costs are not measured.
    await pipelined(BareChain(), batch[:1000])
    await pipelined(flow_chain(), batch[:1000])
    await pipelined(flow_chain([noop]), batch[:1000])

    sides = {
        "floor_msgs_per_s": lambda: pipelined(BareChain(), batch),
        "flow_msgs_per_s": lambda: pipelined(flow_chain(), batch),
        "floor_roundtrip_us": lambda: one_at_a_time(BareChain(), singles),
        "flow_roundtrip_us": lambda: one_at_a_time(flow_chain(), singles),
    }
    if middleware:
        sides["middleware_msgs_per_s"] = lambda: pipelined(flow_chain([noop]), batch)
        sides["events_alone_us"] = lambda: events_alone(messages)
        sides["events_free_msgs_per_s"] = lambda: events_free(batch)
    measured = await common.interleave(rounds, sides)
    results: dict[str, Any] = dict(measured)
    results["throughput_ratio"] = measured.ratio("flow_msgs_per_s", "floor_msgs_per_s")
    results["roundtrip_ratio"] = measured.ratio("flow_roundtrip_us", "floor_roundtrip_us")
    if middleware:
        results["middleware_ratio"] = measured.ratio("middleware_msgs_per_s", "floor_msgs_per_s")
        results["events_free_ratio"] = measured.ratio("events_free_msgs_per_s", "floor_msgs_per_s")

        def bound(figures: Mapping[str, float]) -> float:
            floor_us = 1e6 / figures["floor_msgs_per_s"]
            return floor_us / (floor_us + figures["events_alone_us"])

        results["middleware_bound"] = measured.per_round(bound)
    results.update(messages=messages, roundtrips=roundtrips, loop=common.loop_label())
    return results


def rows(r: dict[str, Any]) -> list[common.Row]:
    floor = common.rate(r["floor_msgs_per_s"])
    result = [
        (
            f"chain, pipelined {r['messages']:,} msgs",
            ">= 0.5x floor msg/s",
            f"{r['throughput_ratio']:.2f}x ({common.rate(r['flow_msgs_per_s'])} vs {floor})",
        ),
        (
            f"chain, one at a time ({r['roundtrips']:,} round trips)",
            "<= 1.5x floor time",
            f"{r['roundtrip_ratio']:.2f}x "
            f"({r['flow_roundtrip_us']:.1f} us vs {r['floor_roundtrip_us']:.1f} us)",
        ),
    ]
    if "middleware_ratio" in r:
        mw_rate = common.rate(r["middleware_msgs_per_s"])
        result.append(
            (
                "chain + no-op middleware, pipelined",
                ">= 0.25x floor msg/s",
                f"{r['middleware_ratio']:.2f}x ({mw_rate} vs {floor})",
            )
        )
        result.append(
            (
                "events alone: build + deliver a message's FlowEvents, no runtime",
                "(bound on the line above)",
                f"{r['events_alone_us']:.1f} us/msg vs floor {1e6 / r['floor_msgs_per_s']:.1f} "
                f"us/msg: at most {r['middleware_bound']:.2f}x for any runtime",
            )
        )
        free_rate = common.rate(r["events_free_msgs_per_s"])
        result.append(
            (
                "events free: the middleware line with events prebuilt, not built",
                "(ceiling of the middleware line)",
                f"{r['events_free_ratio']:.2f}x ({free_rate} vs {floor})",
            )
        )
    return result


def cli() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--roundtrips", type=int, default=2_000)
    parser.add_argument("--middleware", action="store_true", help="add the no-op middleware side")
    args = parser.parse_args()
    coroutine = functools.partial(
        main,
        messages=args.messages,
        roundtrips=args.roundtrips,
        middleware=args.middleware,
        rounds=args.rounds,
    )
    results = common.run(coroutine, args.loop)
    title = f"chain: {common.HOPS} identity hops, floe size {common.MAXSIZE}"
    common.report(title, args.rounds, results["loop"], rows(results))


if __name__ == "__main__":
    cli()
