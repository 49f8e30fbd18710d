"""Trace ownership between processes sharing one durable store, through the store's leases.

Each process (``lease_worker.py``) opens the store under an owner id of its own with a short
lease (``LEASE_TTL_S``, renewed every third of it). The contract checked:

* while the process that started some traces is alive, another's ``recover()`` takes none
  of them (its count is 0, it runs none, and the first process finishes them itself);
* once that process is killed with SIGKILL, its traces are still its own until its lease
  expires; then ``recover()`` elsewhere takes every unfinished one and finishes it;
* two processes recovering the same dead owner's traces at the same moment take each trace
  once between them: their counts add up to the number of unfinished traces, and no trace
  runs in both;
* ``recover()`` returns its count without waiting for the caller to fetch, even when the
  flow cannot hold every recovered trace at once.

Expiry is a matter of time, so after a kill the test asks for ``recover()`` again and again
(every ``POLL_S``) until the traces are taken or a deadline well past the expiry; whether a
call before expiry takes nothing is checked only for a call answered quickly after the kill,
when the lease is certainly still valid (renewed at most a third of its length before).
Every other wait is on a line the child prints.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from stores.conftest import PG_DSN, postgres_connection

from recovery.children import Child, StoredStatus, read_postgres_traces, read_sqlite_traces, spawn

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable
    from contextlib import AbstractAsyncContextManager

WORKER = Path(__file__).with_name("lease_worker.py")
LEASE_TTL_S = 1.5
POLL_S = 0.1
EXPIRY_DEADLINE_S = 3 * LEASE_TTL_S + 5.0
"""After a kill, how long the test waits for ``recover()`` to take the dead owner's traces."""
REPLY_S = 10.0
pytestmark = pytest.mark.timeout(60)


@dataclass
class SharedStore:
    """One store, as the children open it and as the test reads it."""

    spec: str
    read: Callable[[], Awaitable[dict[str, StoredStatus]]]
    logs: Path

    def process(self, owner: str, *args: str) -> AbstractAsyncContextManager[Child]:
        return spawn(
            WORKER,
            owner,
            "--store",
            self.spec,
            "--owner",
            owner,
            "--lease-ttl",
            str(LEASE_TTL_S),
            *args,
            logs=self.logs,
        )


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SharedStore]:
    if request.param == "sqlite":
        path = tmp_path / "flow.db"

        async def read_file() -> dict[str, StoredStatus]:
            return read_sqlite_traces(path)

        yield SharedStore(f"sqlite:{path}", read_file, tmp_path)
        return
    connection = await postgres_connection()
    schema = f"pf_lease_{uuid.uuid4().hex}"

    async def read_schema() -> dict[str, StoredStatus]:
        return await read_postgres_traces(connection, schema)

    try:
        yield SharedStore(f"postgres:{PG_DSN}#{schema}", read_schema, tmp_path)
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


def owner_id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


async def holding(child: Child, count: int) -> set[str]:
    """Wait for ``child`` to have started its ``count`` traces; return their ids."""
    await child.line("READY")
    held = set(child.having("ACK"))
    assert len(held) == count, child.describe()
    return held


async def recover(child: Child) -> int:
    return int((await child.command("RECOVER", "TOOK", timeout_s=REPLY_S)).split()[1])


async def recover_until(children: list[Child], expected: int, deadline: float) -> list[int]:
    """Ask every child to ``recover()`` at once, round after round, until ``expected`` traces
    are taken between them or ``deadline`` (monotonic) passes; return each child's total."""
    totals = [0] * len(children)
    while True:
        took = await asyncio.gather(*(recover(child) for child in children))
        totals = [total + each for total, each in zip(totals, took, strict=True)]
        if sum(totals) >= expected or time.monotonic() >= deadline:
            return totals
        await asyncio.sleep(POLL_S)


async def fetched(child: Child, count: int) -> set[str]:
    """Wait for ``child`` to fetch ``count`` results; return their traces."""
    await child.until(lambda: len(child.having("GOT")) >= count, f"fetched {count} results")
    return set(child.having("GOT"))


async def close(child: Child) -> None:
    """Close the child's input, so it stops its flow and its store, and wait for it to exit."""
    assert child.process.stdin is not None
    child.process.stdin.close()
    await child.line("BYE")
    assert await child.finish() == 0, child.describe()


def ran_once(child: Child, traces: set[str]) -> None:
    runs = Counter(child.having("RAN"))
    twice = {trace: n for trace, n in runs.items() if n > 1}
    assert not twice, f"{child.name} ran these more than once: {twice}"
    assert set(runs) == traces, (
        f"{child.name} ran {len(set(runs) - traces)} traces it should not have, and not"
        f" {len(traces - set(runs))} that it should have"
    )


async def test_a_live_owner_keeps_its_traces(store: SharedStore) -> None:
    a, b = owner_id("a"), owner_id("b")
    async with store.process(a, "--hold", "12", "--hang") as first:
        held = await holding(first, 12)
        async with store.process(b) as second:
            await second.line("STARTED")
            took = await recover(second)
            assert took == 0, f"{b} took {took} of the 12 traces of {a}, which is alive"
            rows = await store.read()
            assert {rows[trace].status for trace in held} == {"running"}
            owners = {rows[trace].owner for trace in held}
            if owners != {None}:  # the schema names each trace's owner
                assert owners == {a}, f"the traces of {a}, alive, are owned by {owners}"
            await first.send("GO")
            assert await fetched(first, 12) == held
            await close(second)
            assert not second.having("RAN"), f"{b} ran traces of {a}: {second.having('RAN')}"
            assert not second.having("GOT")
        await close(first)
    rows = await store.read()
    assert {rows[trace].status for trace in held} == {"finished"}


async def test_a_dead_owners_traces_are_taken_over_once_its_lease_expires(
    store: SharedStore,
) -> None:
    a, b = owner_id("a"), owner_id("b")
    async with store.process(a, "--hold", "12", "--hang") as first, store.process(b) as second:
        held = await holding(first, 12)
        await second.line("STARTED")
        assert await recover(second) == 0, f"{b} took traces of {a}, which is alive"
        await first.kill()
        killed = time.monotonic()
        took = await recover(second)
        if time.monotonic() - killed < LEASE_TTL_S / 2:  # the lease is certainly still valid
            assert took == 0, f"{b} took {took} traces of {a} before its lease expired"
        totals = await recover_until([second], 12 - took, killed + EXPIRY_DEADLINE_S)
        assert took + totals[0] == 12, (
            f"{b} took {took + totals[0]} of the 12 unfinished traces of {a}, dead"
        )
        assert await fetched(second, 12) == held
        await close(second)
        ran_once(second, held)
    rows = await store.read()
    assert {rows[trace].status for trace in held} == {"finished"}


async def test_two_processes_recovering_at_once_take_each_trace_once(
    store: SharedStore,
) -> None:
    a, b, c = owner_id("a"), owner_id("b"), owner_id("c")
    async with store.process(a, "--hold", "60", "--hang") as first:
        held = await holding(first, 60)
        await first.kill()
        killed = time.monotonic()
    async with store.process(b) as second, store.process(c) as third:
        await second.line("STARTED")
        await third.line("STARTED")
        took = await recover_until([second, third], 60, killed + EXPIRY_DEADLINE_S)
        assert sum(took) == 60, f"{b} took {took[0]}, {c} took {took[1]} of 60 traces"
        got_b, got_c = await fetched(second, took[0]), await fetched(third, took[1])
        assert got_b.isdisjoint(got_c) and got_b | got_c == held
        await close(second)
        await close(third)
        ran_once(second, got_b)
        ran_once(third, got_c)
    rows = await store.read()
    assert {rows[trace].status for trace in held} == {"finished"}


async def test_recover_returns_before_anything_is_fetched(store: SharedStore) -> None:
    """300 recovered traces, a flow with room for a handful: recover() must not wait."""
    a, b = owner_id("a"), owner_id("b")
    async with store.process(a, "--hold", "300", "--hang", "--queue", "0") as first:
        held = await holding(first, 300)
        await first.kill()
        killed = time.monotonic()
    async with store.process(b, "--queue", "4") as second:
        await second.line("STARTED")
        took = await recover_until([second], 300, killed + EXPIRY_DEADLINE_S)
        assert took == [300]
        assert await fetched(second, 300) == held
        await close(second)
        ran_once(second, held)
        assert len(second.having("GOT")) == 300, "a recovered trace gave more than one result"
    rows = await store.read()
    assert {rows[trace].status for trace in held} == {"finished"}
