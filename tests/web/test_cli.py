"""``penguiflow serve``: the click command, run for real in a subprocess (a real SQLite file
for ``--store``, SIGTERM to stop) and through ``CliRunner`` for the arguments it refuses."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from core.helpers import within

from penguiflow.cli._app import cli
from penguiflow.cli._stores import open_store
from penguiflow.stores import SQLiteStore
from penguiflow.web import TOKEN_ENV

from .sample_flow import build
from .support import msg, tcp_client

SAMPLE = f"{Path(__file__).with_name('sample_flow.py')}:build"


async def start_cli(*args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    """``penguiflow serve ARGS`` in a fresh interpreter (``python -m penguiflow``)."""
    environ = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "penguiflow",
        "serve",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**environ, **(env or {})},
    )


async def url_of(process: asyncio.subprocess.Process) -> str:
    """The URL the command prints once it listens."""
    assert process.stdout is not None
    line = (await within(process.stdout.readline())).decode()
    assert line.startswith("penguiflow serve: http://"), line
    return line.removeprefix("penguiflow serve: ").strip()


async def stop(process: asyncio.subprocess.Process) -> tuple[int | None, str, str]:
    """SIGTERM, then the exit status and what it printed after the URL."""
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
    out, err = await within(process.communicate())
    return process.returncode, out.decode(), err.decode()


async def written_traces(path: Path) -> None:
    """Two traces of the sample flow, run to the end and committed to ``path``."""
    async with SQLiteStore(path) as store:
        flow = build(state_store=store)
        flow.run()
        try:
            for name in ("first", "second"):
                await flow.emit(msg(name, name))
                await within(flow.fetch(trace_id=name))
        finally:
            await flow.stop()


async def test_serve_runs_the_flow_and_reads_the_store(tmp_path: Path) -> None:
    """Traces written by an earlier process: the page reads them back after a restart."""
    db = tmp_path / "traces.db"
    await written_traces(db)
    process = await start_cli(SAMPLE, "--port", "0", "--store", f"sqlite:///{db}")
    try:
        url = await url_of(process)
        async with tcp_client(url) as client:
            graph = (await client.get("/api/graph")).json()
            listing = (await client.get("/api/traces")).json()
            history = (await client.get("/api/traces/first")).json()
            health = await client.get("/healthz")
            refused = await client.post("/api/cancel", json={"trace_id": "first"})
    finally:
        code, out, err = await stop(process)
    assert [n["name"] for n in graph["nodes"]] == ["OpenSea", "shout", "Rookery"]
    assert listing["source"] == "store"
    assert {(t["trace_id"], t["status"]) for t in listing["traces"]} == {
        ("first", "finished"),
        ("second", "finished"),
    }
    assert '"first"' in history["input"]
    assert [e["kind"] for e in history["events"]].count("node_success") == 1
    assert health.status_code == 200 and health.json()["running"] is True
    assert refused.status_code == 403
    assert (code, out) == (0, "penguiflow serve: stopped\n"), err
    assert "Traceback" not in err


async def test_serve_feeds_an_input_file_while_the_page_is_up(tmp_path: Path) -> None:
    db = tmp_path / "fed.db"
    lines = tmp_path / "in.jsonl"
    lines.write_text('"a"\n"boom"\nnot json\n')
    process = await start_cli(SAMPLE, "--port", "0", "--store", f"sqlite:///{db}", "-i", str(lines))
    try:
        url = await url_of(process)
        assert process.stdout is not None
        printed = [json.loads(await within(process.stdout.readline())) for _ in range(2)]
        async with tcp_client(url) as client:
            listing = (await client.get("/api/traces")).json()
    finally:
        code, out, err = await stop(process)
    by_line = {line["line"]: line for line in printed}
    assert by_line[1]["payload"] == "A"
    assert by_line[2]["error"]["code"] == "NODE_EXCEPTION"
    statuses = {t["trace_id"]: t["status"] for t in listing["traces"]}
    assert statuses == {by_line[1]["trace_id"]: "finished", by_line[2]["trace_id"]: "failed"}
    assert (code, out) == (0, "penguiflow serve: stopped\n"), err
    assert "input line 3" in err
    assert "fed 2 traces: 1 failed, 1 input line skipped" in err


async def test_serve_beyond_loopback_needs_and_uses_the_token() -> None:
    process = await start_cli(
        SAMPLE, "--host", "0.0.0.0", "--port", "0", "--control", env={TOKEN_ENV: "t0ken"}
    )
    try:
        url = (await url_of(process)).replace("0.0.0.0", "127.0.0.1")
        assert process.stdout is not None
        hint = (await within(process.stdout.readline())).decode()
        async with tcp_client(url) as client:
            anonymous = await client.get("/api/graph")
            allowed = await client.get("/api/graph", headers={"Authorization": "Bearer t0ken"})
    finally:
        code, _, err = await stop(process)
    assert "?token=<token>" in hint and "t0ken" not in hint
    assert (anonymous.status_code, allowed.status_code) == (401, 200)
    assert allowed.json()["control"] is True
    assert code == 0, err


def invoke(*args: str) -> tuple[int, str]:
    """``penguiflow serve ARGS`` in this process: its status and what it printed."""
    result = CliRunner().invoke(cli, ["serve", *args], env={TOKEN_ENV: ""})
    return result.exit_code, result.output


def test_a_public_host_without_token_is_refused() -> None:
    code, output = invoke(SAMPLE, "--host", "0.0.0.0")
    assert code == 2
    assert "--host 0.0.0.0 is not a loopback address: give --token or set" in output


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("no_colon", "expected MODULE:ATTR or PATH.py:ATTR, got 'no_colon'"),
        ("no_such_module_here:flow", "No module named 'no_such_module_here'"),
        ("os:getcwd", "gives str, not a flow"),
        ("os:no_such_attribute", "has no attribute 'no_such_attribute'"),
    ],
)
def test_a_bad_target_is_named(target: str, expected: str) -> None:
    code, output = invoke(target)
    assert code == 2
    assert output.startswith("penguiflow: ") and expected in output


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("mysql://me:pa55word@db/x", "unsupported store URL 'mysql://me:***@db/x'"),
        ("sqlite:///", "malformed SQLite URL 'sqlite:///'"),
        ("just-a-path.db", "unsupported store URL 'just-a-path.db'"),
    ],
)
def test_a_bad_store_url_is_named_without_its_password(url: str, expected: str) -> None:
    code, output = invoke(SAMPLE, "--store", url)
    assert code == 2
    assert output.startswith("penguiflow: ") and expected in output
    assert "pa55word" not in output


async def test_a_store_that_cannot_open_is_reported(tmp_path: Path) -> None:
    process = await start_cli(SAMPLE, "--port", "0", "--store", f"sqlite:///{tmp_path}/no/x.db")
    out, err = (part.decode() for part in await within(process.communicate()))
    assert process.returncode == 1 and out == ""
    assert "penguiflow: serve" in err
    assert "SQLiteStore: cannot create the database file" in err
    assert "Traceback" not in err


def test_store_urls_name_their_store(tmp_path: Path) -> None:
    relative = open_store("sqlite:///traces.db")
    absolute = open_store(f"sqlite:///{tmp_path}/a.db")
    postgres = open_store("postgresql://postgres@127.0.0.1:5432/test")
    assert relative.describe() == "SQLiteStore('traces.db')"
    assert absolute.describe() == f"SQLiteStore('{tmp_path}/a.db')"
    assert type(postgres).__name__ == "PostgresStore"
