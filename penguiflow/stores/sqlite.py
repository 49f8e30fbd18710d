"""``SQLiteStore``: the embedded durable store, one SQLite file in WAL mode, via ``aiosqlite``.

Two connections, each on its own ``aiosqlite`` thread so the event loop never blocks: the
writer's, used only by the writer task (one statement, hence one transaction, per batch; see
``_BATCH_PARTS``), and a reader's, which sees committed data only (WAL lets it read while the
writer writes). Needs SQLite 3.35 or later with its JSON functions (upsert, UPDATE FROM,
RETURNING).

It is just over 500 lines because its SQL (the schema steps, the one-statement batch and prune
triggers, the claim) is kept beside the code that runs it.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
import sqlite3
import time
from typing import TYPE_CHECKING, Final

try:
    import aiosqlite
except ImportError as exc:  # pragma: no cover - a child process runs it (test_optional_drivers)
    raise ImportError(
        "SQLiteStore (penguiflow.stores.sqlite) needs aiosqlite: "
        "pip install 'penguiflow-runtime[sqlite]'"
    ) from exc

from ._base import DEFAULT_FAILING_AFTER_S, DEFAULT_LEASE_TTL_S, Durability, StoreBase
from ._codec import clean_text, encode_json
from ._errors import IncompatibleStoreError
from ._fold import fold
from ._rows import (
    BINDING_COLUMNS,
    EVENT_COLUMNS,
    binding_from_row,
    binding_row,
    claim_traces_sql,
    event_from_row,
    event_rows,
    events_document,
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

    from ..state import RemoteBinding, StoredEvent
    from ._base import Lease
    from ._types import BindingQuery, StoredTrace, TraceQuery, WriteOp

__all__ = ["MIGRATIONS", "SQLiteStore"]

logger = logging.getLogger("penguiflow.stores")

_MIN_SQLITE: Final = (3, 35, 0)

MIGRATIONS: Final = (
    Migration(
        1,
        "schema_meta, events, remote_bindings",
        (
            "CREATE TABLE schema_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
            "CREATE TABLE events (id INTEGER PRIMARY KEY, trace_id TEXT, ts REAL,"
            " kind TEXT NOT NULL, node_name TEXT, node_id TEXT, payload TEXT NOT NULL)",
            "CREATE INDEX events_by_trace ON events (trace_id, id)",
            "CREATE INDEX events_by_ts ON events (ts)",
            "CREATE TABLE remote_bindings (binding_key TEXT PRIMARY KEY, seq INTEGER NOT NULL,"
            " trace_id TEXT NOT NULL, context_id TEXT, task_id TEXT NOT NULL,"
            " agent_url TEXT NOT NULL, router_session_id TEXT, remote_skill TEXT,"
            " tenant_id TEXT, user_id TEXT, last_remote_task_id TEXT,"
            " is_terminal INTEGER NOT NULL, metadata TEXT NOT NULL, updated_at REAL NOT NULL)",
            "CREATE INDEX remote_bindings_by_session"
            " ON remote_bindings (router_session_id, agent_url, seq)",
        ),
    ),
    Migration(
        2,
        "traces",
        (
            "CREATE TABLE traces (trace_id TEXT PRIMARY KEY, status TEXT NOT NULL"
            " CHECK (status IN ('running', 'finished', 'cancelled', 'failed')),"
            " input_json TEXT, flow_key TEXT NOT NULL,"
            " created_at REAL NOT NULL, updated_at REAL NOT NULL)",
            "CREATE INDEX traces_by_status ON traces (status, updated_at)",
            "CREATE INDEX traces_by_update ON traces (updated_at)",
            "CREATE INDEX traces_by_flow ON traces (flow_key, status, created_at)",
        ),
    ),
    Migration(
        3,
        "leases; traces.lease_id and traces.targets",
        (
            "ALTER TABLE traces ADD COLUMN lease_id TEXT",
            "ALTER TABLE traces ADD COLUMN targets TEXT",
            "CREATE TABLE leases (lease_id TEXT PRIMARY KEY, owner TEXT NOT NULL,"
            " host TEXT NOT NULL, pid INTEGER NOT NULL, started_at REAL NOT NULL,"
            " heartbeat_at REAL NOT NULL, expires_at REAL NOT NULL)",
            "CREATE INDEX leases_by_owner ON leases (owner)",
        ),
    ),
)
"""Every schema step, oldest first; see ``_schema``."""


def _columns(count: int, *names: str) -> str:
    """Select the first ``count`` items of each json_each row, named ``names`` if given."""
    items = [f"json_extract(value, '$[{n}]')" for n in range(count)]
    return (
        ", ".join(f"{item} AS {name}" for item, name in zip(items, names, strict=True))
        if names
        else ", ".join(items)
    )


_SET_VERSION: Final = (
    f"INSERT INTO {SCHEMA_META} (key, value) VALUES ('{VERSION_KEY}', ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
# A batch is one statement: one statement is one transaction, and SQLite's thread runs it in
# C from start to end: it needs the GIL back once per batch, where ``executemany`` needs it
# once per row and a script once per statement, each time waiting up to the switch interval
# (5 ms) behind a busy event loop. It must also be one statement because claims and prunes
# run single statements on this connection from other tasks: any of them would land inside
# a transaction spread over several statements.
#
# Events go in as rows of a multi-row VALUES, every value bound in one call: binding is one C
# loop, and SQLite inserts the rows with no per-row parsing (a JSON array read with json_each
# costs more than the insert itself: json_extract re-parses each row and re-renders its
# payload). The statement for n rows is padded to a size with its three leading bits only
# (under a quarter of padding, bound as NULLs that LIMIT keeps from being read): four texts
# per doubling, so sqlite3's statement cache keeps them prepared (preparing costs more per
# row than inserting does, and a prepared text holds about 0.5 kB per row, which is why
# texts are not made for every n).
#
# A batch of events alone is an insert into events. Any other batch is an insert into a view
# of this connection with INSTEAD OF triggers: its first row holds the folded batch's other
# parts (``_fold``), each as one JSON array, and its other rows are events. Events past what
# one statement binds travel in that first row as a JSON array too; they are the batch's
# first events, so the order of ids is the order of saves. The view and triggers are TEMP:
# they live in the connection, never in the database file.
_EVENT_INSERT: Final = "INSERT INTO events (trace_id, ts, kind, node_name, node_id, payload)"
_BATCH_PARTS: Final = (
    f"{_EVENT_INSERT} SELECT {_columns(6)} FROM json_each(NEW.events) ORDER BY key",
    "INSERT INTO traces (trace_id, status, input_json, flow_key, created_at, updated_at,"
    f" lease_id, targets) SELECT {_columns(8)} FROM json_each(NEW.trace_upserts) WHERE true"
    " ON CONFLICT (trace_id) DO UPDATE SET status = excluded.status,"
    " input_json = excluded.input_json, flow_key = excluded.flow_key,"
    " updated_at = excluded.updated_at, lease_id = excluded.lease_id,"
    " targets = excluded.targets",
    "UPDATE traces SET status = j.status, updated_at = j.at"
    f" FROM (SELECT {_columns(3, 'trace_id', 'status', 'at')}"
    " FROM json_each(NEW.trace_ends)) AS j WHERE traces.trace_id = j.trace_id",
    "UPDATE remote_bindings SET is_terminal = 1, updated_at = j.at"
    f" FROM (SELECT {_columns(2, 'binding_key', 'at')}"
    " FROM json_each(NEW.binding_terminals)) AS j"
    " WHERE remote_bindings.binding_key = j.binding_key",
    f"INSERT INTO remote_bindings ({BINDING_COLUMNS}, updated_at, seq)"
    f" SELECT {_columns(13)}, (SELECT coalesce(max(seq), 0) FROM remote_bindings) + 1 + key"
    " FROM json_each(NEW.binding_saves) WHERE true"
    " ON CONFLICT (binding_key) DO UPDATE SET context_id = excluded.context_id,"
    " agent_url = excluded.agent_url, router_session_id = excluded.router_session_id,"
    " remote_skill = excluded.remote_skill, tenant_id = excluded.tenant_id,"
    " user_id = excluded.user_id, last_remote_task_id = excluded.last_remote_task_id,"
    " is_terminal = excluded.is_terminal, metadata = excluded.metadata,"
    " updated_at = excluded.updated_at, seq = excluded.seq",
    # An ended lease (expires_at 0) is never renewed.
    "UPDATE leases SET heartbeat_at = j.at, expires_at = j.expires_at"
    f" FROM (SELECT {_columns(4, 'lease_id', 'owner', 'expires_at', 'at')}"
    " FROM json_each(NEW.leases)) AS j"
    " WHERE leases.lease_id = j.lease_id AND leases.expires_at > 0",
)
_BATCH_VIEW: Final = (
    "CREATE TEMP VIEW penguiflow_batch (trace_id, ts, kind, node_name, node_id, payload,"
    " events, trace_upserts, trace_ends, binding_terminals, binding_saves, leases)"
    " AS SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL"
)
# An event's kind is never NULL (``_rows``): a row without one is the batch's other parts.
_BATCH_TRIGGER: Final = (
    "CREATE TEMP TRIGGER penguiflow_batch_commit INSTEAD OF INSERT ON penguiflow_batch"
    " WHEN NEW.kind IS NULL BEGIN " + "; ".join(_BATCH_PARTS) + "; END"
)
_EVENTS_TRIGGER: Final = (
    "CREATE TEMP TRIGGER penguiflow_batch_event INSTEAD OF INSERT ON penguiflow_batch"
    f" WHEN NEW.kind IS NOT NULL BEGIN {_EVENT_INSERT} VALUES (NEW.trace_id, NEW.ts,"
    " NEW.kind, NEW.node_name, NEW.node_id, NEW.payload); END"
)
_EVENT_ROW: Final = "(?,?,?,?,?,?)"
_BATCH_EVENT_ROW: Final = "(?,?,?,?,?,?,NULL,NULL,NULL,NULL,NULL,NULL)"
_BATCH_PARTS_ROW: Final = "(NULL,NULL,NULL,NULL,NULL,NULL,?,?,?,?,?,?)"
_PARAMETERS_PER_EVENT: Final = len(EVENT_COLUMNS)
_MOST_EVENT_ROWS: Final = 4096
"""The most event rows one statement binds; bounds the memory of a cached statement."""


@functools.cache
def _events_statement(rows: int) -> str:
    """An insert of up to ``rows`` events: their values, then how many are real (LIMIT)."""
    values = ",".join(itertools.repeat(_EVENT_ROW, rows))
    return f"{_EVENT_INSERT} SELECT * FROM (VALUES {values}) LIMIT ?"


@functools.cache
def _batch_statement(rows: int) -> str:
    """An insert into the batch view: the parts row, up to ``rows`` events, then the LIMIT."""
    values = ",".join((_BATCH_PARTS_ROW, *itertools.repeat(_BATCH_EVENT_ROW, rows)))
    return f"INSERT INTO penguiflow_batch SELECT * FROM (VALUES {values}) LIMIT ?"


def _padded(rows: int) -> int:
    """Round ``rows`` up to a number whose bits past its three leading ones are zeros."""
    if rows <= 8:
        return rows
    step = 1 << (rows.bit_length() - 3)
    return -(-rows // step) * step


@functools.cache
def _most_event_rows() -> int:
    """How many event rows one statement may bind with this SQLite build's parameter limit."""
    probe = sqlite3.connect(":memory:")
    try:
        limit = probe.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
    finally:
        probe.close()
    # Room for the parts row's six documents and the LIMIT.
    return max(1, min(_MOST_EVENT_ROWS, (limit - 7) // _PARAMETERS_PER_EVENT))


_REGISTER_LEASE: Final = (
    "INSERT INTO leases (lease_id, owner, host, pid, started_at, heartbeat_at, expires_at)"
    " VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_END_OWNER_LEASES: Final = "UPDATE leases SET expires_at = 0 WHERE owner = ? AND lease_id <> ?"
_END_LEASE: Final = "UPDATE leases SET expires_at = 0 WHERE lease_id = ?"
_CLAIM: Final = claim_traces_sql(lambda n: f"?{n}", skip_locked=False)
_HISTORY: Final = (
    "SELECT id, trace_id, ts, kind, node_name, node_id, payload FROM events"
    " WHERE trace_id = ? ORDER BY id"
)
_FIND_BINDING: Final = (
    f"SELECT {BINDING_COLUMNS} FROM remote_bindings WHERE router_session_id = ?"
    " AND agent_url = ? AND remote_skill IS ? AND tenant_id IS ? AND user_id IS ?"
    " ORDER BY seq DESC LIMIT 1"
)
_LIST_BINDINGS: Final = (
    f"SELECT {BINDING_COLUMNS} FROM remote_bindings WHERE router_session_id = ? ORDER BY seq"
)

# A prune is one statement too, on the writer's connection, so it runs between two batches
# and never inside one: an insert into a view whose trigger counts and deletes the ended traces
# (through ``traces_by_status``), then their events (through ``events_by_trace``) and bindings
# (a scan: ``remote_bindings`` has no index on trace_id, and it is small). The count goes to a
# TEMP table under a token, since the statement itself returns nothing. The view, trigger and
# table are made on the first prune, not at open: ``_open`` stays the same for every store.
_ENDED: Final = (
    f"status IN ({', '.join(repr(s) for s in END_STATUSES)}) AND updated_at < NEW.cutoff"
)
# Leases that ended before the cutoff and hold no running trace go too.
_PRUNE_LEASES: Final = (
    "DELETE FROM leases WHERE expires_at < {cutoff} AND lease_id NOT IN"
    " (SELECT lease_id FROM traces WHERE status = 'running' AND lease_id IS NOT NULL)"
)
_PRUNE_SETUP: Final = (
    "CREATE TEMP TABLE IF NOT EXISTS penguiflow_pruned"
    " (token INTEGER PRIMARY KEY, removed INTEGER NOT NULL)",
    "CREATE TEMP VIEW IF NOT EXISTS penguiflow_prune (token, cutoff) AS SELECT NULL, NULL",
    "CREATE TEMP TRIGGER IF NOT EXISTS penguiflow_prune_commit INSTEAD OF INSERT"
    " ON penguiflow_prune BEGIN"
    " INSERT INTO penguiflow_pruned (token, removed)"
    f" SELECT NEW.token, count(*) FROM traces WHERE {_ENDED};"
    f" DELETE FROM events WHERE trace_id IN (SELECT trace_id FROM traces WHERE {_ENDED});"
    " DELETE FROM remote_bindings"
    f" WHERE trace_id IN (SELECT trace_id FROM traces WHERE {_ENDED});"
    f" DELETE FROM traces WHERE {_ENDED};"
    f" {_PRUNE_LEASES.format(cutoff='NEW.cutoff')}; END",
)
_PRUNE: Final = "INSERT INTO penguiflow_prune VALUES (?, ?)"
_PRUNED: Final = "SELECT removed FROM penguiflow_pruned WHERE token = ?"
_FORGET_PRUNED: Final = "DELETE FROM penguiflow_pruned WHERE token = ?"
_prune_tokens = itertools.count(1)


class SQLiteStore(StoreBase):
    """A state store in one SQLite file (WAL journal, ``synchronous=NORMAL``).

    Opening checks the file before writing anything: a file that is not SQLite, or fails
    ``PRAGMA quick_check`` (a damaged file, on which every commit would fail), or holds
    tables of our names that penguiflow did not make, or a schema newer than this code,
    raises and is left as it was; an older penguiflow schema is migrated in one transaction.
    A missing file is created, but not its directory. A 0-byte file is a new, empty store:
    SQLite itself treats an empty file as an empty database, so the store creates its schema
    there and works as usual. The check reads the whole file once, at open (about 5 ms for
    20,000 events, a 4.7 MB file, from the page cache; it grows with the file). See
    ``StoreBase`` for the behaviour shared by every store.

    With ``synchronous=NORMAL`` a committed batch survives a crash of the process; a power
    loss may lose the last batches (never corrupt the file).

    Args:
        path: The database file; created if missing.
        batch_size: The most writes committed in one transaction.
        buffer_size: The most writes held before savers wait.
        retry_initial_s: The wait after a first failed commit; doubles on each failure.
        retry_max_s: The cap on the wait between commit attempts.
        failing_after_s: Seconds of failing commits in a row before ``status`` is
            ``failing`` (30 s by default).
        busy_timeout_s: How long a statement waits for another process's lock.
        clock: The wall clock that stamps traces and bindings.
        durability: ``"commit"`` (default) or ``"queued"``; see ``StoreBase``.
        events: Which flow events to keep: ``"all"``, ``"none"`` or a collection of kinds.
        owner_id: Names this process in the store's leases; see ``StoreBase``.
        lease_ttl_s: How long the lease lasts without a heartbeat (10 s by default).

    Raises:
        ValueError: ``path`` is ``":memory:"`` (use ``MemoryStore``), or bad sizes.
        RuntimeError: the SQLite library is older than 3.35.
        FileNotFoundError: at open, the directory of ``path`` does not exist.
        IsADirectoryError: at open, ``path`` is a directory.
        IncompatibleStoreError: at open, the file is not a SQLite database, fails
            ``PRAGMA quick_check``, or is not a penguiflow store this code can use.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        batch_size: int = 2048,
        buffer_size: int = 8192,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 5.0,
        failing_after_s: float = DEFAULT_FAILING_AFTER_S,
        busy_timeout_s: float = 5.0,
        clock: Callable[[], float] = time.time,
        durability: Durability = "commit",
        events: str | Iterable[str] = "all",
        owner_id: str | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
    ) -> None:
        if sqlite3.sqlite_version_info < _MIN_SQLITE:
            raise RuntimeError(
                f"SQLiteStore needs SQLite {'.'.join(map(str, _MIN_SQLITE))} or later, "
                f"this Python has {sqlite3.sqlite_version}"
            )
        self._path = os.fspath(path)
        if self._path == ":memory:":
            raise ValueError("SQLiteStore needs a file; for a store in memory use MemoryStore")
        super().__init__(
            name=f"SQLiteStore({self._path!r})",
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
        self._busy_timeout_ms = int(busy_timeout_s * 1000)
        self._db: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None

    @property
    def path(self) -> str:
        """The database file."""
        return self._path

    async def _open(self) -> None:
        _check_path(self._path)
        db = await self._connect()
        try:
            await self._prepare(db)
            await db.execute("PRAGMA synchronous = NORMAL")
            await db.execute(_BATCH_VIEW)
            await db.execute(_BATCH_TRIGGER)
            await db.execute(_EVENTS_TRIGGER)
            reader = await self._connect()
        except BaseException:
            await db.close()
            raise
        self._db, self._reader = db, reader

    async def _connect(self) -> aiosqlite.Connection:
        db = await aiosqlite.connect(self._path, isolation_level=None)
        await db.execute(f"PRAGMA busy_timeout = {self._busy_timeout_ms}")
        return db

    async def _prepare(self, db: aiosqlite.Connection) -> None:
        """Check the schema and migrate it in one transaction; then switch to WAL."""
        try:
            await db.execute("BEGIN IMMEDIATE")  # the first read of the file, and a lock
        except sqlite3.DatabaseError as exc:
            if exc.sqlite_errorname == "SQLITE_NOTADB":
                raise IncompatibleStoreError(self._path, f"not a SQLite database ({exc})") from exc
            exc.add_note(f"while opening the SQLite store {self._path!r}")
            raise
        try:
            await _quick_check(db, self._path)
            found = await _inspect(db)
            version = None
            if check_tables(self._path, found):
                rows = await db.execute_fetchall(
                    f"SELECT value FROM {SCHEMA_META} WHERE key = ?", (VERSION_KEY,)
                )
                version = next((str(row[0]) for row in rows), None)
            for step in plan(self._path, found, version, MIGRATIONS):
                for statement in step.statements:
                    await db.execute(statement)
                await db.execute(_SET_VERSION, (str(step.version),))
                logger.info(
                    "state_store_migrated",
                    extra={
                        "event": "state_store_migrated",
                        "store": self.describe(),
                        "version": step.version,
                        "summary": step.summary,
                    },
                )
            await db.execute("COMMIT")
        except BaseException:
            # Some errors (disk full, I/O) end the transaction themselves.
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise
        await db.execute("PRAGMA journal_mode = WAL")

    async def _release(self) -> None:
        db, reader = self._db, self._reader
        self._db = self._reader = None
        try:
            if reader is not None:
                await reader.close()
        finally:
            if db is not None:
                await db.close()

    async def _commit_batch(self, batch: Sequence[WriteOp]) -> None:
        db = self._db
        assert db is not None, "the writer runs only while the store is open"
        folded = fold(batch)
        # The last events are bound as rows, any before them go as one JSON array.
        split = max(0, len(folded.events) - _most_event_rows())
        rows = len(folded.events) - split
        padded = _padded(rows)
        events = itertools.chain.from_iterable(event_rows(folded.events[split:]))
        padding = itertools.repeat(None, (padded - rows) * _PARAMETERS_PER_EVENT)
        if folded.events_only and not split:
            await db.execute(_events_statement(padded), [*events, *padding, rows])
            return
        values: list[object] = [
            events_document(folded.events[:split]) if split else None,
            _document([trace_upsert_row(u) for u in folded.trace_upserts]),
            _document([trace_end_row(op) for op in folded.trace_ends]),
            _document([terminal_row(op) for op in folded.binding_terminals]),
            _document([binding_row(op) for op in folded.binding_saves]),
            _document([lease_row(op) for op in folded.leases]),
            *events,
            *padding,
            rows + 1,
        ]
        await db.execute(_batch_statement(padded), values)

    async def _register_lease(self, lease: Lease, now: float, expires_at: float) -> None:
        db = self._db
        assert db is not None, "a lease is registered only while the store is open"
        await db.execute("BEGIN IMMEDIATE")
        try:
            if lease.exclusive:
                await db.execute(_END_OWNER_LEASES, (lease.owner, lease.lease_id))
            row = (lease.lease_id, lease.owner, lease.host, lease.pid, now, now, expires_at)
            await db.execute(_REGISTER_LEASE, row)
            await db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                await db.execute("ROLLBACK")
            raise

    async def _end_lease(self, lease_id: str) -> None:
        db = self._db
        assert db is not None, "a lease is ended only while the store is open"
        await db.execute(_END_LEASE, (lease_id,))

    async def _claim(
        self, flow_key: str, lease_id: str, now: float, limit: int
    ) -> list[StoredTrace]:
        db = self._db
        assert db is not None, "claims run only while the store is open"
        # One statement on the writer's connection: one transaction, between two batches.
        rows = await db.execute_fetchall(_CLAIM, (lease_id, now, clean_text(flow_key), limit))
        return [trace_from_row(row) for row in rows]

    async def _prune(self, cutoff: float) -> int:
        db = self._db
        assert db is not None, "prune runs only while the store is open"
        for statement in _PRUNE_SETUP:
            await db.execute(statement)
        token = next(_prune_tokens)
        await db.execute(_PRUNE, (token, cutoff))
        rows = list(await db.execute_fetchall(_PRUNED, (token,)))
        await db.execute(_FORGET_PRUNED, (token,))
        return int(rows[0][0])

    async def _read(self, sql: str, args: Sequence[object]) -> list[sqlite3.Row]:
        assert self._reader is not None, "reads run only while the store is open"
        return list(await self._reader.execute_fetchall(sql, args))

    async def _read_history(self, trace_id: str) -> list[StoredEvent]:
        return [event_from_row(row) for row in await self._read(_HISTORY, (clean_text(trace_id),))]

    async def _read_traces(self, query: TraceQuery) -> list[StoredTrace]:
        sql, args = select_traces(query, lambda _: "?")
        return [trace_from_row(row) for row in await self._read(sql, args)]

    async def _read_binding(self, query: BindingQuery) -> RemoteBinding | None:
        args = (
            clean_text(query.router_session_id),
            clean_text(query.agent_url),
            clean_text(query.remote_skill),
            clean_text(query.tenant_id),
            clean_text(query.user_id),
        )
        rows = await self._read(_FIND_BINDING, args)
        return binding_from_row(rows[0]) if rows else None

    async def _read_bindings(self, router_session_id: str) -> list[RemoteBinding]:
        rows = await self._read(_LIST_BINDINGS, (clean_text(router_session_id),))
        return [binding_from_row(row) for row in rows]


def _check_path(path: str) -> None:
    """Refuse a path SQLite could only report as "unable to open database file".

    Raises:
        IsADirectoryError: ``path`` is a directory.
        FileNotFoundError: the directory that would hold ``path`` does not exist.
    """
    if os.path.isdir(path):
        raise IsADirectoryError(
            errno.EISDIR, "SQLiteStore: the path is a directory, not a database file", path
        )
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise FileNotFoundError(
            errno.ENOENT,
            f"SQLiteStore: cannot create the database file {path!r}, its directory is missing",
            directory,
        )


async def _quick_check(db: aiosqlite.Connection, path: str) -> None:
    """Raise if the file is damaged; SQLite would otherwise fail some commits forever.

    Raises:
        IncompatibleStoreError: ``PRAGMA quick_check`` reports a problem, or fails.
    """
    try:
        rows = await db.execute_fetchall("PRAGMA quick_check(5)")
    except sqlite3.DatabaseError as exc:
        raise IncompatibleStoreError(path, f"the file is damaged ({exc})") from exc
    problems = [str(row[0]) for row in rows]
    if problems != ["ok"]:
        raise IncompatibleStoreError(
            path, "the file is damaged (PRAGMA quick_check: " + "; ".join(problems) + ")"
        )


def _document(rows: list[tuple[object, ...]]) -> str | None:
    """Encode ``rows`` as one JSON array, or None (no rows: that part of the batch is empty)."""
    return encode_json(rows) if rows else None


async def _inspect(db: aiosqlite.Connection) -> dict[str, list[str]]:
    """Return the columns of every table of ``KNOWN_TABLES`` present."""
    marks = ", ".join("?" for _ in KNOWN_TABLES)
    tables = await db.execute_fetchall(
        f"SELECT name FROM sqlite_master WHERE type = 'table' AND name IN ({marks})",
        KNOWN_TABLES,
    )
    found: dict[str, list[str]] = {}
    for (name,) in tables:
        columns = await db.execute_fetchall("SELECT name FROM pragma_table_info(?)", (name,))
        found[name] = [column for (column,) in columns]
    return found
