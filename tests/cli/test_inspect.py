"""``penguiflow traces`` and ``penguiflow history``: a store read as a table, a timeline, and
JSON lines; on SQLite files and on PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import TYPE_CHECKING, Any

import pytest
from stores.conftest import PG_DSN, FakeClock, postgres_connection

from penguiflow.cli._inspect import parse_duration
from penguiflow.state import StoredEvent
from penguiflow.stores.postgres import PostgresStore
from penguiflow.stores.sqlite import SQLiteStore

from .conftest import FLOWS

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from click.testing import Result

    from penguiflow.stores._base import StoreBase

NOW = 1_800_000_000.0


def _event(trace_id: str, ts: float, kind: str, node: str, **payload: Any) -> StoredEvent:
    return StoredEvent(trace_id, ts, kind, node, f"id-{node}", {"event": kind, **payload})


async def _seed(store: StoreBase, clock: FakeClock) -> None:
    """An old finished trace, a recent failed one (with its events) and a running one."""
    async with store:
        clock.now = NOW - 7200
        await store.save_trace_start("old", '{"payload": 1}', flow_key="f")
        clock.now = NOW - 7199.5
        await store.save_trace_end("old", "finished")
        clock.now = NOW - 60
        await store.save_trace_start("bad", '{"payload": -1}', flow_key="f")
        for event in (
            _event("bad", NOW - 60, "node_start", "double", attempt=0, latency_ms=0.0),
            _event(
                "bad",
                NOW - 59.75,
                "node_error",
                "double",
                attempt=0,
                latency_ms=250.0,
                exception="ValueError('negative')",
            ),
            _event(
                "bad",
                NOW - 59.5,
                "node_failed",
                "double",
                attempt=0,
                latency_ms=250.0,
                exception="ValueError('negative')",
                flow_error={"code": "NODE_EXCEPTION", "message": "Node 'double' raised"},
            ),
        ):
            await store.save_event(event)
        clock.now = NOW - 59.5
        await store.save_trace_end("bad", "failed")
        clock.now = NOW - 30
        await store.save_trace_start("live", '{"payload": 2}', flow_key="f", targets=["double"])


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    clock = FakeClock()
    path = tmp_path / "state.db"
    asyncio.run(_seed(SQLiteStore(path, clock=clock), clock))
    return f"sqlite:///{path}"


@pytest.fixture
def now(monkeypatch: pytest.MonkeyPatch) -> float:
    """The command's wall clock (for --since) reads NOW."""
    monkeypatch.setattr("penguiflow.cli._inspect._wall_clock", lambda: NOW)
    return NOW


def test_traces_lists_the_most_recent_first(
    penguiflow: Callable[..., Result], sqlite_url: str
) -> None:
    result = penguiflow("traces", sqlite_url)
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["TRACE", "STATUS", "STARTED", "TOOK", "FLOW"]
    assert [line.split()[:2] for line in lines[1:]] == [
        ["live", "running"],
        ["bad", "failed"],
        ["old", "finished"],
    ]
    assert re.split(r"\s{2,}", lines[2])[3:] == ["500.0ms", "f"]
    assert re.split(r"\s{2,}", lines[1])[3] == "-"


def test_traces_filters_by_status_age_and_count(
    penguiflow: Callable[..., Result], sqlite_url: str, now: float
) -> None:
    def ids(*options: str) -> list[str]:
        result = penguiflow("traces", sqlite_url, "--json", *options)
        assert result.exit_code == 0, result.stderr
        return [json.loads(line)["trace_id"] for line in result.stdout.splitlines()]

    assert ids("--status", "failed") == ["bad"]
    assert ids("--since", "1h") == ["live", "bad"]
    assert ids("--since", "45s") == ["live"]
    assert ids("--limit", "1") == ["live"]
    assert ids("--status", "cancelled") == []
    assert penguiflow("traces", sqlite_url, "--status", "cancelled").stdout == "no traces\n"


def test_traces_json_gives_the_stored_record(
    penguiflow: Callable[..., Result], sqlite_url: str
) -> None:
    result = penguiflow("traces", sqlite_url, "--json", "--status", "running")
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["input"] == {"payload": 2} and record["targets"] == ["double"]
    assert (record["trace_id"], record["status"], record["flow_key"]) == ("live", "running", "f")
    assert record["created_at"] == NOW - 30 and isinstance(record["lease_id"], str)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--since", "yesterday"], "expected a duration such as 90s, 15m, 1h or 2d"),
        (["--status", "lost"], "Invalid value for '--status'"),
        (["--limit", "-1"], "Invalid value for '--limit'"),
    ],
)
def test_traces_refuses_bad_options(
    penguiflow: Callable[..., Result], sqlite_url: str, options: list[str], message: str
) -> None:
    result = penguiflow("traces", sqlite_url, *options)
    assert result.exit_code == 2 and message in result.stderr


def test_durations() -> None:
    assert [parse_duration(text) for text in ("90", "90s", "15m", "1.5h", "2d", "1w")] == [
        90.0,
        90.0,
        900.0,
        5400.0,
        172800.0,
        604800.0,
    ]
    with pytest.raises(ValueError, match="got '1y'"):
        parse_duration("1y")


def test_history_is_a_timeline(penguiflow: Callable[..., Result], sqlite_url: str) -> None:
    result = penguiflow("history", sqlite_url, "bad")
    assert result.exit_code == 0, result.stderr
    head, columns, *rows = result.stdout.splitlines()
    assert head.startswith("trace bad: 3 events from ")
    assert re.split(r"\s{2,}", columns) == [
        "OFFSET",
        "NODE",
        "EVENT",
        "ATTEMPT",
        "LATENCY",
        "ERROR",
    ]
    assert [re.split(r"\s{2,}", row.strip()) for row in rows] == [
        ["+0.000s", "double", "node_start", "0", "0.000ms"],
        ["+0.250s", "double", "node_error", "0", "250.0ms", "ValueError('negative')"],
        [
            "+0.500s",
            "double",
            "node_failed",
            "0",
            "250.0ms",
            "NODE_EXCEPTION: Node 'double' raised",
        ],
    ]


def test_history_json_gives_the_stored_events(
    penguiflow: Callable[..., Result], sqlite_url: str
) -> None:
    result = penguiflow("history", sqlite_url, "bad", "--json")
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(e["kind"], e["node_name"], e["ts"]) for e in events] == [
        ("node_start", "double", NOW - 60),
        ("node_error", "double", NOW - 59.75),
        ("node_failed", "double", NOW - 59.5),
    ]
    assert events[2]["payload"]["flow_error"]["code"] == "NODE_EXCEPTION"


def test_history_redacts_and_cuts_what_it_shows(
    penguiflow: Callable[..., Result], sqlite_url: str
) -> None:
    redacted = penguiflow("history", sqlite_url, "bad", "--redact", f"{FLOWS}:hide_negatives")
    assert "ValueError('[redacted]')" in redacted.stdout
    assert "negative" not in redacted.stdout
    as_json = penguiflow(
        "history", sqlite_url, "bad", "--json", "--redact", f"{FLOWS}:hide_negatives"
    )
    assert "negative" not in as_json.stdout
    assert json.loads(as_json.stdout.splitlines()[1])["payload"]["exception"] == (
        "ValueError('[redacted]')"
    )
    cut = penguiflow("history", sqlite_url, "bad", "--max-chars", "32")
    last = re.split(r"\s{2,}", cut.stdout.splitlines()[-1].strip())[-1]
    assert len(last) == 32 and last.startswith("NODE_EXCEPTION: Node")
    failing = penguiflow("history", sqlite_url, "bad", "--redact", f"{FLOWS}:broken_redaction")
    assert failing.exit_code == 0
    assert "negative" not in failing.stdout and "[hidden: the redact function failed]" in (
        failing.stdout
    )
    unknown = penguiflow("history", sqlite_url, "bad", "--redact", f"{FLOWS}:nothing_here")
    assert unknown.exit_code == 2
    assert unknown.stderr == f"penguiflow: --redact: {FLOWS} has no function 'nothing_here'\n"
    traces = penguiflow("traces", sqlite_url, "--json", "--redact", f"{FLOWS}:hide_negatives")
    assert traces.exit_code == 0 and len(traces.stdout.splitlines()) == 3


def test_history_of_an_unknown_trace_or_a_missing_file_says_so(
    penguiflow: Callable[..., Result], sqlite_url: str, tmp_path: Path
) -> None:
    unknown = penguiflow("history", sqlite_url, "nope")
    assert unknown.exit_code == 1
    assert unknown.stderr == f"penguiflow: no events of trace 'nope' in {sqlite_url}\n"
    missing = tmp_path / "missing.db"
    gone = penguiflow("history", f"sqlite:///{missing}", "bad")
    assert gone.exit_code == 2
    assert gone.stderr == f"penguiflow: store sqlite:///{missing}: no such file '{missing}'\n"
    assert not missing.exists()  # reading never creates a store


def test_history_of_a_trace_the_command_ran(
    penguiflow: Callable[..., Result], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    ran = penguiflow("run", f"{FLOWS}:chain", "--store", url, input="-2\n")
    trace_id = json.loads(ran.stdout)["trace_id"]
    result = penguiflow("history", url, trace_id)
    assert result.exit_code == 0
    rows = [re.split(r"\s{2,}", row.strip()) for row in result.stdout.splitlines()[2:]]
    assert [row[1:3] for row in rows] == [
        ["double", "node_start"],
        ["double", "node_error"],
        ["double", "node_failed"],
    ]
    assert rows[2][5] == "NODE_EXCEPTION: Node 'double' raised ValueError: negative: -2"


async def test_traces_and_history_read_postgresql(penguiflow: Callable[..., Result]) -> None:
    """Seeded in a schema of its own, read through a postgresql:// URL with ?schema=."""
    connection = await postgres_connection()
    schema = f"pf_cli_{uuid.uuid4().hex}"
    try:
        clock = FakeClock()
        await _seed(PostgresStore(PG_DSN, schema=schema, clock=clock), clock)
        url = f"{PG_DSN}?schema={schema}"
        loop = asyncio.get_running_loop()
        listed = await loop.run_in_executor(None, penguiflow, "traces", url, "--json")
        assert listed.exit_code == 0, listed.stderr
        assert [json.loads(line)["trace_id"] for line in listed.stdout.splitlines()] == [
            "live",
            "bad",
            "old",
        ]
        history = await loop.run_in_executor(None, penguiflow, "history", url, "bad")
        assert history.exit_code == 0, history.stderr
        assert history.stdout.splitlines()[-1].split()[:3] == ["+0.500s", "double", "node_failed"]
    finally:
        await connection.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        await connection.close()
