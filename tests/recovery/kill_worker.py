"""A process that runs a busy flow on a durable store, to be killed at a random moment.

``run`` phase: builds the flow ``parse -> work -> deliver`` (concurrency 4, 8 and 2, each node
sleeping a little now and then), prints ``STARTED``, then drives ``--traces`` traces at once:
three in four as roundtrips (``emit(trace_id=T)`` then ``fetch(trace_id=T)``) from many
tasks, the rest with a plain ``emit()`` of a message that carries its trace id, fetched by a
pool of plain ``fetch()`` callers. ``ACK <trace>`` is printed (and flushed) as soon as an
``emit()`` returns, ``GOT <trace>`` as soon as a ``fetch()`` hands out the trace's result;
a result that is not what ``work`` makes of its input is printed as ``BAD <trace>``. When
every trace is fetched it prints ``DONE`` and waits: the test kills it, at whatever moment.

``recover`` phase: the same flow on the same store. It fetches from the start, calls
``recover()`` until it has taken over ``--expect`` traces (the running traces the test read
from the store after the kill) or ``--patience`` seconds have passed (an expired lease is
needed first, see the test), printing ``TOOK <n>`` per call; then prints ``RECOVERED
<trace>`` for each result it fetches, ``COUNT <total>`` once it has one per trace taken, and
exits. Here ``work`` prints ``RAN <trace>`` for every message it is given.

Either phase exits when its standard input closes (the test went away).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from typing import TYPE_CHECKING, Any

from store_spec import open_store

from penguiflow import Headers, Message, Node, NodePolicy, create

if TYPE_CHECKING:
    from penguiflow.core import Context, PenguiFlow

ROUNDTRIP_CALLERS = 48
PLAIN_EMITTERS = 16
PLAIN_FETCHERS = 16


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def result_of(payload: object) -> str:
    return f"done {payload}"


def build(store: Any, rng: random.Random, *, report_runs: bool) -> PenguiFlow:
    async def pause() -> None:
        if rng.random() < 0.3:
            await asyncio.sleep(rng.random() * 0.002)
        else:
            await asyncio.sleep(0)

    async def parse(message: Message, ctx: Context) -> Message:
        await pause()
        return message

    async def work(message: Message, ctx: Context) -> Message:
        if report_runs:
            say(f"RAN {message.trace_id}")
        await pause()
        return message.model_copy(update={"payload": result_of(message.payload)})

    async def deliver(message: Message, ctx: Context) -> Message:
        await pause()
        return message

    def node(fn: Any, concurrency: int) -> Node:
        return Node(
            fn, name=fn.__name__, policy=NodePolicy(validate="none", concurrency=concurrency)
        )

    parse_node, work_node, deliver_node = node(parse, 4), node(work, 8), node(deliver, 2)
    return create(parse_node.to(work_node), work_node.to(deliver_node), state_store=store)


async def stdin_closed() -> None:
    """Return once the test closes our standard input (or goes away)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while await reader.readline():
        pass


async def drive(flow: PenguiFlow, count: int, rng: random.Random) -> None:
    """Run ``count`` traces through ``flow`` from many callers at once."""
    indices = list(range(count))
    rng.shuffle(indices)
    roundtrips = [i for i in indices if i % 4 != 3]
    plain = [i for i in indices if i % 4 == 3]
    unfetched = len(plain)

    def check(result: Message, index: int | None = None) -> None:
        expected = result_of(index if index is not None else int(result.trace_id[1:]))
        say(f"{'GOT' if result.payload == expected else 'BAD'} {result.trace_id}")

    async def roundtrip_caller() -> None:
        while roundtrips:
            index = roundtrips.pop()
            trace = f"t{index}"
            await flow.emit(Message(payload=index, headers=Headers(tenant="kill")), trace_id=trace)
            say(f"ACK {trace}")
            check(await flow.fetch(trace_id=trace), index)

    async def plain_emitter() -> None:
        while plain:
            index = plain.pop()
            message = Message(payload=index, headers=Headers(tenant="kill"), trace_id=f"t{index}")
            await flow.emit(message)
            say(f"ACK {message.trace_id}")

    async def plain_fetcher() -> None:
        nonlocal unfetched
        while unfetched > 0:
            unfetched -= 1
            check(await flow.fetch())

    async with asyncio.TaskGroup() as group:
        for _ in range(ROUNDTRIP_CALLERS):
            group.create_task(roundtrip_caller())
        for _ in range(PLAIN_EMITTERS):
            group.create_task(plain_emitter())
        for _ in range(PLAIN_FETCHERS):
            group.create_task(plain_fetcher())


async def take_over(flow: PenguiFlow, expect: int, patience_s: float) -> int:
    """Call ``recover()`` until ``expect`` traces are taken or ``patience_s`` has passed."""
    deadline = time.monotonic() + patience_s
    total = 0
    while True:
        took = await flow.recover()
        say(f"TOOK {took}")
        total += took
        if total >= expect or time.monotonic() >= deadline:
            return total
        await asyncio.sleep(0.05)


async def run(args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    options: dict[str, Any] = {"lease_ttl_s": args.lease_ttl}
    if args.owner:
        options["owner_id"] = args.owner
    async with open_store(args.store, **options) as store:
        flow = build(store, rng, report_runs=args.phase == "recover")
        flow.run()
        try:
            if args.phase == "run":
                say("STARTED")
                await drive(flow, args.traces, rng)
                say("DONE")
                await stdin_closed()
                return
            recovered: list[str] = []
            arrived = asyncio.Event()

            async def fetch_forever() -> None:
                while True:
                    result = await flow.fetch()
                    say(f"RECOVERED {result.trace_id}")
                    recovered.append(result.trace_id)
                    arrived.set()

            fetcher = asyncio.get_running_loop().create_task(fetch_forever())
            try:
                total = await take_over(flow, args.expect, args.patience)
                while len(recovered) < total:
                    arrived.clear()
                    await arrived.wait()
                say(f"COUNT {total}")
            finally:
                fetcher.cancel()
                await asyncio.gather(fetcher, return_exceptions=True)
        finally:
            await flow.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["run", "recover"])
    parser.add_argument("--store", required=True, help="sqlite:<path> or postgres:<dsn>#<schema>")
    parser.add_argument("--traces", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--owner", default="")
    parser.add_argument("--lease-ttl", type=float, default=1.0)
    parser.add_argument("--expect", type=int, default=0)
    parser.add_argument("--patience", type=float, default=5.0)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
