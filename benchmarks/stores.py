"""State stores: how fast each one's writer commits, and what it costs the 4-node chain.

Two measurements per store (memory, SQLite, PostgreSQL):

- writer: ``--events`` StoredEvents (8 per trace, like the chain's messages) saved as fast as
  ``save_event`` returns, then ``flush()``; events per second from the first save to the end
  of the flush, on a fresh store each round.
- chain: the pipelined 4-node identity chain of ``chain.py`` with the store attached as
  ``state_store``; messages per second from the first emit to the end of the store's flush,
  so events still buffered when the last message arrives are paid for. Compared with the
  same chain without a store, and with a null store (``save_event`` does nothing), which
  isolates what building the events costs the runtime from what the store itself costs.

PostgreSQL is measured on a fresh schema at ``$PENGUIFLOW_BENCH_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``) and skipped if unreachable.

Run: ``python benchmarks/stores.py [--messages 20000] [--events 50000] [--rounds 5]
[--loop asyncio|uvloop]``. Prints medians and ratios. Numbers, not assertions.
"""

from __future__ import annotations

import asyncio
import functools
import os
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _common as common
from _common import BareChain, FlowPipe, identity, pipelined

from penguiflow import Node, NodePolicy, create
from penguiflow.metrics import FlowEvent
from penguiflow.state import StoredEvent
from penguiflow.stores import MemoryStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

PG_DSN = os.environ.get("PENGUIFLOW_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
STORES = ("memory", "sqlite", "postgres")
LABELS = {"memory": "MemoryStore", "sqlite": "SQLiteStore", "postgres": "PostgresStore"}


class NullStore:
    """Accepts every write and keeps nothing: the runtime's share of the cost.

    It has the trace lifecycle methods, so the flow journals traces with it as it does with
    the durable stores.
    """

    async def save_event(self, event: StoredEvent) -> None:
        return None

    async def save_trace_start(self, trace_id: str, message_json: str, *, flow_key: str) -> None:
        return None

    async def save_trace_end(self, trace_id: str, status: str) -> None:
        return None

    async def unfinished_traces(self, flow_key: str) -> list[Any]:
        return []

    async def load_history(self, trace_id: str) -> list[StoredEvent]:
        return []

    async def save_remote_binding(self, binding: Any) -> None:
        return None


async def postgres_reachable() -> bool:
    import asyncpg

    try:
        connection = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


@asynccontextmanager
async def opened(kind: str, directory: Path) -> AsyncIterator[Any]:
    """Open a fresh store of ``kind``; close it (and drop its data) afterwards."""
    if kind == "memory":
        async with MemoryStore() as store:
            yield store
    elif kind == "sqlite":
        from penguiflow.stores.sqlite import SQLiteStore

        async with SQLiteStore(directory / f"{uuid.uuid4().hex}.db") as store:
            yield store
    else:
        import asyncpg

        from penguiflow.stores.postgres import PostgresStore

        schema = f"pf_bench_{uuid.uuid4().hex}"
        try:
            async with PostgresStore(PG_DSN, schema=schema) as store:
                yield store
        finally:
            connection = await asyncpg.connect(PG_DSN)
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            await connection.close()


def make_events(count: int) -> list[StoredEvent]:
    """Events shaped like the chain's: node_start/node_success at 4 nodes, 8 per trace."""
    events = []
    for i in range(count):
        trace, step = divmod(i, 8)
        node = f"n{step // 2}"
        kind = "node_start" if step % 2 == 0 else "node_success"
        flow_event = FlowEvent(
            kind,
            time.time(),
            node,
            node,
            uuid.UUID(int=trace).hex,
            1,
            0.01,
            0,
            1,
            1,
            64,
            1,
            1,
            False,
        )
        events.append(StoredEvent.from_flow_event(flow_event))
    return events


async def writer_rate(kind: str, events: list[StoredEvent], directory: Path) -> float:
    """Events per second through a fresh store's writer, flush included."""
    async with opened(kind, directory) as store:
        started = time.perf_counter()
        for event in events:
            await store.save_event(event)
        await store.flush()
        return len(events) / (time.perf_counter() - started)


def stored_chain(store: Any) -> FlowPipe:
    """The chain of ``_common.flow_chain``, with ``store`` as its state store."""
    policy = NodePolicy(validate="none")
    nodes = [Node(identity, name=f"n{i}", policy=policy) for i in range(common.HOPS)]
    adjacencies = [nodes[i].to(nodes[i + 1]) for i in range(common.HOPS - 1)]
    return FlowPipe(create(*adjacencies, queue_maxsize=common.MAXSIZE, state_store=store))


async def chain_rate(kind: str | None, messages: list[Any], directory: Path) -> float:
    """Messages per second through the chain with a store of ``kind`` (None: no store)."""
    if kind is None:
        return await pipelined(stored_chain(None), messages)
    if kind == "null":
        return await pipelined(stored_chain(NullStore()), messages)
    async with opened(kind, directory) as store:
        pipe = stored_chain(store)
        pipe.start()
        started = time.perf_counter()

        async def produce() -> None:
            for message in messages:
                await pipe.emit(message)

        async def consume() -> None:
            for _ in messages:
                await pipe.fetch()

        await asyncio.gather(produce(), consume())
        await store.flush()  # buffered events are part of the cost
        elapsed = time.perf_counter() - started
        await pipe.stop()
        return len(messages) / elapsed


async def main(
    *, messages: int = 20_000, events: int = 50_000, rounds: int = 5, postgres: bool = True
) -> dict[str, Any]:
    kinds = [k for k in STORES if k != "postgres" or (postgres and await postgres_reachable())]
    batch = common.make_messages(messages)
    stored = make_events(events)
    with tempfile.TemporaryDirectory(prefix="penguiflow-bench-") as name:
        directory = Path(name)
        # Warm up every side once so that imports and first-call costs are not measured.
        await pipelined(BareChain(), batch[:1000])
        for kind in (None, "null", *kinds):
            await chain_rate(kind, batch[:1000], directory)
        sides: dict[str, Any] = {
            "floor_msgs_per_s": lambda: pipelined(BareChain(), batch),
            "flow_msgs_per_s": lambda: chain_rate(None, batch, directory),
            "null_msgs_per_s": lambda: chain_rate("null", batch, directory),
        }
        for kind in kinds:
            sides[f"{kind}_events_per_s"] = functools.partial(writer_rate, kind, stored, directory)
            sides[f"{kind}_msgs_per_s"] = functools.partial(chain_rate, kind, batch, directory)
        measured = await common.interleave(rounds, sides)
    results: dict[str, Any] = dict(measured)
    results["null_ratio"] = measured.ratio("null_msgs_per_s", "flow_msgs_per_s")
    for kind in kinds:
        results[f"{kind}_ratio"] = measured.ratio(f"{kind}_msgs_per_s", "flow_msgs_per_s")
        results[f"{kind}_vs_null"] = measured.ratio(f"{kind}_msgs_per_s", "null_msgs_per_s")
    results.update(
        kinds=kinds, messages=messages, events=events, loop=common.loop_label(), postgres=postgres
    )
    return results


def rows(r: dict[str, Any]) -> list[common.Row]:
    flow = common.rate(r["flow_msgs_per_s"])
    result: list[common.Row] = [
        (
            f"chain + null store (events, journal; nothing kept), {r['messages']:,} msgs",
            "(the runtime's share)",
            f"{r['null_ratio']:.2f}x of no store ({common.rate(r['null_msgs_per_s'])} vs {flow})",
        )
    ]
    for kind in r["kinds"]:
        label = LABELS[kind]
        result.append(
            (
                f"{label} writer, {r['events']:,} events",
                "-",
                f"{r[f'{kind}_events_per_s']:,.0f} events/s",
            )
        )
        target = "<= 25% slower than no store" if kind == "sqlite" else "-"
        result.append(
            (
                f"chain + {label}, pipelined {r['messages']:,} msgs, flush included",
                target,
                f"{r[f'{kind}_ratio']:.2f}x of no store, {r[f'{kind}_vs_null']:.2f}x of null "
                f"store ({common.rate(r[f'{kind}_msgs_per_s'])} vs {flow})",
            )
        )
    if "postgres" not in r["kinds"] and r["postgres"]:
        result.append((f"PostgresStore at {PG_DSN}", "-", "unreachable, not measured"))
    return result


def cli() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    args = parser.parse_args()
    coroutine = functools.partial(
        main,
        messages=args.messages,
        events=args.events,
        rounds=args.rounds,
        postgres=not args.no_postgres,
    )
    results = common.run(coroutine, args.loop)
    title = f"stores: writers and the {common.HOPS}-hop chain with a state store"
    common.report(title, args.rounds, results["loop"], rows(results))


if __name__ == "__main__":
    cli()
