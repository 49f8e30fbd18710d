"""What durability costs: roundtrips with a store, the writer against a bare insert, latency.

Three parts, each measured in one run with its sides interleaved (``_common.interleave``):

- ``roundtrip``: ``--callers`` concurrent callers (each ``emit(msg, trace_id=T)`` then
  ``fetch(trace_id=T)``, over and over; ``--requests`` in all) through a chain of 4 no-op
  nodes with floes of 256, with no store, with a ``SQLiteStore`` (a file in a temporary
  directory) and with a ``PostgresStore`` (a schema of its own, dropped afterwards), each
  store journaling the trace lifecycle only: ``events="none"`` when the stores take that
  option (the report says which mode ran). Traces per second, the store's flush included,
  and each store's ratio to no store.
- ``audit``: every event kept. The store's writer alone (``--events`` ``StoredEvent``s fed
  to ``save_event``, then ``flush()``) against a bare batched insert of the same rows into a
  table of the same schema, in batches of the store's default size: ``executemany`` in one
  transaction per batch on ``aiosqlite`` (WAL, ``synchronous=NORMAL``, as the store), binary
  ``COPY`` (``copy_records_to_table``) on ``asyncpg``. The floors' rows are built before
  their clock starts, so they time the inserts alone, where the writer's time includes
  turning events into rows. Rows per second and the ratio; then, for context, a pipelined
  flow on the same chain saving every event (writes per second, journal included).
- ``latency``: one caller at a time doing emit then fetch through the same chain, with no
  store and with each store journaling the lifecycle: median and p99 microseconds per round
  trip over every round's samples, and the median over rounds of each store's median
  against no store's median of the same round.

Under every store line, the writer's counters: commits, writes per commit (mean and
largest), commits per second and the share of the wall time the writer spent committing.

PostgreSQL is at ``$PENGUIFLOW_BENCH_POSTGRES`` (default
``postgresql://postgres@127.0.0.1:5432/test``) and skipped if unreachable.

Run: ``python benchmarks/store_paths.py [--part roundtrip|audit|latency|all] [--rounds 5]
[--callers 1000] [--requests 10000] [--events 50000] [--messages 5000] [--trips 300]
[--no-postgres] [--loop asyncio|uvloop]``. Prints medians and ratios. Numbers, not assertions.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import itertools
import json
import os
import statistics
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import _common as common
import aiosqlite

from penguiflow import Headers, Message, Node, NodePolicy, PenguiFlow, create
from penguiflow.metrics import FlowEvent
from penguiflow.state import StoredEvent
from penguiflow.stores.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from penguiflow.stores.sqlite import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

    from penguiflow.stores._types import WriteOp

SCHEMA_PREFIX = "pf_bench_"
PG_DSN = os.environ.get("PENGUIFLOW_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")
HOPS = 4
MAXSIZE = 256
PARTS = ("roundtrip", "audit", "latency")
LABELS = {"none": "no store", "sqlite": "SQLiteStore", "postgres": "PostgresStore"}
EVENT_COLUMNS = ("trace_id", "ts", "kind", "node_name", "node_id", "payload")
SEPARATORS = (",", ":")
SQLITE_INSERT = (
    "INSERT INTO events (trace_id, ts, kind, node_name, node_id, payload) VALUES (?, ?, ?, ?, ?, ?)"
)


# ------------------------------------------------------------------------- the writer's counters


@dataclass
class Tally:
    """What a store's writer did: commits, writes committed, and the time spent committing."""

    commits: int = 0
    writes: int = 0
    largest: int = 0
    busy_s: float = 0.0
    wall_s: float = 0.0

    def add(self, size: int, seconds: float) -> None:
        self.commits += 1
        self.writes += size
        self.largest = max(self.largest, size)
        self.busy_s += seconds

    def figures(self) -> dict[str, float]:
        wall = self.wall_s or float("nan")
        return {
            "commits": self.commits,
            "writes": self.writes,
            "mean_batch": self.writes / self.commits if self.commits else 0.0,
            "largest": self.largest,
            "commits_per_s": self.commits / wall,
            "busy": self.busy_s / wall,
        }


class CountedSQLiteStore(SQLiteStore):
    """A ``SQLiteStore`` that counts its commits (through the documented subclass hook)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tally = Tally()

    async def _commit_batch(self, batch: Sequence[WriteOp]) -> None:
        started = time.perf_counter()
        await super()._commit_batch(batch)
        self.tally.add(len(batch), time.perf_counter() - started)


def counted_postgres_store(*args: Any, **kwargs: Any) -> Any:
    """A ``PostgresStore`` that counts its commits; asyncpg is imported only when needed."""
    from penguiflow.stores.postgres import PostgresStore

    class CountedPostgresStore(PostgresStore):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.tally = Tally()

        async def _commit_batch(self, batch: Sequence[WriteOp]) -> None:
            started = time.perf_counter()
            await super()._commit_batch(batch)
            self.tally.add(len(batch), time.perf_counter() - started)

    return CountedPostgresStore(*args, **kwargs)


def journal_only(store_class: type[Any]) -> dict[str, Any]:
    """The options that keep a store to the trace lifecycle, if this revision has them."""
    if "events" in inspect.signature(store_class).parameters:
        return {"events": "none"}
    return {}


def postgres_class() -> type[Any]:
    from penguiflow.stores.postgres import PostgresStore

    return PostgresStore


def default_batch(store_class: type[Any]) -> int:
    """The batch size a store commits at unless told otherwise."""
    return int(inspect.signature(store_class).parameters["batch_size"].default)


async def postgres_reachable() -> bool:
    import asyncpg  # type: ignore[import-untyped, unused-ignore]

    try:
        connection = await asyncpg.connect(PG_DSN, timeout=5)
    except (OSError, TimeoutError, asyncpg.PostgresError):
        return False
    await connection.close()
    return True


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


async def drop_schema(schema: str) -> None:
    import asyncpg  # type: ignore[import-untyped, unused-ignore]

    connection = await asyncpg.connect(PG_DSN)
    try:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    finally:
        await connection.close()


@dataclass
class Bench:
    """Where a run keeps its files, and the writer counters of each side's rounds."""

    directory: Path
    tallies: dict[str, list[dict[str, float]]] = field(default_factory=dict)

    @asynccontextmanager
    async def store(
        self, kind: str, *, lifecycle_only: bool, side: str | None = None
    ) -> AsyncIterator[Any]:
        """Open a fresh store of ``kind`` (None for "none"); remove its data afterwards.

        With ``side``, the writer's counters of this store are kept under that name; the
        caller sets ``tally.wall_s`` to the time it measured.
        """
        if kind == "none":
            yield None
            return
        store: Any
        if kind == "sqlite":
            path = self.directory / f"{uuid.uuid4().hex}.db"
            options = journal_only(SQLiteStore) if lifecycle_only else {}
            try:
                async with CountedSQLiteStore(path, **options) as store:
                    yield store
            finally:
                remove_database(path)
        else:
            schema = f"{SCHEMA_PREFIX}{uuid.uuid4().hex}"
            options = journal_only(postgres_class()) if lifecycle_only else {}
            try:
                async with counted_postgres_store(PG_DSN, schema=schema, **options) as store:
                    yield store
            finally:
                await drop_schema(schema)
        if side is not None:
            self.tallies.setdefault(side, []).append(store.tally.figures())

    def tally(self, side: str) -> dict[str, float]:
        """The median over rounds of each of ``side``'s writer counters."""
        rounds = self.tallies[side]
        return {key: statistics.median(r[key] for r in rounds) for key in rounds[0]}


# ----------------------------------------------------------------------------------- the chain


async def noop(message: Any, ctx: Any) -> Any:
    return message


def chain(store: Any) -> PenguiFlow:
    """4 no-op nodes, validation off, floes of 256, with ``store`` as the state store."""
    policy = NodePolicy(validate="none")
    nodes = [Node(noop, name=f"n{i}", policy=policy) for i in range(HOPS)]
    adjacencies = [a.to(b) for a, b in itertools.pairwise(nodes)]
    return create(*adjacencies, queue_maxsize=MAXSIZE, state_store=store)


HEADERS = Headers(tenant="bench")


async def roundtrip(flow: PenguiFlow, trace_id: str, payload: int) -> None:
    await flow.emit(Message(payload=payload, headers=HEADERS), trace_id=trace_id)
    await flow.fetch(trace_id=trace_id)


# -------------------------------------------------------------------------------- 1. roundtrip


async def roundtrip_rate(bench: Bench, kind: str, callers: int, requests: int) -> float:
    """Traces per second, ``callers`` at once, the store's flush included."""
    per_caller = max(1, requests // callers)
    async with bench.store(kind, lifecycle_only=True, side=f"roundtrip_{kind}") as store:
        flow = chain(store)
        flow.run()

        async def caller(index: int) -> None:
            for i in range(per_caller):
                await roundtrip(flow, f"c{index}-{i}", i)

        started = time.perf_counter()
        await asyncio.gather(*(caller(c) for c in range(callers)))
        if store is not None:
            await store.flush()
        elapsed = time.perf_counter() - started
        await flow.stop()
        if store is not None:
            store.tally.wall_s = elapsed
    return per_caller * callers / elapsed


async def part_roundtrip(
    bench: Bench, kinds: Sequence[str], *, callers: int, requests: int, rounds: int
) -> dict[str, Any]:
    for kind in kinds:  # warm up every side once
        await roundtrip_rate(bench, kind, callers, callers)
    bench.tallies.clear()
    sides = {
        kind: functools.partial(roundtrip_rate, bench, kind, callers, requests) for kind in kinds
    }
    measured = await common.interleave(rounds, sides)
    results: dict[str, Any] = {f"roundtrip_{kind}_per_s": measured[kind] for kind in kinds}
    for kind in kinds[1:]:
        results[f"roundtrip_{kind}_ratio"] = measured.ratio(kind, "none")
        results[f"roundtrip_{kind}_tally"] = bench.tally(f"roundtrip_{kind}")
    return results


# ------------------------------------------------------------------------------------ 2. audit


def make_events(count: int) -> list[StoredEvent]:
    """Events shaped like the chain's: node_start/node_success at 4 nodes, 8 per trace."""
    events = []
    now = time.time()
    for i in range(count):
        trace, step = divmod(i, 2 * HOPS)
        node = f"n{step // 2}"
        kind = "node_start" if step % 2 == 0 else "node_success"
        trace_id = uuid.UUID(int=trace).hex
        event = FlowEvent(kind, now, node, node, trace_id, 1, 0.01, 0, 1, 1, 64, 1, 1, False)
        events.append(StoredEvent.from_flow_event(event))
    return events


def rows_of(events: Sequence[StoredEvent]) -> list[tuple[Any, ...]]:
    """The rows a bare insert writes: each event's columns, the payload as JSON text.

    The floors build them before their clock starts: they time the inserts alone.
    """
    return [
        (
            e.trace_id,
            e.ts,
            e.kind,
            e.node_name,
            e.node_id,
            json.dumps(e.payload, separators=SEPARATORS),
        )
        for e in events
    ]


async def writer_rate(bench: Bench, kind: str, events: Sequence[StoredEvent]) -> float:
    """Rows per second through a fresh store's writer: every save, then the flush."""
    async with bench.store(kind, lifecycle_only=False, side=f"writer_{kind}") as store:
        started = time.perf_counter()
        for event in events:
            await store.save_event(event)
        await store.flush()
        elapsed = time.perf_counter() - started
        store.tally.wall_s = elapsed
    return len(events) / elapsed


async def sqlite_floor(bench: Bench, events: Sequence[StoredEvent], batch: int) -> float:
    """Rows per second of ``executemany`` into the store's schema, one transaction a batch.

    The same pragmas as the store (WAL, ``synchronous=NORMAL``), the same tables and indexes.
    """
    path = bench.directory / f"floor-{uuid.uuid4().hex}.db"
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute("PRAGMA journal_mode = WAL")
        await db.execute("PRAGMA synchronous = NORMAL")
        for migration in SQLITE_MIGRATIONS:
            for statement in migration.statements:
                await db.execute(statement)
        batches = [rows_of(events[start : start + batch]) for start in range(0, len(events), batch)]
        started = time.perf_counter()
        for rows in batches:
            await db.execute("BEGIN")
            await db.executemany(SQLITE_INSERT, rows)
            await db.execute("COMMIT")
        elapsed = time.perf_counter() - started
    finally:
        await db.close()
        remove_database(path)
    return len(events) / elapsed


async def postgres_floor(events: Sequence[StoredEvent], batch: int) -> float:
    """Rows per second of binary ``COPY`` into the store's schema, one per batch."""
    import asyncpg  # type: ignore[import-untyped, unused-ignore]

    from penguiflow.stores.postgres import MIGRATIONS as POSTGRES_MIGRATIONS

    schema = f"{SCHEMA_PREFIX}floor_{uuid.uuid4().hex}"
    connection = await asyncpg.connect(PG_DSN)
    try:
        await connection.execute(f'CREATE SCHEMA "{schema}"')
        await connection.execute(f'SET search_path TO "{schema}"')
        for migration in POSTGRES_MIGRATIONS:
            for statement in migration.statements:
                await connection.execute(statement)
        batches = [rows_of(events[start : start + batch]) for start in range(0, len(events), batch)]
        started = time.perf_counter()
        for rows in batches:
            await connection.copy_records_to_table(
                "events", records=rows, columns=EVENT_COLUMNS, schema_name=schema
            )
        elapsed = time.perf_counter() - started
    finally:
        try:
            await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        finally:
            await connection.close()
    return len(events) / elapsed


async def flow_audit_rate(bench: Bench, kind: str, messages: int) -> float:
    """Writes per second of a pipelined flow saving every event, the store's flush included."""
    batch = [Message(payload=i, headers=HEADERS) for i in range(messages)]
    async with bench.store(kind, lifecycle_only=False, side=f"flow_{kind}") as store:
        flow = chain(store)
        flow.run()

        async def produce() -> None:
            for message in batch:
                await flow.emit(message)

        async def consume() -> None:
            for _ in batch:
                await flow.fetch()

        started = time.perf_counter()
        await asyncio.gather(produce(), consume())
        await store.flush()
        elapsed = time.perf_counter() - started
        await flow.stop()
        store.tally.wall_s = elapsed
        writes = int(store.statistics().committed)
    bench.tallies.setdefault(f"flow_{kind}_msgs", []).append({"per_s": messages / elapsed})
    return writes / elapsed


async def part_audit(
    bench: Bench, kinds: Sequence[str], *, events: int, messages: int, rounds: int
) -> dict[str, Any]:
    stored = make_events(events)
    batches = {"sqlite": default_batch(SQLiteStore)}
    if "postgres" in kinds:
        batches["postgres"] = default_batch(postgres_class())
    floors: dict[str, Callable[[Sequence[StoredEvent]], Awaitable[float]]] = {
        "sqlite": lambda rows: sqlite_floor(bench, rows, batches["sqlite"]),
        "postgres": lambda rows: postgres_floor(rows, batches["postgres"]),
    }
    stores = [kind for kind in kinds if kind != "none"]
    for kind in stores:  # warm up every side once
        await writer_rate(bench, kind, stored[:2000])
        await floors[kind](stored[:2000])
        await flow_audit_rate(bench, kind, 200)
    bench.tallies.clear()
    sides: dict[str, Callable[[], Awaitable[float]]] = {}
    for kind in stores:
        sides[f"writer_{kind}"] = functools.partial(writer_rate, bench, kind, stored)
        sides[f"floor_{kind}"] = functools.partial(floors[kind], stored)
        sides[f"flow_{kind}"] = functools.partial(flow_audit_rate, bench, kind, messages)
    measured = await common.interleave(rounds, sides)
    results: dict[str, Any] = {"audit_batches": batches}
    for kind in stores:
        results[f"audit_{kind}_writer_per_s"] = measured[f"writer_{kind}"]
        results[f"audit_{kind}_floor_per_s"] = measured[f"floor_{kind}"]
        results[f"audit_{kind}_ratio"] = measured.ratio(f"writer_{kind}", f"floor_{kind}")
        results[f"audit_{kind}_writer_tally"] = bench.tally(f"writer_{kind}")
        results[f"audit_{kind}_flow_writes_per_s"] = measured[f"flow_{kind}"]
        results[f"audit_{kind}_flow_msgs_per_s"] = bench.tally(f"flow_{kind}_msgs")["per_s"]
        results[f"audit_{kind}_flow_tally"] = bench.tally(f"flow_{kind}")
    return results


# ---------------------------------------------------------------------------------- 3. latency


async def latency_samples(bench: Bench, kind: str, trips: int) -> list[float]:
    """Microseconds of each of ``trips`` round trips made one at a time."""
    samples = []
    async with bench.store(kind, lifecycle_only=True, side=f"latency_{kind}") as store:
        flow = chain(store)
        flow.run()
        for i in range(10):  # this flow's first trips (and the store's first commits)
            await roundtrip(flow, f"warm-{i}", i)
        if store is not None:
            await store.flush()
            store.tally = Tally()  # count the measured trips' commits only
        begun = time.perf_counter()
        for i in range(trips):
            started = time.perf_counter_ns()
            await roundtrip(flow, f"t{i}", i)
            samples.append((time.perf_counter_ns() - started) / 1000)
        if store is not None:
            await store.flush()  # in the writer's wall time, not in any round trip
        wall = time.perf_counter() - begun
        await flow.stop()
        if store is not None:
            store.tally.wall_s = wall
    return samples


def p99(samples: Sequence[float]) -> float:
    return statistics.quantiles(samples, n=100)[98] if len(samples) > 1 else samples[0]


async def part_latency(
    bench: Bench, kinds: Sequence[str], *, trips: int, rounds: int
) -> dict[str, Any]:
    for kind in kinds:  # warm up every side once
        await latency_samples(bench, kind, 20)
    bench.tallies.clear()
    pooled: dict[str, list[float]] = {kind: [] for kind in kinds}
    medians: dict[str, list[float]] = {kind: [] for kind in kinds}
    for index in range(rounds):  # the order rotates each round, as in common.interleave
        shift = index % len(kinds)
        for kind in [*kinds[shift:], *kinds[:shift]]:
            samples = await latency_samples(bench, kind, trips)
            pooled[kind].extend(samples)
            medians[kind].append(statistics.median(samples))
    measured = common.Rounds(medians)
    results: dict[str, Any] = {}
    for kind in kinds:
        results[f"latency_{kind}_median_us"] = statistics.median(pooled[kind])
        results[f"latency_{kind}_p99_us"] = p99(pooled[kind])
    for kind in kinds[1:]:
        results[f"latency_{kind}_ratio"] = measured.ratio(kind, "none")
        results[f"latency_{kind}_tally"] = bench.tally(f"latency_{kind}")
    return results


# ------------------------------------------------------------------------------------ the run


async def main(
    *,
    parts: Sequence[str] = PARTS,
    callers: int = 1_000,
    requests: int = 10_000,
    events: int = 50_000,
    messages: int = 5_000,
    trips: int = 300,
    rounds: int = 5,
    postgres: bool = True,
) -> dict[str, Any]:
    reachable = postgres and await postgres_reachable()
    kinds = ["none", "sqlite", *(["postgres"] if reachable else [])]
    modes = {"sqlite": journal_only(SQLiteStore)}
    if reachable:
        modes["postgres"] = journal_only(postgres_class())
    results: dict[str, Any] = {
        "parts": list(parts),
        "kinds": kinds,
        "postgres": postgres,
        "modes": {kind: mode.get("events", "all") for kind, mode in modes.items()},
        "callers": callers,
        "requests": max(1, requests // callers) * callers,
        "events": events,
        "messages": messages,
        "trips": trips,
        "rounds": rounds,
        "loop": common.loop_label(),
    }
    with tempfile.TemporaryDirectory(prefix="penguiflow-bench-") as name:
        bench = Bench(Path(name))
        if "roundtrip" in parts:
            results.update(
                await part_roundtrip(
                    bench, kinds, callers=callers, requests=requests, rounds=rounds
                )
            )
        if "audit" in parts:
            results.update(
                await part_audit(bench, kinds, events=events, messages=messages, rounds=rounds)
            )
        if "latency" in parts:
            results.update(await part_latency(bench, kinds, trips=trips, rounds=rounds))
    return results


# ------------------------------------------------------------------------------------ report


def writer_line(tally: dict[str, float]) -> str:
    return (
        f"{tally['commits']:,.0f} commits of {tally['mean_batch']:,.1f} writes"
        f" (largest {tally['largest']:,.0f}), {tally['commits_per_s']:,.0f} commits/s,"
        f" committing {tally['busy']:.0%} of the time"
    )


def rows(r: dict[str, Any]) -> list[common.Row]:
    result: list[common.Row] = []
    stores = r["kinds"][1:]
    targets = {"sqlite": ">= 0.5x", "postgres": ">= 0.3x"}
    if "roundtrip" in r["parts"]:
        result.append(
            (
                f"roundtrips, {r['callers']:,} callers, {r['requests']:,} requests, no store",
                "-",
                f"{r['roundtrip_none_per_s']:,.0f} traces/s",
            )
        )
        for kind in stores:
            result.append(
                (
                    f"roundtrips, {LABELS[kind]} (events={r['modes'][kind]}), flush included",
                    f"{targets[kind]} no store",
                    f"{r[f'roundtrip_{kind}_ratio']:.2f}x"
                    f" ({r[f'roundtrip_{kind}_per_s']:,.0f} traces/s)",
                )
            )
            result.append(("  its writer", "-", writer_line(r[f"roundtrip_{kind}_tally"])))
    if "audit" in r["parts"]:
        floors = {"sqlite": "executemany", "postgres": "COPY"}
        for kind in stores:
            batch = r["audit_batches"][kind]
            result.append(
                (
                    f"{LABELS[kind]} writer, {r['events']:,} events, vs bare {floors[kind]}"
                    f" in batches of {batch:,}",
                    ">= 0.8x bare",
                    f"{r[f'audit_{kind}_ratio']:.2f}x ({r[f'audit_{kind}_writer_per_s']:,.0f}"
                    f" rows/s vs {r[f'audit_{kind}_floor_per_s']:,.0f} rows/s)",
                )
            )
            result.append(("  its writer", "-", writer_line(r[f"audit_{kind}_writer_tally"])))
            result.append(
                (
                    f"pipelined flow + {LABELS[kind]}, every event, {r['messages']:,} msgs",
                    "(context)",
                    f"{r[f'audit_{kind}_flow_writes_per_s']:,.0f} writes/s"
                    f" ({r[f'audit_{kind}_flow_msgs_per_s']:,.0f} msg/s)",
                )
            )
            result.append(("  its writer", "-", writer_line(r[f"audit_{kind}_flow_tally"])))
    if "latency" in r["parts"]:
        for kind in r["kinds"]:
            mode = "" if kind == "none" else f" (events={r['modes'][kind]})"
            ratio = "" if kind == "none" else f"; {r[f'latency_{kind}_ratio']:.2f}x no store"
            result.append(
                (
                    f"one caller, {r['trips']:,} round trips a round, {LABELS[kind]}{mode}",
                    "-",
                    f"median {r[f'latency_{kind}_median_us']:,.0f} us,"
                    f" p99 {r[f'latency_{kind}_p99_us']:,.0f} us{ratio}",
                )
            )
            if kind != "none":
                result.append(("  its writer", "-", writer_line(r[f"latency_{kind}_tally"])))
    if r["postgres"] and "postgres" not in r["kinds"]:
        result.append((f"PostgresStore at {PG_DSN}", "-", "unreachable, not measured"))
    return result


def cli() -> None:
    parser = common.parser(__doc__)
    parser.set_defaults(rounds=5)
    parser.add_argument("--part", choices=[*PARTS, "all"], default="all")
    parser.add_argument("--callers", type=int, default=1_000)
    parser.add_argument("--requests", type=int, default=10_000, help="roundtrip part, in all")
    parser.add_argument("--events", type=int, default=50_000, help="audit part: writer rows")
    parser.add_argument("--messages", type=int, default=5_000, help="audit part: flow messages")
    parser.add_argument("--trips", type=int, default=300, help="latency part: per side a round")
    parser.add_argument("--no-postgres", action="store_true", help="skip PostgreSQL")
    args = parser.parse_args()
    coroutine = functools.partial(
        main,
        parts=PARTS if args.part == "all" else (args.part,),
        callers=args.callers,
        requests=args.requests,
        events=args.events,
        messages=args.messages,
        trips=args.trips,
        rounds=args.rounds,
        postgres=not args.no_postgres,
    )
    started = time.perf_counter()
    results = common.run(coroutine, args.loop)
    title = f"store_paths: what durability costs, {HOPS} no-op hops, floes of {MAXSIZE}"
    common.report(title, args.rounds, results["loop"], rows(results))
    print(f"  ({time.perf_counter() - started:.1f}s)")


if __name__ == "__main__":
    cli()
