"""Crash recovery for real: a process running a flow on SQLite (and on PostgreSQL) is killed
with SIGKILL mid-run; a new process re-drives every trace that had not finished.

The two processes talk through their standard output (``READY``, ``done``, ``recovered``),
so the test waits on what the child says, never on a timer. A child still running when the
test ends, as when it fails by timeout, is killed and reaped.

Whether an unreachable PostgreSQL skips or fails the PostgreSQL case is decided by
``stores.conftest.postgres_connection``, as for the store tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from stores.conftest import PG_DSN, postgres_connection

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

WORKER = Path(__file__).with_name("crash_worker.py")
JOBS, FINISH = 20, 8
# Each phase may take READ_TIMEOUT; two of them fit in the test's own timeout, so a hung
# child fails the test from inside (and the ``finally`` below reaps it) before pytest-timeout.
READ_TIMEOUT = 50
pytestmark = pytest.mark.timeout(120)


@contextlib.asynccontextmanager
async def spawn(*args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    """Run the worker with ``args``; kill it and wait for it if it is still running at exit."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, str(WORKER), *args, stdout=asyncio.subprocess.PIPE
    )
    try:
        yield process
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended since the check
                process.kill()
        await process.wait()


async def lines_until(process: asyncio.subprocess.Process, last: str) -> list[str]:
    """Read the child's lines up to (and including) one starting with ``last``."""
    assert process.stdout is not None
    seen: list[str] = []
    async with asyncio.timeout(READ_TIMEOUT):
        while True:
            raw = await process.stdout.readline()
            assert raw, f"the worker ended before saying {last!r}; it said {seen}"
            line = raw.decode().strip()
            seen.append(line)
            if line.startswith(last):
                return seen


async def crash_and_recover(store: str, effects: Path) -> None:
    common = ["--store", store, "--effects", str(effects), "--jobs", str(JOBS)]
    async with spawn("first", *common, "--finish", str(FINISH)) as first:
        said = await lines_until(first, "READY")
        first.send_signal(signal.SIGKILL)
        assert await first.wait() == -signal.SIGKILL
    finished = {line.split()[1] for line in said if line.startswith("done ")}
    assert len(finished) == FINISH

    async with spawn("recover", *common) as second:
        said = await lines_until(second, "COUNT")
        assert await second.wait() == 0
    recovered = {line.split()[1] for line in said if line.startswith("recovered ")}
    assert said[-1] == f"COUNT {JOBS - FINISH}"

    # Every trace reached the Rookery, in one process or the other, and none twice.
    assert finished | recovered == {f"job-{i}" for i in range(JOBS)}
    assert finished.isdisjoint(recovered)
    # At least once: a trace in progress at the crash ran again, with the same key.
    keys: dict[str, set[str]] = {}
    runs: dict[str, int] = {}
    for line in effects.read_text().splitlines():
        trace, key = line.split()
        keys.setdefault(trace, set()).add(key)
        runs[trace] = runs.get(trace, 0) + 1
    twice = {trace for trace, count in runs.items() if count == 2}
    assert twice and twice <= recovered  # the ones `work` was running when it was killed
    assert all(len(found) == 1 for found in keys.values())


async def test_kill_9_then_recover_on_sqlite(tmp_path: Path) -> None:
    await crash_and_recover(f"sqlite:{tmp_path / 'flow.db'}", tmp_path / "effects.txt")


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    connection = await postgres_connection()
    schema = f"pf_crash_{uuid.uuid4().hex}"
    try:
        yield schema
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()


async def test_kill_9_then_recover_on_postgresql(tmp_path: Path, pg_schema: str) -> None:
    await crash_and_recover(f"postgres:{PG_DSN}#{pg_schema}", tmp_path / "effects.txt")
