"""Logging out of the box: nothing on stderr unless the application configures logging, and
event log lines that name the node, the trace and the attempt.

The stderr checks run fresh interpreters, since in-process the test runner's own handlers
sit on the root logger.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from penguiflow.core import PenguiFlow
from penguiflow.errors import FlowError
from penguiflow.logging import ExtraFormatter, StructuredFormatter
from penguiflow.node import Node, NodePolicy
from penguiflow.types import Headers, Message

if TYPE_CHECKING:
    import pytest

ROOT = Path(__file__).resolve().parent.parent
# distributed.py needs a Redis server: tests/distributed/test_example_and_cli.py runs it.
EXAMPLES = sorted(
    path for path in (ROOT / "examples").glob("*.py") if path.name != "distributed.py"
)

#: A node that fails its first two attempts and succeeds on the third, run to completion.
FLAKY_FLOW = textwrap.dedent(
    """
    import asyncio
    import logging
    import sys

    from penguiflow import Headers, Message, Node, NodePolicy, create

    if sys.argv[1] == "basicConfig":
        logging.basicConfig()

    async def main() -> None:
        calls = 0

        async def fetch(msg, ctx):
            nonlocal calls
            calls += 1
            if calls < 3:
                raise ConnectionError("flaky")
            return msg.model_copy(update={"payload": "ok"})

        policy = NodePolicy(validate="none", max_retries=2, backoff_base=0.0)
        flow = create(Node(fetch, name="fetch", policy=policy).to())
        flow.run()
        try:
            await flow.emit(Message(payload="q", headers=Headers(tenant="t"), trace_id="abc"))
            print((await flow.fetch()).payload)
        finally:
            await flow.stop()

    asyncio.run(main())
    """
)


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_library_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("penguiflow").handlers
    assert any(type(handler) is logging.NullHandler for handler in handlers)


def test_failed_attempts_print_nothing_when_logging_is_not_configured() -> None:
    """Before the NullHandler, Python's last-resort handler printed a bare ``node_error`` and
    a traceback per failed attempt."""
    result = run_python("-c", FLAKY_FLOW, "unconfigured")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    assert result.stderr == ""


def test_a_basic_config_line_names_the_node_the_trace_and_the_attempt() -> None:
    result = run_python("-c", FLAKY_FLOW, "basicConfig")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    lines = [line for line in result.stderr.splitlines() if line.startswith("ERROR:")]
    assert lines == [
        "ERROR:penguiflow.core:node_error node=fetch trace=abc attempt=0",
        "ERROR:penguiflow.core:node_error node=fetch trace=abc attempt=1",
    ]
    assert result.stderr.count("ConnectionError: flaky") == 2  # each with its traceback


async def test_event_records_keep_their_fields_and_formatters_show_the_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="penguiflow.core")

    async def fetch(msg: Any, ctx: Any) -> Any:
        raise ValueError("down")

    flow = PenguiFlow(
        Node(fetch, name="fetch", policy=NodePolicy(validate="none")).to(),
        emit_errors_to_rookery=True,
    )
    flow.run()
    try:
        await flow.emit(Message(payload="q", headers=Headers(tenant="t"), trace_id="abc"))
        assert isinstance(await flow.fetch(), FlowError)
    finally:
        await flow.stop()
    [record] = [r for r in caplog.records if getattr(r, "event", None) == "node_error"]
    assert record.getMessage() == "node_error node=fetch trace=abc attempt=0"
    assert (record.event, record.node_name, record.trace_id, record.attempt) == (
        "node_error",
        "fetch",
        "abc",
        0,
    )
    assert record.exception == "ValueError('down')"
    record = logging.makeLogRecord({**record.__dict__, "exc_info": None, "exc_text": None})
    plain = logging.Formatter(logging.BASIC_FORMAT).format(record)
    assert plain == "ERROR:penguiflow.core:node_error node=fetch trace=abc attempt=0"
    extra = ExtraFormatter().format(record)
    assert extra.startswith("node_error node=fetch trace=abc attempt=0 [ts=")
    assert 'event="node_error", node_name="fetch"' in extra
    entry = json.loads(StructuredFormatter().format(record))
    assert entry["message"] == "node_error node=fetch trace=abc attempt=0"
    assert entry["extra"]["trace_id"] == "abc"


def test_examples_write_nothing_to_stderr() -> None:
    """Each example run as a script (``python examples/X.py``): retries and failures they
    cause on purpose must not print tracebacks."""
    with ThreadPoolExecutor(max_workers=len(EXAMPLES)) as pool:
        runs = pool.map(lambda path: run_python(str(path)), EXAMPLES)
        results = dict(zip(EXAMPLES, runs, strict=True))
    for path, result in results.items():
        assert result.returncode == 0, (path.name, result.stderr)
        assert result.stdout, path.name
        assert result.stderr == "", (path.name, result.stderr)
