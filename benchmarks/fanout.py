"""Fan-out to 4 identity nodes and ``join_k(name, 4)``, against a bare-asyncio floor.

The flow: a source identity node -> 4 identity branch nodes -> ``join_k("join", 4)`` ->
Rookery, validation off everywhere. The floor does the same work with plain queues of the
same capacity: a fan task puts each message on 4 branch queues, 4 branch tasks forward to
one join queue, and a join task keeps a bucket per trace id and, at the 4th item, puts
``first.model_copy(update={"payload": [payloads]})`` (what ``join_k`` returns) on an out
queue. Messages carry distinct trace ids, so every message opens and closes one bucket.

Run: ``python benchmarks/fanout.py [--messages 20000] [--rounds 5] [--loop asyncio|uvloop]``.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

import _common as common
from _common import MAXSIZE, FlowPipe, QueuePipe, forward, identity, pipelined

from penguiflow import Message, Node, NodePolicy, create, join_k

WIDTH = 4


class BareFanout(QueuePipe):
    """The floor: fan task, branch tasks, join task, all on plain asyncio queues."""

    async def _fan(self, branches: list[asyncio.Queue[Any]]) -> None:
        while True:
            item = await self.inbox.get()
            for branch in branches:
                await branch.put(item)

    async def _join(self, joined: asyncio.Queue[Any]) -> None:
        buckets: dict[str, list[Message]] = {}
        while True:
            item = await joined.get()
            bucket = buckets.setdefault(item.trace_id, [])
            bucket.append(item)
            if len(bucket) == WIDTH:
                del buckets[item.trace_id]
                payloads = [message.payload for message in bucket]
                await self.out.put(bucket[0].model_copy(update={"payload": payloads}))

    def start(self) -> None:
        branches = [asyncio.Queue[Any](MAXSIZE) for _ in range(WIDTH)]
        joined = asyncio.Queue[Any](MAXSIZE)
        self.spawn(self._fan(branches))
        for branch in branches:
            self.spawn(forward(branch, joined))
        self.spawn(self._join(joined))


def flow_fanout() -> FlowPipe:
    """The runtime: source -> 4 branches -> join_k -> Rookery."""
    policy = NodePolicy(validate="none")
    source = Node(identity, name="source", policy=policy)
    branches = [Node(identity, name=f"branch{i}", policy=policy) for i in range(WIDTH)]
    join = join_k("join", WIDTH)
    adjacencies = [source.to(*branches), *(b.to(join) for b in branches), join.to()]
    return FlowPipe(create(*adjacencies, queue_maxsize=MAXSIZE))


async def main(*, messages: int = 20_000, rounds: int = 5) -> dict[str, Any]:
    batch = common.make_messages(messages)
    await pipelined(BareFanout(), batch[:1000])
    await pipelined(flow_fanout(), batch[:1000])
    sides = {
        "floor_msgs_per_s": lambda: pipelined(BareFanout(), batch),
        "flow_msgs_per_s": lambda: pipelined(flow_fanout(), batch),
    }
    measured = await common.interleave(rounds, sides)
    results: dict[str, Any] = dict(measured)
    results["throughput_ratio"] = measured.ratio("flow_msgs_per_s", "floor_msgs_per_s")
    results.update(messages=messages, loop=common.loop_label())
    return results


def rows(r: dict[str, Any]) -> list[common.Row]:
    flow, floor = common.rate(r["flow_msgs_per_s"]), common.rate(r["floor_msgs_per_s"])
    return [
        (
            f"fan-out {WIDTH} + join_k, pipelined {r['messages']:,} msgs",
            ">= 0.4x floor msg/s",
            f"{r['throughput_ratio']:.2f}x ({flow} vs {floor})",
        )
    ]


def cli() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    args = parser.parse_args()
    coroutine = functools.partial(main, messages=args.messages, rounds=args.rounds)
    results = common.run(coroutine, args.loop)
    title = f"fanout: source -> {WIDTH} branches -> join_k, floe size {MAXSIZE}"
    common.report(title, args.rounds, results["loop"], rows(results))


if __name__ == "__main__":
    cli()
