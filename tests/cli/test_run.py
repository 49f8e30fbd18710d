"""``penguiflow run``: input lines in, one JSON line per delivered item out."""

from __future__ import annotations

import io
import json
import sqlite3
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow.cli._output import Reporter

from .conftest import FLOWS, run_process

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from click.testing import Result


def records(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def by_line(text: str) -> dict[int, list[dict[str, Any]]]:
    found: dict[int, list[dict[str, Any]]] = {}
    for record in records(text):
        found.setdefault(record["line"], []).append(record)
    return found


def statuses(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT trace_id, status FROM traces").fetchall())


# -- end to end, as a user runs it -------------------------------------------------------------


def test_a_subprocess_runs_a_flow_from_a_path_and_reports_each_line() -> None:
    """Lines come from a pipe (read by a thread); a failed trace and a bad line make the exit
    status 1, and the other lines still run."""
    done = run_process("run", f"{FLOWS}:flow", input="1\n-3\nnot json\n\n4\n")
    assert done.returncode == 1, done.stderr
    found = by_line(done.stdout)
    assert sorted(found) == [1, 2, 5]  # line 3 was bad, line 4 blank
    assert found[1][0]["payload"] == {"value": 2}
    assert found[5][0]["payload"] == {"value": 8}
    error = found[2][0]["error"]
    assert error["code"] == "NODE_EXCEPTION" and error["node_name"] == "double"
    assert error["trace_id"] == found[2][0]["trace_id"]
    assert "negative: -3" in error["message"]
    lines = done.stderr.splitlines()
    assert lines[0].startswith("penguiflow: input line 3: invalid JSON: Expecting value")
    assert lines[-1] == "penguiflow: 1 of 3 traces failed, 1 input line skipped"
    assert "Traceback" not in done.stderr


def test_a_subprocess_journals_to_a_store_that_traces_then_lists(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    done = run_process("run", "tests.cli.flows:chain", "--store", url, input="1\n2\n")
    assert done.returncode == 0, done.stderr
    ran = {record["trace_id"] for record in records(done.stdout)}
    listed = run_process("traces", url, "--json")
    assert listed.returncode == 0, listed.stderr
    assert {(r["trace_id"], r["status"]) for r in records(listed.stdout)} == {
        (trace_id, "finished") for trace_id in ran
    }


# -- what each line becomes, and what comes out -------------------------------------------------


def test_many_lines_run_concurrently_and_each_result_names_its_line(
    penguiflow: Callable[..., Result],
) -> None:
    lines = "".join(f"{n}\n" for n in range(200))
    result = penguiflow("run", f"{FLOWS}:flow", "--concurrency", "8", input=lines)
    assert result.exit_code == 0, result.stderr
    found = by_line(result.stdout)
    assert {line: items[0]["payload"]["value"] for line, items in found.items()} == {
        n + 1: 2 * n for n in range(200)
    }
    assert len({items[0]["trace_id"] for items in found.values()}) == 200


def test_input_comes_from_a_file_and_the_store_records_every_trace(
    penguiflow: Callable[..., Result], tmp_path: Path
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('"a"\n{"k": [1, 2]}\nnull\n')
    db = tmp_path / "s.db"
    result = penguiflow("run", f"{FLOWS}:chain", "-i", str(source), "--store", f"sqlite:///{db}")
    assert result.exit_code == 1
    found = by_line(result.stdout)
    # The whole JSON value is the payload: a string, a dict (which cannot be doubled), None.
    assert found[1][0]["payload"] == {"value": "aa"}
    assert "unsupported operand type(s) for *: 'dict'" in found[2][0]["error"]["message"]
    assert "'NoneType'" in found[3][0]["error"]["message"]
    assert statuses(db) == {
        found[1][0]["trace_id"]: "finished",
        found[2][0]["trace_id"]: "failed",
        found[3][0]["trace_id"]: "failed",
    }


def test_a_trace_that_delivers_nothing_prints_nothing_and_ends(
    penguiflow: Callable[..., Result], tmp_path: Path
) -> None:
    db = tmp_path / "s.db"
    lines = "".join(f"{n}\n" for n in range(1, 41))
    result = penguiflow("run", f"{FLOWS}:filtering", "--store", f"sqlite:///{db}", input=lines)
    assert result.exit_code == 0, result.stderr
    assert sorted(r["payload"] for r in records(result.stdout)) == list(range(2, 41, 2))
    assert list(statuses(db).values()) == 40 * ["finished"]


def test_every_item_of_a_trace_is_printed(penguiflow: Callable[..., Result]) -> None:
    result = penguiflow("run", f"{FLOWS}:splitting", input='"a b c"\n"d"\n')
    assert result.exit_code == 0, result.stderr
    found = by_line(result.stdout)
    assert sorted(r["payload"] for r in found[1]) == ["a", "b", "c"]
    assert [r["payload"] for r in found[2]] == ["d"]
    assert len({r["trace_id"] for r in found[1]}) == 1


def test_a_bare_result_is_matched_to_its_line(penguiflow: Callable[..., Result]) -> None:
    lines = "".join(f'"w{n}"\n' for n in range(30))
    result = penguiflow("run", f"{FLOWS}:bare", input=lines)
    assert result.exit_code == 0, result.stderr
    assert {line: items[0]["payload"] for line, items in by_line(result.stdout).items()} == {
        n + 1: f"W{n}" for n in range(30)
    }


def test_an_error_the_flow_delivers_is_printed_once(penguiflow: Callable[..., Result]) -> None:
    result = penguiflow("run", f"{FLOWS}:reporting", input="-1\n2\n")
    assert result.exit_code == 1
    found = by_line(result.stdout)
    assert [list(r) for r in found[1]] == [["line", "trace_id", "error"]]
    assert found[1][0]["error"]["code"] == "NODE_EXCEPTION"
    assert found[2][0]["payload"] == {"value": 4}


def test_a_cancelled_trace_is_reported_as_such(penguiflow: Callable[..., Result]) -> None:
    result = penguiflow("run", f"{FLOWS}:cancelling", input='"x"\n')
    assert result.exit_code == 1
    [record] = records(result.stdout)
    assert record["error"]["code"] == "TRACE_CANCELLED"
    assert "trace cancelled" in record["error"]["message"]


def test_the_registry_validates_lines_and_untraced_models_run_one_at_a_time(
    penguiflow: Callable[..., Result],
) -> None:
    lines = '{"text": "hi there"}\n{"text": ""}\n{"txt": 1}\n{"text": "one"}\n'
    result = penguiflow("run", f"{FLOWS}:typed", input=lines)
    assert result.exit_code == 1
    found = by_line(result.stdout)
    assert found[1] == [{"line": 1, "trace_id": None, "payload": {"text": "HI THERE", "words": 2}}]
    assert "empty question" in found[2][0]["error"]["message"]
    assert 3 not in found
    assert found[4][0]["payload"] == {"text": "ONE", "words": 1}
    assert "penguiflow: input line 3: not a valid Question: text: Field required" in (result.stderr)


def test_a_model_with_a_trace_id_keeps_the_one_given(penguiflow: Callable[..., Result]) -> None:
    result = penguiflow(
        "run", f"{FLOWS}:traced_models", input='{"size": 1}\n{"size": 2, "trace_id": "mine"}\n'
    )
    assert result.exit_code == 0, result.stderr
    found = by_line(result.stdout)
    assert found[2][0] == {"line": 2, "trace_id": "mine", "payload": {"size": 2}}
    assert len(found[1][0]["trace_id"]) == 32


def test_input_goes_to_every_entry_node_or_the_one_to_names(
    penguiflow: Callable[..., Result],
) -> None:
    both = penguiflow("run", f"{FLOWS}:two_entries", input="3\n")
    assert sorted(map(str, (r["payload"] for r in records(both.stdout)))) == ["3", "6"]
    one = penguiflow("run", f"{FLOWS}:two_entries", "--to", "shout", input="3\n")
    assert [r["payload"] for r in records(one.stdout)] == ["3"]
    typed = penguiflow("run", f"{FLOWS}:two_typed", "--to", "work", input='{"size": 5}\n')
    assert [r["payload"] for r in records(typed.stdout)] == [{"size": 5}]


@pytest.mark.parametrize(
    ("target", "options", "message"),
    [
        (
            "two_entries",
            ["--to", "nope"],
            "penguiflow: --to nope: the flow has no entry node of that name (double, shout)",
        ),
        (
            "two_typed",
            [],
            "penguiflow: the flow has several entry nodes (answer, work): choose one with --to",
        ),
        (
            "unregistered",
            ["--to", "work"],
            "penguiflow: tests/cli/flows.py:unregistered: cannot run the flow: ModelRegistry "
            "is missing entries for nodes requiring validation: work",
        ),
        ("stored", ["--store", "sqlite:///{tmp}/s.db"], "it without one to use --store"),
    ],
)
def test_a_flow_that_cannot_take_the_input_is_refused(
    penguiflow: Callable[..., Result],
    tmp_path: Path,
    target: str,
    options: list[str],
    message: str,
) -> None:
    options = [option.format(tmp=tmp_path) for option in options]
    result = penguiflow("run", f"{FLOWS}:{target}", *options, input="1\n")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert message in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_undecodable_bytes_fail_their_line_only(penguiflow: Callable[..., Result]) -> None:
    result = penguiflow("run", f"{FLOWS}:flow", input=b'"\xff"\n1\n')
    # The bytes are replaced (U+FFFD), so the line is a valid JSON string, doubled.
    assert result.exit_code == 0, result.stderr
    assert sorted(map(str, (r["payload"]["value"] for r in records(result.stdout)))) == [
        "2",
        "\ufffd\ufffd",
    ]


def test_concurrency_must_be_positive(penguiflow: Callable[..., Result]) -> None:
    result = penguiflow("run", f"{FLOWS}:flow", "--concurrency", "0", input="1\n")
    assert result.exit_code == 2
    assert "Invalid value for '--concurrency'" in result.stderr


# -- the progress line -------------------------------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_counts_and_is_redrawn_at_most_every_tenth_of_a_second() -> None:
    now = [0.0]
    out, err = _Terminal(), _Terminal()
    reporter = Reporter(out, err, progress=True, clock=lambda: now[0])
    now[0] = 1.0
    reporter.ended(failed=False)
    assert err.getvalue().endswith("1 traces  0 failed  0 invalid lines  1.0/s")
    drawn = err.getvalue()
    now[0] = 1.05
    reporter.ended(failed=True)  # too soon: not drawn
    assert err.getvalue() == drawn
    reporter.result(3, "t", "x")  # a result on the shared terminal: cleared, then redrawn
    assert out.getvalue() == '{"line":3,"trace_id":"t","payload":"x"}\n'
    assert err.getvalue().endswith("2 traces  1 failed  0 invalid lines  1.9/s")
    reporter.invalid(4, "invalid JSON")
    assert "\r\x1b[Kpenguiflow: input line 4: invalid JSON\n" in err.getvalue()
    reporter.close()
    assert err.getvalue().endswith("2 traces  1 failed  1 invalid lines  1.9/s\n")


def test_no_progress_line_when_stderr_is_not_a_terminal(
    penguiflow: Callable[..., Result],
) -> None:
    result = penguiflow("run", f"{FLOWS}:flow", input="1\n")
    assert result.exit_code == 0 and result.stderr == ""
