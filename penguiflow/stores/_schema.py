"""The stores' schema versions, what tables each version has, and the migration plan.

Both SQL stores keep the same tables with the same column names; only the SQL text differs.
Opening a store reads what is there, then ``check_tables`` and ``plan`` decide, before
anything is written, whether the database is a fresh one, a penguiflow store to migrate, a
penguiflow store from the future, or something else that must be left alone.

Versions:
    1. ``schema_meta``, ``events`` (append-only log) and ``remote_bindings``.
    2. adds ``traces`` (status and input of every trace, for recovery).
    3. adds ``leases`` (which process runs which traces) and the traces' ``lease_id`` and
       ``targets`` columns.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from ._errors import IncompatibleStoreError, SchemaVersionError

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence

__all__ = [
    "KNOWN_TABLES",
    "SCHEMA_META",
    "SCHEMA_VERSION",
    "TABLES",
    "VERSION_KEY",
    "Migration",
    "check_tables",
    "plan",
]

SCHEMA_VERSION: Final = 3
"""The schema version this code writes; a database at a higher version is refused."""
SCHEMA_META: Final = "schema_meta"
VERSION_KEY: Final = "schema_version"

_META = frozenset({"key", "value"})
_EVENTS = frozenset({"id", "trace_id", "ts", "kind", "node_name", "node_id", "payload"})
_BINDINGS = frozenset(
    {
        "binding_key",
        "seq",
        "trace_id",
        "context_id",
        "task_id",
        "agent_url",
        "router_session_id",
        "remote_skill",
        "tenant_id",
        "user_id",
        "last_remote_task_id",
        "is_terminal",
        "metadata",
        "updated_at",
    }
)
_TRACES = frozenset({"trace_id", "status", "input_json", "flow_key", "created_at", "updated_at"})
_TRACES_3 = _TRACES | {"lease_id", "targets"}
_LEASES = frozenset(
    {"lease_id", "owner", "host", "pid", "started_at", "heartbeat_at", "expires_at"}
)

TABLES: Final[Mapping[int, Mapping[str, frozenset[str]]]] = {
    1: {SCHEMA_META: _META, "events": _EVENTS, "remote_bindings": _BINDINGS},
    2: {SCHEMA_META: _META, "events": _EVENTS, "remote_bindings": _BINDINGS, "traces": _TRACES},
    3: {
        SCHEMA_META: _META,
        "events": _EVENTS,
        "remote_bindings": _BINDINGS,
        "traces": _TRACES_3,
        "leases": _LEASES,
    },
}
"""The columns of every table, by schema version."""
KNOWN_TABLES: Final = tuple(sorted(set().union(*TABLES.values())))
"""Every table name a penguiflow store has ever used; other tables are not our business."""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: the statements that bring ``version - 1`` to ``version``.

    Steps run in one transaction, in order, each followed by recording its ``version``.
    """

    version: int
    """The version the database is at after this step."""
    summary: str
    """What the step does, for logs."""
    statements: tuple[str, ...]
    """The SQL to run, in order."""


def check_tables(location: str, found: Mapping[str, Collection[str]]) -> bool:
    """Check the tables present before the version is read.

    Args:
        location: Names the database in error messages.
        found: The columns of each table in ``KNOWN_TABLES`` that exists.

    Returns:
        True if ``schema_meta`` exists (read the version next); False for a fresh database.

    Raises:
        IncompatibleStoreError: tables with our names exist without a usable ``schema_meta``.
    """
    if SCHEMA_META not in found:
        if not found:
            return False
        for table, columns in sorted(found.items()):
            _check_columns(location, table, columns, TABLES[SCHEMA_VERSION][table])
        raise IncompatibleStoreError(
            location,
            f"it has the table(s) {', '.join(sorted(found))} but no {SCHEMA_META} table, "
            "so it was not created by penguiflow",
        )
    _check_columns(location, SCHEMA_META, found[SCHEMA_META], _META)
    return True


def plan(
    location: str,
    found: Mapping[str, Collection[str]],
    version_text: str | None,
    migrations: Sequence[Migration],
) -> list[Migration]:
    """Return the migrations to run, after checking every table of the found version.

    Args:
        location: Names the database in error messages.
        found: As for ``check_tables``.
        version_text: The recorded version; None if there is none (a fresh database).
        migrations: Every step of the dialect, in order.

    Raises:
        SchemaVersionError: the database is newer than this code.
        IncompatibleStoreError: the version is unreadable, or a table is missing or has
            other columns than that version's.
    """
    if version_text is None and SCHEMA_META in found:
        raise IncompatibleStoreError(location, f"{SCHEMA_META} has no {VERSION_KEY} row")
    version = 0 if version_text is None else _parse_version(location, version_text)
    if version > SCHEMA_VERSION:
        raise SchemaVersionError(location, found=version, supported=SCHEMA_VERSION)
    expected = TABLES.get(version, {})
    for table in KNOWN_TABLES:
        if table in expected and table not in found:
            raise IncompatibleStoreError(
                location, f"its schema version is {version} but the table {table} is missing"
            )
        if table in found and table not in expected:
            raise IncompatibleStoreError(
                location,
                f"its schema version is {version}, which has no table {table}, yet one exists",
            )
        if table in found:
            _check_columns(location, table, found[table], expected[table])
    return [step for step in migrations if step.version > version]


def _parse_version(location: str, text: str) -> int:
    try:
        version = int(text)
    except ValueError:
        version = -1
    if version < 1:
        raise IncompatibleStoreError(
            location, f"{SCHEMA_META} records the schema version {text!r}, not a positive integer"
        )
    return version


def _check_columns(
    location: str, table: str, columns: Collection[str], expected: frozenset[str]
) -> None:
    missing = sorted(expected.difference(columns))
    unexpected = sorted(set(columns).difference(expected))
    if missing or unexpected:
        details = []
        if missing:
            details.append(f"missing {', '.join(missing)}")
        if unexpected:
            details.append(f"unexpected {', '.join(unexpected)}")
        raise IncompatibleStoreError(
            location,
            f"the table {table} does not have the columns of a penguiflow store "
            f"({'; '.join(details)})",
        )
