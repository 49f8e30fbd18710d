"""A process that runs a flow on a durable store, for the crash-and-recover test.

``first`` phase: emits ``--jobs`` traces; the ``work`` node finishes the first ``--finish``
of them and hangs on the rest, as if they were in progress when the machine died. Once the
finished ones have been fetched (and printed as ``done <trace>``) and the store has flushed,
it prints ``READY`` and waits to be killed.

``recover`` phase: builds the same flow (same node names and edges, hence the same flow key)
on the same store, calls ``flow.recover()``, fetches every re-driven trace and prints
``recovered <trace>`` for each, then ``COUNT <n>``; ``work`` now finishes everything.

Every ``work`` call appends ``<trace> <idempotency key>`` to ``--effects``, standing in for a
side effect that an idempotency key would make safe.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import TYPE_CHECKING

from store_spec import open_store

from penguiflow import Headers, Message, Node, NodePolicy, create

if TYPE_CHECKING:
    from penguiflow.core import Context


# Both phases name themselves alike, as a restarted service would: the second takes over the
# first's traces at once instead of waiting for its lease to expire.
OWNER = "crash-worker"


async def run(args: argparse.Namespace) -> None:
    hang = asyncio.Event()

    async def work(message: Message, ctx: Context) -> Message:
        with open(args.effects, "a", encoding="utf-8") as effects:
            effects.write(f"{message.trace_id} {ctx.idempotency_key(message)}\n")
            effects.flush()
            os.fsync(effects.fileno())
        if args.phase == "first" and int(message.payload) >= args.finish:
            await hang.wait()  # in progress when the process is killed
        return message.model_copy(update={"payload": f"result {message.payload}"})

    async def deliver(message: Message, ctx: Context) -> Message:
        return message

    policy = NodePolicy(validate="none", concurrency=4)
    work_node = Node(work, name="work", policy=policy)
    deliver_node = Node(deliver, name="deliver", policy=NodePolicy(validate="none"))
    async with open_store(args.store, owner_id=OWNER) as store:
        flow = create(work_node.to(deliver_node), state_store=store)
        flow.run()
        try:
            if args.phase == "first":
                for index in range(args.jobs):
                    message = Message(payload=index, headers=Headers(tenant="crash"))
                    await flow.emit(message.model_copy(update={"trace_id": f"job-{index}"}))
                for _ in range(args.finish):
                    done = await flow.fetch()
                    print(f"done {done.trace_id}", flush=True)
                await store.flush()
                print("READY", flush=True)
                await hang.wait()
            else:
                count = await flow.recover()
                for _ in range(count):
                    done = await flow.fetch()
                    print(f"recovered {done.trace_id}", flush=True)
                print(f"COUNT {count}", flush=True)
        finally:
            await flow.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("phase", choices=["first", "recover"])
    parser.add_argument("--store", required=True, help="sqlite:<path> or postgres:<dsn>#<schema>")
    parser.add_argument("--effects", required=True)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--finish", type=int, default=8)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
