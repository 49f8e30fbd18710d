"""A long pipelined run through the 4-node chain, watching every per-trace structure.

N messages (100,000 by default, distinct trace ids) go through the identity chain of
``chain.py`` with bounded floes while a consumer fetches them. Every ``--every`` fetched
messages the run samples ``flow._residue()`` (counts of traces, cancel flags, queued items,
roundtrip inboxes, locks, tasks the flow owns, ...) and the number of asyncio tasks. It
reports, over all rounds, the largest value of each during the run and the value after
``stop()``.

The bound: at most every floe full plus one item held by each worker can be in flight, so
no per-trace map should ever count more than ``(hops + 1) * floe size + hops`` traces, and
after ``stop()`` everything the flow holds should be empty with no asyncio task left over.
The same rounds time a bare-queue chain for context (no target of its own; see chain.py).

Run: ``python benchmarks/soak.py [--messages 100000] [--every 1000] [--rounds 5]
[--loop asyncio|uvloop]``.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import _common as common
from _common import HOPS, MAXSIZE, BareChain, flow_chain, pipelined

TRACE_BOUND = (HOPS + 1) * MAXSIZE + HOPS
# Structures this shape (plain emit/fetch, no bus, no streams, no subflows) never uses.
UNUSED = ("rookery_buffer", "inboxes", "shared", "locks", "helpers", "publishes", "external")


def bounds() -> dict[str, int]:
    """The most each sampled count may reach while the chain runs."""
    result = dict.fromkeys((*UNUSED, "stream_counters"), 0)
    result.update(traces=TRACE_BOUND, trace_events=TRACE_BOUND, queued=(HOPS + 1) * MAXSIZE)
    result.update(workers=HOPS, worker_index=HOPS)
    # Extra asyncio tasks: the producer and consumer that gather() wraps, one per worker.
    result["tasks"] = 2 + HOPS
    return result


async def watched_run(
    messages: list[Any], every: int, during: dict[str, int], after: dict[str, int]
) -> float:
    """Run the chain once, folding maxima into ``during`` and leftovers into ``after``."""
    chain = flow_chain()
    tasks_before = len(asyncio.all_tasks())

    def sample() -> dict[str, int]:
        counts = chain.flow._residue()
        counts["tasks"] = len(asyncio.all_tasks()) - tasks_before
        return counts

    def probe() -> None:
        for key, value in sample().items():
            during[key] = max(during.get(key, 0), value)

    rate = await pipelined(chain, messages, probe=probe, every=every)
    for key, value in sample().items():
        after[key] = max(after.get(key, 0), value)
    return rate


async def main(*, messages: int = 100_000, every: int = 1000, rounds: int = 5) -> dict[str, Any]:
    batch = common.make_messages(messages)
    await pipelined(BareChain(), batch[:1000])
    during: dict[str, int] = {}
    after: dict[str, int] = {}
    sides = {
        "floor_msgs_per_s": lambda: pipelined(BareChain(), batch),
        "flow_msgs_per_s": lambda: watched_run(batch, every, during, after),
    }
    measured = await common.interleave(rounds, sides)
    results: dict[str, Any] = dict(measured)
    results["throughput_ratio"] = measured.ratio("flow_msgs_per_s", "floor_msgs_per_s")
    results.update(
        messages=messages,
        loop=common.loop_label(),
        during=during,
        after=after,
        bounds=bounds(),
        over_bound=sorted(k for k, v in during.items() if v > bounds().get(k, v)),
        left_after_stop=sorted(k for k, v in after.items() if v),
    )
    return results


def rows(r: dict[str, Any]) -> list[common.Row]:
    during, after = r["during"], r["after"]
    over = ", ".join(r["over_bound"]) or "none"
    left = ", ".join(r["left_after_stop"]) or "nothing"
    return [
        (
            f"soak, {r['messages']:,} msgs, max traces alive",
            f"<= {TRACE_BOUND} in flight",
            f"{during['traces']} (flags {during['trace_events']}, queued {during['queued']}); "
            f"over bound: {over}",
        ),
        (
            "soak, after stop()",
            "all 0, no extra tasks",
            f"traces {after['traces']}, extra tasks {after['tasks']}; nonzero: {left}",
        ),
        (
            "soak, throughput (context)",
            "none (chain: >= 0.5x)",
            f"{r['throughput_ratio']:.2f}x ({common.rate(r['flow_msgs_per_s'])} vs "
            f"{common.rate(r['floor_msgs_per_s'])})",
        ),
    ]


def details(r: dict[str, Any]) -> None:
    print(f"  {'count':<16}{'max during run':>16}{'bound':>8}{'after stop()':>14}")
    for key, value in r["during"].items():
        bound = r["bounds"].get(key, "-")
        print(f"  {key:<16}{value:>16}{bound:>8}{r['after'].get(key, 0):>14}")
    print("  (tasks: asyncio tasks beyond those alive before the flow was built)")


def cli() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--every", type=int, default=1000, help="sample every N fetches")
    args = parser.parse_args()
    coroutine = functools.partial(
        main, messages=args.messages, every=args.every, rounds=args.rounds
    )
    results = common.run(coroutine, args.loop)
    title = f"soak: {HOPS} identity hops, floe size {MAXSIZE}, sampled every {args.every}"
    common.report(title, args.rounds, results["loop"], rows(results))
    details(results)


if __name__ == "__main__":
    cli()
