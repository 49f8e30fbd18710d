"""Worker processes for the recovery tests, driven and observed through their standard streams.

A ``Child`` collects its process's output lines as they come (so a chatty child never blocks
on a full pipe), lets the test wait for a line by prefix, and writes commands to its input.
Every wait is bounded by ``asyncio.timeout``: a hung child fails the test. ``spawn`` kills and
reaps the process on the way out, whatever happened.

Helpers to read a store's ``traces`` table directly (not through penguiflow) are here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from pathlib import Path

DEFAULT_WAIT_S = 20.0


@dataclass
class Child:
    """A running worker process and every line it has printed so far."""

    name: str
    process: asyncio.subprocess.Process
    stderr_path: Path
    lines: list[str] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    """When each line came (``time.monotonic``)."""
    ended: bool = False
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _reader: asyncio.Task[None] | None = None

    def start_reading(self) -> None:
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        stdout = self.process.stdout
        assert stdout is not None
        while True:
            raw = await stdout.readline()
            async with self._changed:
                if raw:
                    self.lines.append(raw.decode().rstrip("\n"))
                    self.times.append(time.monotonic())
                else:
                    self.ended = True
                self._changed.notify_all()
            if not raw:
                return

    def describe(self) -> str:
        """The child's last lines and its standard error, for an assertion message."""
        try:
            errors = self.stderr_path.read_text(errors="replace")[-3000:]
        except OSError:
            errors = "<no stderr file>"
        return (
            f"{self.name} (exit code {self.process.returncode}); last lines: {self.lines[-15:]}"
            f"; stderr: {errors!r}"
        )

    async def line(
        self, prefix: str, *, after: int = 0, timeout_s: float = DEFAULT_WAIT_S
    ) -> tuple[int, str]:
        """Wait for the first line from index ``after`` on that starts with ``prefix``."""
        seen = after
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                while True:
                    for index in range(seen, len(self.lines)):
                        if self.lines[index].startswith(prefix):
                            return index, self.lines[index]
                    seen = max(seen, len(self.lines))
                    if self.ended:
                        raise AssertionError(
                            f"{self.name} ended before saying {prefix!r}: {self.describe()}"
                        )
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name} did not say {prefix!r} within {timeout_s} s: {self.describe()}"
            ) from None

    async def until(
        self, done: Callable[[], bool], what: str, *, timeout_s: float = DEFAULT_WAIT_S
    ) -> None:
        """Wait until ``done()`` holds, checked on every new line; ``what`` names it."""
        try:
            async with asyncio.timeout(timeout_s), self._changed:
                while not done():
                    if self.ended:
                        raise AssertionError(f"{self.name} ended before {what}: {self.describe()}")
                    await self._changed.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name}: not {what} within {timeout_s} s: {self.describe()}"
            ) from None

    async def command(self, text: str, reply: str, *, timeout_s: float = DEFAULT_WAIT_S) -> str:
        """Send one command line and wait for the next line starting with ``reply``."""
        mark = len(self.lines)
        await self.send(text)
        return (await self.line(reply, after=mark, timeout_s=timeout_s))[1]

    async def send(self, text: str) -> None:
        stdin = self.process.stdin
        assert stdin is not None
        stdin.write(f"{text}\n".encode())
        await stdin.drain()

    async def finish(self, *, timeout_s: float = DEFAULT_WAIT_S) -> int:
        """Wait for the child to close its output and exit; return its exit code."""
        try:
            async with asyncio.timeout(timeout_s):
                if self._reader is not None:
                    await self._reader
                return await self.process.wait()
        except TimeoutError:
            raise AssertionError(
                f"{self.name} did not exit within {timeout_s} s: {self.describe()}"
            ) from None

    async def kill(self) -> None:
        """SIGKILL the child (if it still runs), reap it, and read what it printed before."""
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # it ended since the check
                self.process.kill()
        await self.process.wait()
        if self._reader is not None:
            await self._reader

    def having(self, prefix: str) -> list[str]:
        """The second word of every line that starts with ``prefix`` followed by a space."""
        return [line.split()[1] for line in self.lines if line.startswith(prefix + " ")]


@contextlib.asynccontextmanager
async def spawn(worker: Path, name: str, *args: str, logs: Path) -> AsyncIterator[Child]:
    """Run ``worker`` with ``args``; on exit kill it if it still runs, and reap it."""
    stderr_path = logs / f"{name}.stderr"
    with stderr_path.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            str(worker),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr,
        )
    child = Child(name, process, stderr_path)
    try:
        child.start_reading()
        yield child
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()
        if child._reader is not None:
            child._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await child._reader
        if process.stdin is not None:
            process.stdin.close()


# -- the store, read directly -----------------------------------------------------------------


@dataclass(frozen=True)
class StoredStatus:
    """What the ``traces`` table says of one trace."""

    status: str
    owner: str | None


def _owner_column(columns: list[str]) -> str | None:
    """The column naming a trace's owner, if the schema has one."""
    return next((name for name in columns if "owner" in name.lower()), None)


def read_sqlite_traces(path: Path) -> dict[str, StoredStatus]:
    """Every trace of the SQLite store at ``path``: status and owner (None without one)."""
    if not path.exists():
        return {}
    connection = sqlite3.connect(path)
    try:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(traces)")]
        if not columns:
            return {}
        owner = _owner_column(columns)
        select = f"SELECT trace_id, status, {owner or 'NULL'} FROM traces"
        return {
            str(trace): StoredStatus(str(status), None if who is None else str(who))
            for trace, status, who in connection.execute(select)
        }
    finally:
        connection.close()


async def read_postgres_traces(connection: Any, schema: str) -> dict[str, StoredStatus]:
    """Every trace in ``schema``: status and owner (None without one).

    A killed client's last ``COMMIT`` may still be on its way through the server when the
    test reads: the read first takes a ``SHARE`` lock on the table, which waits for every
    transaction that has written to it to commit or roll back.
    """
    rows = await connection.fetch(
        "SELECT column_name FROM information_schema.columns"
        " WHERE table_schema = $1 AND table_name = 'traces'",
        schema,
    )
    columns = [str(row["column_name"]) for row in rows]
    if not columns:
        return {}
    owner = _owner_column(columns)
    select = f'SELECT trace_id, status, {owner or "NULL"} AS who FROM "{schema}".traces'
    async with connection.transaction():
        await connection.execute("SET LOCAL lock_timeout = '10s'")
        await connection.execute(f'LOCK TABLE "{schema}".traces IN SHARE MODE')
        rows = await connection.fetch(select)
    return {
        str(row["trace_id"]): StoredStatus(
            str(row["status"]), None if row["who"] is None else str(row["who"])
        )
        for row in rows
    }
