"""A 4-node identity chain against a bare-asyncio floor, measured in the same process.

The floor is a chain of ``asyncio.Queue``s (same capacity as the flow's floes) with one task
per hop moving the same ``Message`` objects. Two shapes:

- pipelined: a producer emits N messages while a consumer fetches them (throughput);
- one at a time: emit, then fetch, repeated (round-trip latency).

Run: ``python benchmarks/chain.py [--messages 20000] [--roundtrips 2000] [--rounds 5]``.
Prints the median of the rounds for each side and the ratios. Numbers, not assertions.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from penguiflow import Headers, Message, Node, NodePolicy, create

HOPS = 4
MAXSIZE = 64


def make_messages(count: int) -> list[Message]:
    headers = Headers(tenant="bench")
    return [Message(payload=i, headers=headers) for i in range(count)]


class BareChain:
    """The floor: one task per hop forwarding items between plain asyncio queues."""

    def __init__(self) -> None:
        self.queues = [asyncio.Queue[Any](MAXSIZE) for _ in range(HOPS + 1)]
        self.tasks: list[asyncio.Task[None]] = []

    async def _hop(self, inbox: asyncio.Queue[Any], outbox: asyncio.Queue[Any]) -> None:
        while True:
            item = await inbox.get()
            await outbox.put(item)

    def start(self) -> None:
        for i in range(HOPS):
            self.tasks.append(asyncio.create_task(self._hop(self.queues[i], self.queues[i + 1])))

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def emit(self, item: Any) -> None:
        await self.queues[0].put(item)

    async def fetch(self) -> Any:
        return await self.queues[-1].get()


class FlowChain:
    """The runtime: four identity nodes, validation off."""

    def __init__(self) -> None:
        async def identity(message: Any, ctx: Any) -> Any:
            return message

        nodes = [
            Node(identity, name=f"n{i}", policy=NodePolicy(validate="none")) for i in range(HOPS)
        ]
        adjacencies = [nodes[i].to(nodes[i + 1]) for i in range(HOPS - 1)]
        self.flow = create(*adjacencies, queue_maxsize=MAXSIZE)

    def start(self) -> None:
        self.flow.run()

    async def stop(self) -> None:
        await self.flow.stop()

    async def emit(self, item: Any) -> None:
        await self.flow.emit(item)

    async def fetch(self) -> Any:
        return await self.flow.fetch()


Chain = BareChain | FlowChain


async def pipelined(chain: Chain, messages: list[Message]) -> float:
    """Return messages per second with a producer and a consumer running at once."""

    async def produce() -> None:
        for message in messages:
            await chain.emit(message)

    async def consume() -> None:
        for _ in messages:
            await chain.fetch()

    chain.start()
    started = time.perf_counter()
    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - started
    await chain.stop()
    return len(messages) / elapsed


async def one_at_a_time(chain: Chain, messages: list[Message]) -> float:
    """Return the mean round trip in microseconds, one message in flight at a time."""
    chain.start()
    started = time.perf_counter()
    for message in messages:
        await chain.emit(message)
        await chain.fetch()
    elapsed = time.perf_counter() - started
    await chain.stop()
    return elapsed / len(messages) * 1e6


async def main(messages: int, roundtrips: int, rounds: int) -> dict[str, float]:
    batch = make_messages(messages)
    singles = make_messages(roundtrips)
    # Warm up both sides once so that imports and first-call costs are not measured.
    await pipelined(BareChain(), batch[:1000])
    await pipelined(FlowChain(), batch[:1000])

    results: dict[str, float] = {}
    # Interleave floor and runtime rounds so that machine noise hits both alike.
    floor_tp, flow_tp, floor_rt, flow_rt = [], [], [], []
    for _ in range(rounds):
        floor_tp.append(await pipelined(BareChain(), batch))
        flow_tp.append(await pipelined(FlowChain(), batch))
        floor_rt.append(await one_at_a_time(BareChain(), singles))
        flow_rt.append(await one_at_a_time(FlowChain(), singles))
    results["floor_msgs_per_s"] = statistics.median(floor_tp)
    results["flow_msgs_per_s"] = statistics.median(flow_tp)
    results["floor_roundtrip_us"] = statistics.median(floor_rt)
    results["flow_roundtrip_us"] = statistics.median(flow_rt)
    results["throughput_ratio"] = results["flow_msgs_per_s"] / results["floor_msgs_per_s"]
    results["roundtrip_ratio"] = results["flow_roundtrip_us"] / results["floor_roundtrip_us"]
    return results


def report(results: dict[str, float], messages: int, roundtrips: int, rounds: int) -> None:
    print(f"python {sys.version.split()[0]}, {HOPS} identity hops, floe size {MAXSIZE}")
    print(f"median of {rounds} rounds")
    print(
        f"pipelined, {messages} messages: floor {results['floor_msgs_per_s']:,.0f} msg/s, "
        f"penguiflow {results['flow_msgs_per_s']:,.0f} msg/s, "
        f"ratio {results['throughput_ratio']:.2f}x of floor (target >= 0.5x)"
    )
    print(
        f"one at a time, {roundtrips} round trips: floor {results['floor_roundtrip_us']:.1f} us, "
        f"penguiflow {results['flow_roundtrip_us']:.1f} us, "
        f"ratio {results['roundtrip_ratio']:.2f}x the floor's time (target <= 2x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--roundtrips", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    outcome = asyncio.run(main(args.messages, args.roundtrips, args.rounds))
    report(outcome, args.messages, args.roundtrips, args.rounds)
