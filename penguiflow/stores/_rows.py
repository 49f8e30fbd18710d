"""Rows in and out of the SQL stores: the same column order and decoding for both dialects.

Rows going in are made safe for their columns (``_codec``); rows coming out are decoded,
and a row that cannot be is reported with its table and key, never skipped or rewritten.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Final

from ..state import RemoteBinding, StoredEvent
from ._base import binding_key
from ._codec import clean_text, decode_object, encode_json, encode_json_many, try_encode_json
from ._errors import CorruptRecordError
from ._types import TRACE_STATUSES, StoredTrace

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ._fold import TraceUpsert
    from ._types import BindingSave, BindingTerminal, LeaseRenew, TraceEnd, TraceQuery

__all__ = [
    "BINDING_COLUMNS",
    "EVENT_COLUMNS",
    "TRACE_COLUMNS",
    "binding_from_row",
    "binding_row",
    "claim_traces_sql",
    "event_from_row",
    "event_row",
    "event_rows",
    "events_document",
    "lease_row",
    "select_traces",
    "terminal_row",
    "trace_end_row",
    "trace_from_row",
    "trace_upsert_row",
]

EVENT_COLUMNS: Final = ("trace_id", "ts", "kind", "node_name", "node_id", "payload")
"""The columns ``event_row`` fills; reads select ``id`` first, then these."""
TRACE_COLUMNS: Final = (
    "trace_id, status, input_json, created_at, updated_at, flow_key, targets, lease_id"
)
BINDING_COLUMNS: Final = (
    "binding_key, trace_id, context_id, task_id, agent_url, router_session_id, remote_skill, "
    "tenant_id, user_id, last_remote_task_id, is_terminal, metadata"
)

Row = tuple[object, ...]


def _identity(event: StoredEvent) -> tuple[str | None, str, str | None, str | None]:
    """Return the event's trace id, kind, node name and node id, fit for text columns."""
    trace_id, kind, node_name, node_id = event.trace_id, event.kind, event.node_name, event.node_id
    # Hot path: one check of the four texts instead of four calls, in the usual case of plain
    # ASCII strings (None formats as ASCII too).
    joined = f"{trace_id}{kind}{node_name}{node_id}"
    if joined.isascii() and "\x00" not in joined and isinstance(kind, str):
        return trace_id, kind, node_name, node_id
    return clean_text(trace_id), clean_text(kind) or "", clean_text(node_name), clean_text(node_id)


def event_row(event: StoredEvent) -> Row:
    """Return the ``EVENT_COLUMNS`` values of ``event``, the payload as JSON text."""
    trace_id, kind, node_name, node_id = _identity(event)
    return (trace_id, event.ts, kind, node_name, node_id, encode_json(event.payload))


def event_rows(events: Sequence[StoredEvent]) -> list[Row]:
    """Return ``event_row`` of each of ``events``, their payloads encoded together."""
    payloads = encode_json_many([event.payload for event in events])
    return [
        (trace_id, event.ts, kind, node_name, node_id, payload)
        for event, (trace_id, kind, node_name, node_id), payload in zip(
            events, map(_identity, events), payloads, strict=True
        )
    ]


def events_document(events: Sequence[StoredEvent]) -> str:
    """Return one JSON array of ``EVENT_COLUMNS`` rows, for a set-wise insert.

    A payload goes in as a JSON object (``json_extract`` returns its text unchanged); if the
    batch cannot be encoded as it is (a NaN, a cycle...), each payload goes in as its own
    ``encode_json`` text and a non-finite ``ts`` as null.
    """
    rows = [(*_identity(event), event.ts, event.payload) for event in events]
    text = try_encode_json([(t, ts, k, n, i, p) for t, k, n, i, ts, p in rows])
    if text is not None:
        return text
    return encode_json(
        [
            (t, ts if math.isfinite(ts) else None, k, n, i, encode_json(p))
            for t, k, n, i, ts, p in rows
        ]
    )


def trace_upsert_row(upsert: TraceUpsert) -> Row:
    """Values of a trace's row, in ``_fold.TraceUpsert``'s field order."""
    return (
        clean_text(upsert.trace_id),
        upsert.status,
        clean_text(upsert.input_json),
        clean_text(upsert.flow_key),
        upsert.created_at,
        upsert.updated_at,
        clean_text(upsert.lease_id),
        clean_text(upsert.targets),
    )


def lease_row(op: LeaseRenew) -> Row:
    """Values for renewing a lease: lease_id, owner, expires_at, at."""
    return (clean_text(op.lease_id), clean_text(op.owner), op.expires_at, op.at)


def trace_end_row(op: TraceEnd) -> Row:
    """Values for ending a trace: trace_id, status, updated_at."""
    return (clean_text(op.trace_id), op.status, op.at)


def binding_row(op: BindingSave) -> Row:
    """Values for saving a binding: ``BINDING_COLUMNS``, then updated_at."""
    b = op.binding
    return (
        binding_key(b.trace_id, b.context_id, b.task_id),
        *(
            clean_text(value)
            for value in (
                b.trace_id,
                b.context_id,
                b.task_id,
                b.agent_url,
                b.router_session_id,
                b.remote_skill,
                b.tenant_id,
                b.user_id,
                b.last_remote_task_id,
            )
        ),
        bool(b.is_terminal),
        encode_json(b.metadata),
        op.at,
    )


def terminal_row(op: BindingTerminal) -> Row:
    """Values for marking a binding terminal: binding_key, updated_at."""
    return (binding_key(op.trace_id, op.context_id, op.task_id), op.at)


def event_from_row(row: Sequence[object]) -> StoredEvent:
    """Decode ``(id, *EVENT_COLUMNS)``; SQLite stores a NaN ``ts`` as NULL, read back as NaN.

    Raises:
        CorruptRecordError: the payload is not a JSON object.
    """
    row_id, trace_id, ts, kind, node_name, node_id, payload = row
    return StoredEvent(
        trace_id=_text(trace_id),
        ts=math.nan if ts is None else _number(ts, "events", row_id),
        kind=str(kind),
        node_name=_text(node_name),
        node_id=_text(node_id),
        payload=decode_object(payload, table="events", row_id=row_id),
    )


def trace_from_row(row: Sequence[object]) -> StoredTrace:
    """Decode a row of ``TRACE_COLUMNS``.

    Raises:
        CorruptRecordError: the status is not one of the known ones.
    """
    trace_id, status, input_json, created_at, updated_at, flow_key, targets, lease_id = row
    known = TRACE_STATUSES.get(str(status))
    if known is None:
        raise CorruptRecordError("traces", trace_id, f"unknown status {status!r}")
    return StoredTrace(
        trace_id=str(trace_id),
        status=known,
        input_json=_text(input_json),
        created_at=_number(created_at, "traces", trace_id),
        updated_at=_number(updated_at, "traces", trace_id),
        flow_key=str(flow_key),
        targets=_text(targets),
        lease_id=_text(lease_id),
    )


def binding_from_row(row: Sequence[object]) -> RemoteBinding:
    """Decode a row of ``BINDING_COLUMNS``.

    Raises:
        CorruptRecordError: the metadata is not a JSON object.
    """
    key, trace_id, context_id, task_id, agent_url, session, skill, tenant, user, last, *rest = row
    done, meta = rest
    return RemoteBinding(
        trace_id=str(trace_id),
        context_id=_text(context_id),
        task_id=str(task_id),
        agent_url=str(agent_url),
        router_session_id=_text(session),
        remote_skill=_text(skill),
        tenant_id=_text(tenant),
        user_id=_text(user),
        last_remote_task_id=_text(last),
        is_terminal=bool(done),
        metadata=decode_object(meta, table="remote_bindings", row_id=key),
    )


def select_traces(
    query: TraceQuery, placeholder: Callable[[int], str], collate: str = ""
) -> tuple[str, list[object]]:
    """Return the SQL and arguments that select the traces of ``query``, in its order.

    Args:
        query: What to select.
        placeholder: Makes the SQL placeholder of the n-th argument (1-based).
        collate: A ``COLLATE`` clause for the ``trace_id`` tie-break (byte order wanted).
    """
    conditions: list[str] = []
    args: list[object] = []
    for condition, value in (
        ("status = {}", query.status),
        ("flow_key = {}", query.flow_key),
        ("updated_at >= {}", query.since),
        ("updated_at < {}", query.until),
    ):
        if value is not None:
            args.append(value)
            conditions.append(condition.format(placeholder(len(args))))
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    tie = f"trace_id{collate}"
    order = f"created_at, {tie}" if query.oldest_first else f"updated_at DESC, {tie}"
    sql = f"SELECT {TRACE_COLUMNS} FROM traces{where} ORDER BY {order}"
    if query.limit is not None:
        args.append(query.limit)
        sql += f" LIMIT {placeholder(len(args))}"
    return sql, args


def claim_traces_sql(placeholder: Callable[[int], str], *, skip_locked: bool) -> str:
    """Return the statement that takes over a flow's unowned running traces, oldest first.

    Its arguments, in order: the claiming lease, the time now (epoch seconds), the flow key
    and the most traces to take. A running trace is taken when it has no lease, or its
    lease has expired (or is missing), or it is the claiming lease itself (the caller knows
    which of its own it is still running); each taken trace gets the claiming lease.
    The statement returns the taken traces as ``TRACE_COLUMNS``, in no particular order.
    With ``skip_locked`` (PostgreSQL), rows another claim is taking at the same moment are
    skipped, so two claims never take one trace; SQLite's single writer gives the same.
    """
    lease, now, flow, limit = (placeholder(n) for n in range(1, 5))
    lock = " FOR UPDATE OF t SKIP LOCKED" if skip_locked else ""
    return (
        f"UPDATE traces SET lease_id = {lease}, updated_at = {now} WHERE trace_id IN ("
        "SELECT t.trace_id FROM traces AS t LEFT JOIN leases AS l ON l.lease_id = t.lease_id"
        f" WHERE t.flow_key = {flow} AND t.status = 'running' AND (t.lease_id IS NULL"
        f" OR t.lease_id = {lease} OR l.lease_id IS NULL OR l.expires_at < {now})"
        f" ORDER BY t.created_at, t.trace_id LIMIT {limit}{lock})"
        f" RETURNING {TRACE_COLUMNS}"
    )


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _number(value: object, table: str, row_id: object) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    raise CorruptRecordError(table, row_id, f"expected a number, found {value!r}")
