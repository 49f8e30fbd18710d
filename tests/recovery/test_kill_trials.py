"""Kill -9 at a random moment loses no acknowledged trace and re-runs no fetched one.

Each trial runs ``kill_worker.py run`` on a fresh store: 2,000 traces from many concurrent
callers through a three-node flow, the child printing ``ACK <trace>`` once ``emit()`` has
returned and ``GOT <trace>`` once ``fetch()`` has handed out the result. The test SIGKILLs it
at a random moment after it says ``STARTED``, reads the store directly (``sqlite3`` or
``asyncpg``), and runs ``kill_worker.py recover`` on the same store, which takes the dead
process's unfinished traces over with ``recover()`` and fetches them; then it reads the store
again. The contract checked, per trial:

* lost: every trace whose ``emit()`` returned was fetched by the first child, or is
  ``finished`` in the store after the recovery (finished before the kill, or recovered);
* re-run: no trace whose result the first child fetched, nor one the store held as finished
  at the kill, is run again by the recovery;
* ``recover()`` returned as many traces as came back from the recovered flow.

Which traces the store holds as finished at the kill is read once the killed child's last
commit has landed or rolled back (see ``read_postgres_traces``); a snapshot can only miss a
commit, never invent one, so "finished at the kill" is never wrong, and the "lost" count
relies on the store after the recovery only.

The recovery child opens the store under a new owner id, as a replacement process would, so
it can take the traces over only once the dead owner's lease has expired: the first child's
lease lasts ``LEASE_TTL_S`` (the kill stops its heartbeat, so it expires at most that long
after the kill). The recovery child calls ``recover()`` until it has taken every trace that
must be unfinished (running in the store at the kill, or acknowledged and neither fetched nor
finished), or for a bounded time; the test itself never sleeps for the lease. (Reusing the
dead process's owner id would avoid the wait, but whether a store hands a process the traces
of its own owner id is not part of the contract.)

Each trial's kill moment and the child's seed derive from ``PENGUIFLOW_KILL_SEED`` and the
trial's number, and are printed, so a failing trial can be run again as it was (the moment
is the same; what the child has done by then depends on the machine). For longer soak runs:
``PENGUIFLOW_KILL_TRIALS_SQLITE``, ``PENGUIFLOW_KILL_TRIALS_POSTGRES``,
``PENGUIFLOW_KILL_TRACES`` and ``PENGUIFLOW_KILL_WITHIN_S`` (the window of kill moments).
PostgreSQL trials are skipped or failed as ``stores.conftest`` decides when the server is
unreachable.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from stores.conftest import PG_DSN, postgres_connection

from recovery.children import (
    StoredStatus,
    read_postgres_traces,
    read_sqlite_traces,
    spawn,
)

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

WORKER = Path(__file__).with_name("kill_worker.py")
SQLITE_TRIALS = int(os.environ.get("PENGUIFLOW_KILL_TRIALS_SQLITE", "20"))
POSTGRES_TRIALS = int(os.environ.get("PENGUIFLOW_KILL_TRIALS_POSTGRES", "8"))
TRACES = int(os.environ.get("PENGUIFLOW_KILL_TRACES", "2000"))
SEED = int(os.environ.get("PENGUIFLOW_KILL_SEED", "1729"))
LEASE_TTL_S = 0.75
# The kill comes uniformly within this many seconds of STARTED: about how long the 2,000
# traces take on an idle machine, so most kills land mid-run and a few after DONE.
KILL_WITHIN_S = float(os.environ.get("PENGUIFLOW_KILL_WITHIN_S", "0.7"))
STARTUP_S = 10.0
RECOVERY_S = 25.0
# A trial's waits (STARTUP_S, RECOVERY_S, the exit) fit in its timeout, so a hung child fails
# it from inside and ``spawn`` reaps it before pytest-timeout steps in.
pytestmark = pytest.mark.timeout(60)


@dataclass(frozen=True)
class Outcome:
    """What one trial saw; ``lost`` and ``rerun`` must be empty."""

    label: str
    acked: set[str]
    got: set[str]
    finished_at_kill: set[str]
    running_at_kill: set[str]
    took: int
    recovered: set[str]
    finished_after: set[str]
    ran_again: set[str]

    @property
    def lost(self) -> set[str]:
        return self.acked - self.got - self.finished_after

    @property
    def rerun(self) -> set[str]:
        return (self.got | self.finished_at_kill) & (self.recovered | self.ran_again)

    def summary(self) -> str:
        return (
            f"{self.label}: acked {len(self.acked)}, got {len(self.got)}; store at the kill:"
            f" {len(self.finished_at_kill)} finished, {len(self.running_at_kill)} running;"
            f" recover() took {self.took}, {len(self.recovered)} came back;"
            f" LOST {len(self.lost)}, RE-RUN {len(self.rerun)}"
        )


async def kill_trial(
    kind: str,
    trial: int,
    store: str,
    read_traces: Callable[[], Awaitable[dict[str, StoredStatus]]],
    logs: Path,
) -> Outcome:
    rng = random.Random(f"{SEED}:{kind}:{trial}")
    delay = rng.uniform(0.0, KILL_WITHIN_S)
    child_seed = rng.randrange(2**31)
    label = (
        f"{kind} trial {trial} (PENGUIFLOW_KILL_SEED={SEED}): child seed {child_seed},"
        f" SIGKILL {delay:.3f} s after STARTED"
    )
    print(label)
    common = ["--store", store, "--lease-ttl", str(LEASE_TTL_S)]
    async with spawn(
        WORKER,
        "first",
        "run",
        *common,
        "--traces",
        str(TRACES),
        "--seed",
        str(child_seed),
        logs=logs,
    ) as first:
        started, _ = await first.line("STARTED", timeout_s=STARTUP_S)
        await asyncio.sleep(delay)  # the one timer: the random kill moment
        await first.kill()
    assert first.process.returncode == -signal.SIGKILL, f"{label}: {first.describe()}"
    done = [at for line, at in zip(first.lines, first.times, strict=True) if line == "DONE"]
    if done:
        label += f" (it said DONE {done[0] - first.times[started]:.3f} s after STARTED)"
    assert not first.having("BAD"), f"{label}: wrong results {first.having('BAD')[:5]}"
    acked, got = set(first.having("ACK")), set(first.having("GOT"))

    before = await read_traces()
    finished_at_kill = {trace for trace, row in before.items() if row.status == "finished"}
    running_at_kill = {trace for trace, row in before.items() if row.status == "running"}
    # Under the contract an acknowledged trace neither fetched nor finished is running.
    expect = len(running_at_kill | (acked - got - finished_at_kill))
    patience = 2 * LEASE_TTL_S + 1.0
    async with spawn(
        WORKER,
        "recovery",
        "recover",
        *common,
        "--expect",
        str(expect),
        "--patience",
        str(patience),
        logs=logs,
    ) as second:
        _, count_line = await second.line("COUNT", timeout_s=RECOVERY_S)
        assert await second.finish(timeout_s=STARTUP_S) == 0, second.describe()
    after = await read_traces()
    return Outcome(
        label=label,
        acked=acked,
        got=got,
        finished_at_kill=finished_at_kill,
        running_at_kill=running_at_kill,
        took=int(count_line.split()[1]),
        recovered=set(second.having("RECOVERED")),
        finished_after={trace for trace, row in after.items() if row.status == "finished"},
        ran_again=set(second.having("RAN")),
    )


def check(outcome: Outcome) -> None:
    summary = outcome.summary()
    print(summary)
    problems = []
    if outcome.lost:
        problems.append(f"acknowledged, then lost: {sorted(outcome.lost)[:10]}")
    if outcome.rerun:
        problems.append(f"fetched or finished, then run again: {sorted(outcome.rerun)[:10]}")
    if outcome.took != len(outcome.recovered):
        problems.append(f"recover() took {outcome.took}, {len(outcome.recovered)} came back")
    assert not problems, summary + "\n" + "\n".join(problems)


@pytest.mark.parametrize("trial", range(SQLITE_TRIALS))
async def test_kill_9_at_random_on_sqlite(trial: int, tmp_path: Path) -> None:
    path = tmp_path / "flow.db"

    async def read() -> dict[str, StoredStatus]:
        return read_sqlite_traces(path)

    check(await kill_trial("sqlite", trial, f"sqlite:{path}", read, tmp_path))


@pytest.fixture
async def pg() -> AsyncIterator[tuple[Any, str]]:
    connection = await postgres_connection()
    schema = f"pf_kill_{uuid.uuid4().hex}"
    try:
        yield connection, schema
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


@pytest.mark.parametrize("trial", range(POSTGRES_TRIALS))
async def test_kill_9_at_random_on_postgresql(
    trial: int, tmp_path: Path, pg: tuple[Any, str]
) -> None:
    connection, schema = pg

    async def read() -> dict[str, StoredStatus]:
        return await read_postgres_traces(connection, schema)

    check(await kill_trial("postgres", trial, f"postgres:{PG_DSN}#{schema}", read, tmp_path))
