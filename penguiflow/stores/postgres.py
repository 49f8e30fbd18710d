"""``PostgresStore``: the shared durable store, on PostgreSQL via an ``asyncpg`` pool.

Each batch is one transaction: its events go in with one binary ``COPY``, the other writes
with ``executemany``. Payloads are ``json`` (not ``jsonb``): it keeps the text as written and
accepts every escape the encoder produces, where ``jsonb`` refuses an escaped NUL. Opening takes
a transaction-scoped advisory lock, so processes that open one database at once migrate it
once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import urllib.parse
from typing import TYPE_CHECKING, Final, Protocol

try:
    import asyncpg  # type: ignore[import-untyped, unused-ignore]
except ImportError as exc:  # pragma: no cover - a child process runs it (test_optional_drivers)
    raise ImportError(
        "PostgresStore (penguiflow.stores.postgres) needs asyncpg: "
        "pip install 'penguiflow-runtime[postgres]'"
    ) from exc

from ._base import DEFAULT_FAILING_AFTER_S, DEFAULT_LEASE_TTL_S, Durability, StoreBase
from ._codec import clean_text
from ._fold import fold
from ._rows import (
    BINDING_COLUMNS,
    EVENT_COLUMNS,
    binding_from_row,
    binding_row,
    claim_traces_sql,
    event_from_row,
    event_rows,
    lease_row,
    select_traces,
    terminal_row,
    trace_end_row,
    trace_from_row,
    trace_upsert_row,
)
from ._schema import KNOWN_TABLES, SCHEMA_META, VERSION_KEY, Migration, check_tables, plan
from ._types import END_STATUSES

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from contextlib import AbstractAsyncContextManager

    from ..state import RemoteBinding, StoredEvent
    from ._base import Lease
    from ._fold import FoldedBatch
    from ._types import BindingQuery, StoredTrace, TraceQuery, WriteOp

__all__ = ["MIGRATIONS", "PostgresStore"]

logger = logging.getLogger("penguiflow.stores")

# Any constant shared by every penguiflow process: serialises schema checks and migrations.
_MIGRATION_LOCK: Final = 0x70656E67  # "peng"
# How long close() lets the pool say goodbye to the server before dropping its connections.
_POOL_CLOSE_TIMEOUT_S: Final = 2.0

MIGRATIONS: Final = (
    Migration(
        1,
        "schema_meta, events, remote_bindings",
        (
            "CREATE TABLE schema_meta (key text PRIMARY KEY, value text NOT NULL)",
            "CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
            " trace_id text, ts double precision, kind text NOT NULL, node_name text,"
            " node_id text, payload json NOT NULL)",
            "CREATE INDEX events_by_trace ON events (trace_id, id)",
            "CREATE INDEX events_by_ts ON events (ts)",
            "CREATE SEQUENCE remote_bindings_seq",
            "CREATE TABLE remote_bindings (binding_key text PRIMARY KEY, seq bigint NOT NULL,"
            " trace_id text NOT NULL, context_id text, task_id text NOT NULL,"
            " agent_url text NOT NULL, router_session_id text, remote_skill text,"
            " tenant_id text, user_id text, last_remote_task_id text,"
            " is_terminal boolean NOT NULL, metadata json NOT NULL,"
            " updated_at double precision NOT NULL)",
            "CREATE INDEX remote_bindings_by_session"
            " ON remote_bindings (router_session_id, agent_url, seq)",
        ),
    ),
    Migration(
        2,
        "traces",
        (
            "CREATE TABLE traces (trace_id text PRIMARY KEY, status text NOT NULL"
            " CHECK (status IN ('running', 'finished', 'cancelled', 'failed')),"
            " input_json text, flow_key text NOT NULL,"
            " created_at double precision NOT NULL, updated_at double precision NOT NULL)",
            "CREATE INDEX traces_by_status ON traces (status, updated_at)",
            "CREATE INDEX traces_by_update ON traces (updated_at)",
            "CREATE INDEX traces_by_flow ON traces (flow_key, status, created_at)",
        ),
    ),
    Migration(
        3,
        "leases; traces.lease_id and traces.targets",
        (
            "ALTER TABLE traces ADD COLUMN lease_id text",
            "ALTER TABLE traces ADD COLUMN targets text",
            "CREATE TABLE leases (lease_id text PRIMARY KEY, owner text NOT NULL,"
            " host text NOT NULL, pid bigint NOT NULL, started_at double precision NOT NULL,"
            " heartbeat_at double precision NOT NULL, expires_at double precision NOT NULL)",
            "CREATE INDEX leases_by_owner ON leases (owner)",
        ),
    ),
)
"""Every schema step, oldest first; see ``_schema``."""

_SET_VERSION: Final = (
    f"INSERT INTO {SCHEMA_META} (key, value) VALUES ('{VERSION_KEY}', $1)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_UPSERT_TRACES: Final = (
    "INSERT INTO traces (trace_id, status, input_json, flow_key, created_at, updated_at,"
    " lease_id, targets) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
    " ON CONFLICT (trace_id) DO UPDATE SET status = excluded.status,"
    " input_json = excluded.input_json, flow_key = excluded.flow_key,"
    " updated_at = excluded.updated_at, lease_id = excluded.lease_id,"
    " targets = excluded.targets"
)
# An ended lease (expires_at 0) is never renewed.
_RENEW_LEASES: Final = (
    "UPDATE leases SET heartbeat_at = $4, expires_at = $3"
    " WHERE lease_id = $1 AND owner = $2 AND expires_at > 0"
)
_REGISTER_LEASE: Final = (
    "INSERT INTO leases (lease_id, owner, host, pid, started_at, heartbeat_at, expires_at)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7)"
)
_END_OWNER_LEASES: Final = "UPDATE leases SET expires_at = 0 WHERE owner = $1 AND lease_id <> $2"
_END_LEASE: Final = "UPDATE leases SET expires_at = 0 WHERE lease_id = $1"
_CLAIM: Final = claim_traces_sql(lambda n: f"${n}", skip_locked=True)
_END_TRACES: Final = "UPDATE traces SET status = $2, updated_at = $3 WHERE trace_id = $1"
_SAVE_BINDINGS: Final = (
    f"INSERT INTO remote_bindings ({BINDING_COLUMNS}, updated_at, seq)"
    " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13,"
    " nextval('remote_bindings_seq'))"
    " ON CONFLICT (binding_key) DO UPDATE SET context_id = excluded.context_id,"
    " agent_url = excluded.agent_url, router_session_id = excluded.router_session_id,"
    " remote_skill = excluded.remote_skill, tenant_id = excluded.tenant_id,"
    " user_id = excluded.user_id, last_remote_task_id = excluded.last_remote_task_id,"
    " is_terminal = excluded.is_terminal, metadata = excluded.metadata,"
    " updated_at = excluded.updated_at, seq = excluded.seq"
)
_MARK_TERMINAL: Final = (
    "UPDATE remote_bindings SET is_terminal = true, updated_at = $2 WHERE binding_key = $1"
)
_HISTORY: Final = (
    "SELECT id, trace_id, ts, kind, node_name, node_id, payload FROM events"
    " WHERE trace_id = $1 ORDER BY id"
)
_FIND_BINDING: Final = (
    f"SELECT {BINDING_COLUMNS} FROM remote_bindings WHERE router_session_id = $1"
    " AND agent_url = $2 AND remote_skill IS NOT DISTINCT FROM $3"
    " AND tenant_id IS NOT DISTINCT FROM $4 AND user_id IS NOT DISTINCT FROM $5"
    " ORDER BY seq DESC LIMIT 1"
)
_LIST_BINDINGS: Final = (
    f"SELECT {BINDING_COLUMNS} FROM remote_bindings WHERE router_session_id = $1 ORDER BY seq"
)
# One statement, hence one transaction: the ended traces (through ``traces_by_status``), then
# their events (``events_by_trace``) and bindings. Under READ COMMITTED a trace that a commit
# restarts meanwhile is re-checked and kept; events committed after the statement began stay.
_PRUNE: Final = (
    "WITH gone AS (DELETE FROM traces WHERE status = ANY($2::text[]) AND updated_at < $1"
    " RETURNING trace_id),"
    " events_gone AS (DELETE FROM events WHERE trace_id IN (SELECT trace_id FROM gone)),"
    " bindings_gone AS (DELETE FROM remote_bindings"
    " WHERE trace_id IN (SELECT trace_id FROM gone)),"
    " leases_gone AS (DELETE FROM leases WHERE expires_at < $1 AND lease_id NOT IN"
    " (SELECT lease_id FROM traces WHERE status = 'running' AND lease_id IS NOT NULL))"
    " SELECT count(*) FROM gone"
)
_INSPECT: Final = (
    "SELECT table_name, column_name FROM information_schema.columns"
    " WHERE table_schema = current_schema() AND table_name = ANY($1::text[])"
)


class _Connection(Protocol):
    """The part of ``asyncpg.Connection`` this module uses (asyncpg ships no types)."""

    async def execute(self, query: str, *args: object) -> str: ...
    async def executemany(self, command: str, args: Iterable[Sequence[object]]) -> None: ...
    async def fetch(self, query: str, *args: object) -> list[Sequence[object]]: ...
    def transaction(self) -> AbstractAsyncContextManager[object]: ...
    def terminate(self) -> None: ...
    async def copy_records_to_table(
        self,
        table_name: str,
        *,
        records: Iterable[Sequence[object]],
        columns: Sequence[str],
        schema_name: str | None = None,
    ) -> str: ...


class _Pool(Protocol):
    """The part of ``asyncpg.Pool`` this module uses."""

    def acquire(self) -> AbstractAsyncContextManager[_Connection]: ...
    async def fetch(self, query: str, *args: object) -> list[Sequence[object]]: ...
    async def close(self) -> None: ...
    def terminate(self) -> None: ...


class PostgresStore(StoreBase):
    """A state store in a PostgreSQL database (optionally one schema of it).

    Opening checks the schema before writing anything: tables of our names that penguiflow
    did not make, or a schema newer than this code, raise and are left as they were; an
    older penguiflow schema is migrated in one transaction. See ``StoreBase`` for the
    behaviour shared by every store.

    On a server that stops answering, a commit fails after ``command_timeout_s`` (or
    ``connect_timeout_s`` to reconnect) and is retried; the error names the server and the
    bound. ``close()`` then takes at most 2 s more than its ``timeout_s``: the pool's polite
    close is cut short and its connections dropped.

    Args:
        dsn: A libpq connection string or URI.
        schema: Keep the tables in this schema (created if missing) instead of the
            connection's default one.
        min_connections: Connections the pool keeps open.
        max_connections: The most connections the pool opens (one writer, the rest reads).
        batch_size: The most writes committed in one transaction.
        buffer_size: The most writes held before savers wait.
        retry_initial_s: The wait after a first failed commit; doubles on each failure.
        retry_max_s: The cap on the wait between commit attempts.
        failing_after_s: Seconds of failing commits in a row before ``status`` is
            ``failing`` (30 s by default).
        connect_timeout_s: How long to wait for a connection.
        command_timeout_s: How long any one statement may take.
        clock: The wall clock that stamps traces and bindings.
        durability: ``"commit"`` (default) or ``"queued"``; see ``StoreBase``.
        events: Which flow events to keep: ``"all"``, ``"none"`` or a collection of kinds.
        owner_id: Names this process in the store's leases; see ``StoreBase``.
        lease_ttl_s: How long the lease lasts without a heartbeat (10 s by default).

    Raises:
        TimeoutError: at open, the server did not complete a connection within
            ``connect_timeout_s``; the message names the server (never its password).
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str | None = None,
        min_connections: int = 1,
        max_connections: int = 4,
        batch_size: int = 1024,
        buffer_size: int = 8192,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 5.0,
        failing_after_s: float = DEFAULT_FAILING_AFTER_S,
        connect_timeout_s: float = 10.0,
        command_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.time,
        durability: Durability = "commit",
        events: str | Iterable[str] = "all",
        owner_id: str | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
    ) -> None:
        super().__init__(
            name=f"PostgresStore(schema={schema!r})",
            batch_size=batch_size,
            buffer_size=buffer_size,
            retry_initial_s=retry_initial_s,
            retry_max_s=retry_max_s,
            failing_after_s=failing_after_s,
            clock=clock,
            durability=durability,
            events=events,
            owner_id=owner_id,
            lease_ttl_s=lease_ttl_s,
        )
        self._dsn = dsn
        self._schema = schema
        self._pool_options = {
            "min_size": min_connections,
            "max_size": max_connections,
            "timeout": connect_timeout_s,
            "command_timeout": command_timeout_s,
        }
        self._pool: _Pool | None = None

    async def _open(self) -> None:
        settings = {} if self._schema is None else {"search_path": _quote(self._schema)}
        try:
            pool: _Pool = await asyncpg.create_pool(
                self._dsn, server_settings=settings, **self._pool_options
            )
        except TimeoutError as exc:
            timeout_s = self._pool_options["timeout"]
            raise TimeoutError(
                f"{self.describe()}: no connection to PostgreSQL at {_redact_dsn(self._dsn)} "
                f"within connect_timeout_s={timeout_s} s (is the server up and answering?)"
            ) from exc
        except (OSError, asyncpg.PostgresError) as exc:
            # Refused, unknown host, bad password or role: asyncpg's message may not say
            # which server; keep its error (callers may catch its type) and name the server.
            exc.add_note(f"while connecting to PostgreSQL at {_redact_dsn(self._dsn)}")
            raise
        try:
            async with pool.acquire() as connection:
                await self._prepare(connection)
        except BaseException:
            await _close_pool(pool, self.describe())
            raise
        self._pool = pool

    async def _prepare(self, connection: _Connection) -> None:
        """Check the schema and migrate it, in one transaction under the advisory lock."""
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock($1)", _MIGRATION_LOCK)
            if self._schema is not None:
                await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(self._schema)}")
            ((database, schema),) = await connection.fetch(
                "SELECT current_database(), current_schema()"
            )
            location = f"PostgreSQL database {database!r}, schema {schema!r}"
            found: dict[str, list[str]] = {}
            for table, column in await connection.fetch(_INSPECT, list(KNOWN_TABLES)):
                found.setdefault(str(table), []).append(str(column))
            version = None
            if check_tables(location, found):
                rows = await connection.fetch(
                    f"SELECT value FROM {SCHEMA_META} WHERE key = $1", VERSION_KEY
                )
                version = next((str(row[0]) for row in rows), None)
            for step in plan(location, found, version, MIGRATIONS):
                for statement in step.statements:
                    await connection.execute(statement)
                await connection.execute(_SET_VERSION, str(step.version))
                logger.info(
                    "state_store_migrated",
                    extra={
                        "event": "state_store_migrated",
                        "store": self.describe(),
                        "version": step.version,
                        "summary": step.summary,
                    },
                )

    async def _release(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            await _close_pool(pool, self.describe())

    async def _commit_batch(self, batch: Sequence[WriteOp]) -> None:
        assert self._pool is not None, "the writer runs only while the store is open"
        folded = fold(batch)
        acquired = False
        try:
            async with self._pool.acquire() as connection:
                acquired = True
                try:
                    await self._apply(connection, folded)
                except BaseException:
                    # Failed, timed out or cancelled part-way: the connection is in doubt.
                    # Drop it (the server rolls the transaction back) rather than let asyncpg
                    # roll back and wait for its cancel request: on a server that stopped
                    # answering, those waits have no bound, and close() would hang in them.
                    with contextlib.suppress(asyncpg.InterfaceError):  # already released
                        connection.terminate()
                    raise
        except TimeoutError as exc:
            # asyncpg's TimeoutError says nothing; say which server and which bound.
            bound = "command_timeout_s" if acquired else "connect_timeout_s"
            option = "command_timeout" if acquired else "timeout"
            raise TimeoutError(
                f"no answer from PostgreSQL at {_redact_dsn(self._dsn)} within "
                f"{bound}={self._pool_options[option]} s"
            ) from exc

    async def _apply(self, connection: _Connection, folded: FoldedBatch) -> None:
        """Write one folded batch in one transaction (``_commit_batch`` handles failures)."""
        if folded.events_only:  # one COPY is its own transaction
            await self._copy_events(connection, folded.events)
            return
        async with connection.transaction():
            if folded.events:
                await self._copy_events(connection, folded.events)
            for sql, rows in (
                (_UPSERT_TRACES, [trace_upsert_row(u) for u in folded.trace_upserts]),
                (_END_TRACES, [trace_end_row(op) for op in folded.trace_ends]),
                (_MARK_TERMINAL, [terminal_row(op) for op in folded.binding_terminals]),
                (_SAVE_BINDINGS, [binding_row(op) for op in folded.binding_saves]),
                (_RENEW_LEASES, [lease_row(op) for op in folded.leases]),
            ):
                if rows:
                    await connection.executemany(sql, rows)

    async def _copy_events(self, connection: _Connection, events: Sequence[StoredEvent]) -> None:
        await connection.copy_records_to_table(
            "events",
            records=event_rows(events),
            columns=EVENT_COLUMNS,
            schema_name=self._schema,
        )

    async def _register_lease(self, lease: Lease, now: float, expires_at: float) -> None:
        assert self._pool is not None, "a lease is registered only while the store is open"
        async with self._pool.acquire() as connection, connection.transaction():
            if lease.exclusive:
                await connection.execute(_END_OWNER_LEASES, lease.owner, lease.lease_id)
            await connection.execute(
                _REGISTER_LEASE,
                lease.lease_id,
                lease.owner,
                lease.host,
                lease.pid,
                now,
                now,
                expires_at,
            )

    async def _end_lease(self, lease_id: str) -> None:
        assert self._pool is not None, "a lease is ended only while the store is open"
        async with self._pool.acquire() as connection:
            await connection.execute(_END_LEASE, lease_id)

    async def _claim(
        self, flow_key: str, lease_id: str, now: float, limit: int
    ) -> list[StoredTrace]:
        assert self._pool is not None, "claims run only while the store is open"
        rows = await self._pool.fetch(_CLAIM, lease_id, now, clean_text(flow_key), limit)
        return [trace_from_row(row) for row in rows]

    async def _prune(self, cutoff: float) -> int:
        assert self._pool is not None, "prune runs only while the store is open"
        ((removed,),) = await self._pool.fetch(_PRUNE, cutoff, list(END_STATUSES))
        assert isinstance(removed, int)
        return removed

    async def _read(self, sql: str, *args: object) -> list[Sequence[object]]:
        assert self._pool is not None, "reads run only while the store is open"
        return await self._pool.fetch(sql, *args)

    async def _read_history(self, trace_id: str) -> list[StoredEvent]:
        return [event_from_row(row) for row in await self._read(_HISTORY, clean_text(trace_id))]

    async def _read_traces(self, query: TraceQuery) -> list[StoredTrace]:
        sql, args = select_traces(query, lambda n: f"${n}", collate=' COLLATE "C"')
        return [trace_from_row(row) for row in await self._read(sql, *args)]

    async def _read_binding(self, query: BindingQuery) -> RemoteBinding | None:
        rows = await self._read(
            _FIND_BINDING,
            clean_text(query.router_session_id),
            clean_text(query.agent_url),
            clean_text(query.remote_skill),
            clean_text(query.tenant_id),
            clean_text(query.user_id),
        )
        return binding_from_row(rows[0]) if rows else None

    async def _read_bindings(self, router_session_id: str) -> list[RemoteBinding]:
        rows = await self._read(_LIST_BINDINGS, clean_text(router_session_id))
        return [binding_from_row(row) for row in rows]


async def _close_pool(pool: _Pool, store: str) -> None:
    """Close ``pool`` politely for at most ``_POOL_CLOSE_TIMEOUT_S``, then terminate it.

    asyncpg's ``close()`` waits for every connection's goodbye to the server, without a
    bound: on a server that stopped answering it would never return.
    """
    try:
        await asyncio.wait_for(pool.close(), _POOL_CLOSE_TIMEOUT_S)
    except BaseException as exc:
        pool.terminate()  # drops every connection at once; safe after a partial close
        if not isinstance(exc, TimeoutError):
            raise
        logger.warning(
            "state_store_pool_terminated",
            extra={
                "event": "state_store_pool_terminated",
                "store": store,
                "timeout_s": _POOL_CLOSE_TIMEOUT_S,
            },
        )


def _redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``***``, for messages and logs.

    Handles both forms libpq accepts: a URI (``postgresql://user:secret@host:port/db``, and a
    ``password`` query parameter) and ``key=value`` pairs (``host=h password=secret``).
    """
    if "://" not in dsn:
        return _KV_PASSWORD.sub(r"\1***", dsn)
    parts = urllib.parse.urlsplit(dsn)
    netloc = parts.netloc
    user, at, hosts = netloc.rpartition("@")
    if at and ":" in user:
        netloc = f"{user.partition(':')[0]}:***@{hosts}"
    query = _QUERY_PASSWORD.sub(r"\1***", parts.query)
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# A libpq value is a word, or single-quoted with backslash escapes (password='a \' b').
_KV_PASSWORD: Final = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)")
_QUERY_PASSWORD: Final = re.compile(r"((?:^|&)password=)[^&]*")


def _quote(identifier: str) -> str:
    """Quote an SQL identifier (a schema name), doubling embedded quotes."""
    return '"' + identifier.replace('"', '""') + '"'
