"""A process holding a lease on a durable store, driven by commands on its standard input.

It opens the store as ``--owner`` with a lease of ``--lease-ttl`` seconds, runs the flow
``work -> deliver`` and prints ``STARTED``. With ``--hold N`` it then emits ``N`` traces
(``<owner>-<i>``), printing ``ACK <trace>`` for each, flushes the store and prints ``READY``;
with ``--hang`` its ``work`` node waits on every message until told ``GO``, so those traces
stay in progress. ``work`` prints ``RAN <trace>`` for every message it is given.

Commands, one a line:

* ``RECOVER``: ``n = await flow.recover()``, then ``TOOK <n>``; the first one to take any
  trace also starts a fetcher, which prints ``GOT <trace>`` for every result (the flow is a
  chain: one result per trace). So nothing is fetched before a ``recover()`` that took
  traces has returned.
* ``GO``: let ``work`` finish the messages it holds and the ones to come; starts the fetcher.

When its input closes it stops the flow, closes the store and prints ``BYE``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import TYPE_CHECKING, Any

from store_spec import open_store

from penguiflow import Headers, Message, Node, NodePolicy, create

if TYPE_CHECKING:
    from penguiflow.core import Context, PenguiFlow


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def build(store: Any, go: asyncio.Event, queue_maxsize: int) -> PenguiFlow:
    async def work(message: Message, ctx: Context) -> Message:
        say(f"RAN {message.trace_id}")
        await go.wait()
        return message.model_copy(update={"payload": f"done {message.payload}"})

    async def deliver(message: Message, ctx: Context) -> Message:
        return message

    work_node = Node(work, name="work", policy=NodePolicy(validate="none", concurrency=4))
    deliver_node = Node(deliver, name="deliver", policy=NodePolicy(validate="none"))
    return create(work_node.to(deliver_node), state_store=store, queue_maxsize=queue_maxsize)


async def commands() -> asyncio.StreamReader:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    return reader


async def serve(flow: PenguiFlow, go: asyncio.Event) -> None:
    """Obey commands until the input closes."""
    fetcher: asyncio.Task[None] | None = None

    async def fetch_forever() -> None:
        while True:
            result = await flow.fetch()
            say(f"GOT {result.trace_id}")

    def start_fetching() -> None:
        nonlocal fetcher
        if fetcher is None:
            fetcher = asyncio.get_running_loop().create_task(fetch_forever())

    reader = await commands()
    try:
        while line := (await reader.readline()).decode().strip():
            if line == "RECOVER":
                took = await flow.recover()
                say(f"TOOK {took}")
                if took:
                    start_fetching()
            elif line == "GO":
                go.set()
                start_fetching()
            else:
                say(f"UNKNOWN {line}")
    finally:
        if fetcher is not None:
            fetcher.cancel()
            await asyncio.gather(fetcher, return_exceptions=True)


async def run(args: argparse.Namespace) -> None:
    go = asyncio.Event()
    if not args.hang:
        go.set()
    async with open_store(args.store, owner_id=args.owner, lease_ttl_s=args.lease_ttl) as store:
        flow = build(store, go, args.queue)
        flow.run()
        try:
            say("STARTED")
            for index in range(args.hold):
                trace = f"{args.owner}-{index}"
                message = Message(payload=index, headers=Headers(tenant="lease"), trace_id=trace)
                await flow.emit(message)
                say(f"ACK {trace}")
            if args.hold:
                await store.flush()
                say("READY")
            await serve(flow, go)
        finally:
            await flow.stop()
    say("BYE")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--store", required=True, help="sqlite:<path> or postgres:<dsn>#<schema>")
    parser.add_argument("--owner", required=True)
    parser.add_argument("--lease-ttl", type=float, required=True)
    parser.add_argument("--hold", type=int, default=0)
    parser.add_argument("--hang", action="store_true")
    parser.add_argument("--queue", type=int, default=64, help="the flow's queue_maxsize")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
