"""The README's walk-through: the demo journals to SQLite, then ``penguiflow run``,
``traces`` and ``history`` work on the same file (``examples/demo.py:flow``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import TYPE_CHECKING

from .conftest import REPO, SUBPROCESS_TIMEOUT_S, run_process

if TYPE_CHECKING:
    from pathlib import Path

QUESTIONS = '"How do penguins stay warm?"\n"What do penguins eat?"\n"What is a floe?"\n'


def test_run_traces_and_history_on_the_demo_file(tmp_path: Path) -> None:
    db = tmp_path / "penguiflow-demo.db"
    demo = subprocess.run(
        [sys.executable, "examples/demo.py", "--db", str(db)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT_S,
        check=True,
    )
    assert demo.stdout.rstrip().endswith(f"Trace history saved to {db}")
    url = f"sqlite:///{db}"

    ran = run_process("run", "examples/demo.py:flow", "--store", url, input=QUESTIONS)
    assert ran.returncode == 1  # one question the demo knows nothing about
    lines = [json.loads(line) for line in ran.stdout.splitlines()]
    answers = [line for line in lines if "payload" in line]
    assert [(a["line"], a["payload"]["sources"]) for a in answers] == [
        (1, ["web", "docs", "memory"]),
        (2, ["web", "docs", "memory"]),
    ]
    assert answers[0]["payload"]["text"].startswith("Dense, overlapping feathers")
    errors = [line for line in lines if "error" in line]
    assert {e["line"] for e in errors} == {3}
    assert {e["error"]["node_name"] for e in errors} == {"web", "docs", "memory"}
    assert "event: done" in ran.stderr  # the sse node's frames go to stderr
    assert ran.stderr.rstrip().endswith("penguiflow: 1 of 3 traces failed, 0 input lines skipped")

    listed = run_process("traces", url, "--json")
    statuses = [json.loads(line)["status"] for line in listed.stdout.splitlines()]
    assert sorted(statuses) == [
        "cancelled",
        "failed",
        "finished",
        "finished",
        "finished",
        "finished",
    ]

    failed = errors[0]["trace_id"]
    history = run_process("history", url, failed)
    assert history.returncode == 0, history.stderr
    rows = [re.split(r"\s{2,}", row.strip()) for row in history.stdout.splitlines()[2:]]
    retries = [row for row in rows if row[1:3] == ["docs", "node_retry"]]
    assert [row[3] for row in retries] == ["1", "2"]
    assert rows[-1][1:3] == ["docs", "node_failed"]
    assert "no knowledge about 'What is a floe?'" in rows[-1][5]
