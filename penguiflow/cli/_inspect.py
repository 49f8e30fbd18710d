"""``penguiflow traces`` and ``penguiflow history``: read what a store keeps.

Both print a table (or a timeline) for people, and with ``--json`` one JSON object per line
for programs: the store's own records (``StoredTrace``, ``StoredEvent``), field for field.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import re
import time
from typing import TYPE_CHECKING, Any, Final

import click

from .._sanitize import Sanitizer
from ..stores._types import TRACE_STATUSES
from ._errors import CommandError
from ._stores import describe_url, opened
from ._target import load_function

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..state import StoredEvent
    from ..stores import StoredTrace

__all__ = ["history", "parse_duration", "traces"]

_wall_clock: Callable[[], float] = time.time
"""What ``--since`` counts back from (epoch seconds)."""
DEFAULT_MAX_CHARS: Final = 200
"""The longest error text ``history`` shows in its table (``--max-chars``)."""
_UNITS: Final = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)([smhdw]?)")


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number with an optional unit, ``s``, ``m``, ``h``, ``d`` or ``w``.

    Raises:
        ValueError: anything else.
    """
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        raise ValueError(f"expected a duration such as 90s, 15m, 1h or 2d, got {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2) or "s"]


def _duration(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="'--since'") from None


@click.command()
@click.argument("url", metavar="STORE_URL")
@click.option("--status", type=click.Choice(list(TRACE_STATUSES)), help="Only traces with it.")
@click.option("--since", metavar="DURATION", help="Only traces updated this recently (1h, 2d).")
@click.option("--limit", type=click.IntRange(min=0), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per trace.")
@click.option(
    "--redact",
    metavar="MODULE:FUNC",
    help="A function str -> str applied to each --json line (which holds the trace's input).",
)
def traces(
    url: str, status: str | None, since: str | None, limit: int, as_json: bool, redact: str | None
) -> None:
    """List the traces a store keeps, most recently updated first."""
    shown = _sanitizer(redact, DEFAULT_MAX_CHARS)
    window = _duration(since)
    after = None if window is None else _wall_clock() - window
    found = asyncio.run(_list_traces(url, status, after, limit))
    if as_json:
        for trace in found:
            click.echo(_redacted_line(shown, _trace_record(trace)))
        return
    click.echo(_trace_table(found))


async def _list_traces(
    url: str, status: str | None, since: float | None, limit: int
) -> list[StoredTrace]:
    async with opened(url, must_exist=True) as store:
        chosen = None if status is None else TRACE_STATUSES[status]
        return await store.list_traces(status=chosen, since=since, limit=limit)


def _trace_record(trace: StoredTrace) -> dict[str, Any]:
    return {
        "trace_id": trace.trace_id,
        "status": trace.status,
        "created_at": trace.created_at,
        "updated_at": trace.updated_at,
        "flow_key": trace.flow_key,
        "targets": None if trace.targets is None else json.loads(trace.targets),
        "lease_id": trace.lease_id,
        "input": None if trace.input_json is None else json.loads(trace.input_json),
    }


def _trace_table(found: list[StoredTrace]) -> str:
    if not found:
        return "no traces"
    rows = [("TRACE", "STATUS", "STARTED", "TOOK", "FLOW")]
    for trace in found:
        took = "-" if trace.status == "running" else _seconds(trace.updated_at - trace.created_at)
        rows.append((trace.trace_id, trace.status, _clock(trace.created_at), took, trace.flow_key))
    return _columns(rows)


def _shown(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--max-chars`` and ``--redact``: how user data is shown."""
    command = click.option(
        "--redact",
        metavar="MODULE:FUNC",
        help="A function str -> str applied to every value shown (and to each --json line).",
    )(command)
    return click.option(
        "--max-chars",
        type=click.IntRange(min=32),
        default=DEFAULT_MAX_CHARS,
        show_default=True,
        help="Cut longer values in the table (not in --json).",
    )(command)


def _sanitizer(redact: str | None, max_chars: int) -> Sanitizer:
    function = None if redact is None else load_function(redact, option="--redact")
    return Sanitizer(function, max_chars)


@click.command(short_help="Print a trace's events as a timeline.")
@click.argument("url", metavar="STORE_URL")
@click.argument("trace_id")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event.")
@_shown
def history(url: str, trace_id: str, as_json: bool, max_chars: int, redact: str | None) -> None:
    """Print a trace's events as a timeline: offset, node, event, attempt, latency, error.

    Errors and exceptions are user data: they pass through --redact, then are cut to
    --max-chars characters in the table; --json lines pass through --redact whole.
    """
    shown = _sanitizer(redact, max_chars)
    events = asyncio.run(_load_history(url, trace_id))
    if not events:
        raise CommandError(f"no events of trace {trace_id!r} in {describe_url(url)}", status=1)
    if as_json:
        for event in events:
            click.echo(_redacted_line(shown, _event_record(event)))
        return
    click.echo(_timeline(trace_id, events, shown))


def _redacted_line(shown: Sanitizer, record: dict[str, Any]) -> str:
    """``record`` as one JSON line, passed whole through the user's ``redact``."""
    line = json.dumps(record)
    return line if shown.redact is None else Sanitizer(shown.redact, len(line) + 32).text(line)


async def _load_history(url: str, trace_id: str) -> list[StoredEvent]:
    async with opened(url, must_exist=True) as store:
        return await store.load_history(trace_id)


def _event_record(event: StoredEvent) -> dict[str, Any]:
    return {
        "trace_id": event.trace_id,
        "ts": event.ts,
        "kind": event.kind,
        "node_name": event.node_name,
        "node_id": event.node_id,
        "payload": dict(event.payload),
    }


def _timeline(trace_id: str, events: list[StoredEvent], shown: Sanitizer) -> str:
    start = events[0].ts
    rows = [("OFFSET", "NODE", "EVENT", "ATTEMPT", "LATENCY", "ERROR")]
    for event in events:
        payload = event.payload
        latency = payload.get("latency_ms")
        rows.append(
            (
                f"+{event.ts - start:.3f}s",
                event.node_name or "-",
                event.kind,
                str(payload.get("attempt", "-")),
                "-" if latency is None else _millis(latency),
                shown.text(_error_of(payload)),
            )
        )
    head = f"trace {trace_id}: {len(events)} events from {_clock(start)}"
    return f"{head}\n{_columns(rows)}"


def _error_of(payload: Any) -> str:
    """The failure an event reports: its ``FlowError`` (code: message), else its exception."""
    flow_error = payload.get("flow_error")
    if isinstance(flow_error, dict):
        return f"{flow_error.get('code')}: {flow_error.get('message')}"
    exception = payload.get("exception")
    return "" if exception is None else str(exception)


def _millis(latency_ms: float) -> str:
    """``0.012ms`` under a millisecond, else ``12.3ms``."""
    return f"{latency_ms:.3f}ms" if latency_ms < 1 else f"{latency_ms:.1f}ms"


def _seconds(elapsed: float) -> str:
    """``12.3ms`` under a second, else ``1.234s``."""
    return f"{elapsed * 1000:.1f}ms" if elapsed < 1 else f"{elapsed:.3f}s"


def _clock(ts: float) -> str:
    """Local wall-clock time, to the millisecond."""
    moment = datetime.datetime.fromtimestamp(ts).astimezone()
    return moment.isoformat(sep=" ", timespec="milliseconds")


def _columns(rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns two spaces apart; the last column is not padded."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        lines.append("  ".join([*cells, row[-1]]).rstrip())
    return "\n".join(lines)
