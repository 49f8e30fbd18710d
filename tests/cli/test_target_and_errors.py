"""MODULE:ATTR, store URLs and the group's errors: one clear line, no traceback unless asked."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from penguiflow.cli import MISSING_CLICK, main
from penguiflow.cli._errors import StoreURLError, TargetError
from penguiflow.cli._stores import describe_url, open_store
from penguiflow.cli._target import load_target
from penguiflow.stores.postgres import PostgresStore
from penguiflow.stores.sqlite import SQLiteStore
from penguiflow.viz import flow_to_dot, flow_to_mermaid

from .conftest import FLOWS, REPO, run_process
from .flows import chain

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from click.testing import Result


def test_a_target_is_a_flow_a_factory_or_a_tuple_by_path_or_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.syspath_prepend(str(REPO))  # as the command does for the current directory
    flow, registry, types = load_target(f"{FLOWS}:flow")
    assert [node.name for node in flow._nodes] == ["double", "describe"]
    assert registry is None and types == []
    _flow, registry, _types = load_target("tests.cli.flows:typed")
    assert registry is not None and registry.has("answer")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("no_colon", "expected MODULE:ATTR or PATH.py:ATTR, got 'no_colon'"),
        (f"{FLOWS}:nothing", "tests/cli/flows.py has no attribute 'nothing'"),
        (f"{FLOWS}:not_a_flow", "tests/cli/flows.py:not_a_flow gives int, not a flow"),
        (f"{FLOWS}:NO_VALIDATION", "tests/cli/flows.py:NO_VALIDATION gives NodePolicy, not a"),
        (
            f"{FLOWS}:broken",
            "tests/cli/flows.py:broken: calling broken() raised RuntimeError: cannot build",
        ),
        ("tests/cli/missing.py:flow", "cannot import tests/cli/missing.py: no such file"),
        (
            "tests.cli.no_such_module:flow",
            "cannot import tests.cli.no_such_module: ModuleNotFoundError: No module named "
            "'tests.cli.no_such_module'",
        ),
    ],
)
def test_a_bad_target_is_named_in_one_line(
    penguiflow: Callable[..., Result], target: str, message: str
) -> None:
    with pytest.raises(TargetError) as raised:
        load_target(target)
    assert message in str(raised.value)
    result = penguiflow("graph", target)
    assert result.exit_code == 2
    assert result.stderr == f"penguiflow: {raised.value!s}\n"


def test_a_module_that_fails_to_import_is_named_with_its_error(
    penguiflow: Callable[..., Result], tmp_path: Path
) -> None:
    broken = tmp_path / "broken_flow.py"
    broken.write_text("def flow(:\n")
    result = penguiflow("graph", f"{broken}:flow")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"penguiflow: cannot import {broken}: SyntaxError: ")
    assert "_penguiflow_target_broken_flow" not in sys.modules


def test_debug_shows_the_traceback(penguiflow: Callable[..., Result]) -> None:
    result = penguiflow("--debug", "graph", f"{FLOWS}:broken")
    assert result.exit_code == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "RuntimeError: cannot build" in result.stderr


def test_graph_prints_mermaid_or_dot(penguiflow: Callable[..., Result]) -> None:
    mermaid = penguiflow("graph", f"{FLOWS}:chain")
    assert mermaid.exit_code == 0
    assert mermaid.stdout == flow_to_mermaid(chain()) + "\n"
    dot = penguiflow("graph", "tests.cli.flows:chain", "--format", "dot")
    assert dot.stdout == flow_to_dot(chain()) + "\n"
    assert "double -> describe" in dot.stdout
    wrong = penguiflow("graph", f"{FLOWS}:chain", "--format", "png")
    assert wrong.exit_code == 2 and "Invalid value for '--format'" in wrong.stderr


# -- store URLs --------------------------------------------------------------------------------


def test_store_urls_name_a_sqlite_file_or_a_postgres_database(tmp_path: Path) -> None:
    relative = open_store("sqlite:///state.db")
    assert isinstance(relative, SQLiteStore) and relative.describe() == "SQLiteStore('state.db')"
    absolute = open_store(f"sqlite:///{tmp_path}/s.db")  # four slashes: an absolute path
    assert absolute.describe() == f"SQLiteStore('{tmp_path}/s.db')"
    postgres = open_store("postgresql://u:secret@127.0.0.1:5432/db?schema=pf&sslmode=disable")
    assert isinstance(postgres, PostgresStore)
    assert postgres.describe() == "PostgresStore(schema='pf')"
    assert postgres._dsn == "postgresql://u:secret@127.0.0.1:5432/db?sslmode=disable"
    assert isinstance(open_store("postgres://127.0.0.1/db"), PostgresStore)
    assert describe_url("postgresql://u:secret@h/db") == "postgresql://u:***@h/db"
    assert describe_url("sqlite:///a.db") == "sqlite:///a.db"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://127.0.0.1", "unsupported store URL 'redis://127.0.0.1': expected sqlite:///"),
        ("state.db", "unsupported store URL 'state.db'"),
        ("sqlite://host/x.db", "malformed SQLite URL 'sqlite://host/x.db'"),
        ("sqlite:///", "malformed SQLite URL"),
        ("sqlite:///a.db?mode=ro", "malformed SQLite URL"),
        ("postgresql://u:pw@h/db?schema=", "store postgresql://u:***@h/db?schema=: give ?schema"),
        ("postgresql://h/db?schema=a&schema=b", "give ?schema=NAME once"),
    ],
)
def test_a_bad_store_url_is_refused_with_what_was_expected(url: str, message: str) -> None:
    with pytest.raises(StoreURLError) as raised:
        open_store(url)
    assert message in str(raised.value)


def test_a_store_url_error_names_the_url_on_the_command_line(
    penguiflow: Callable[..., Result],
) -> None:
    result = penguiflow("run", f"{FLOWS}:flow", "--store", "mysql://db", input="1\n")
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == (
        "penguiflow: unsupported store URL 'mysql://db': expected sqlite:///PATH or "
        "postgresql://USER@HOST:PORT/DATABASE\n"
    )


def test_a_store_that_cannot_be_opened_is_named(
    penguiflow: Callable[..., Result], tmp_path: Path
) -> None:
    not_a_db = tmp_path / "notes.db"
    not_a_db.write_text("these are not the tables you are looking for\n" * 100)
    result = penguiflow("traces", f"sqlite:///{not_a_db}")
    assert result.exit_code == 2
    assert result.stderr.startswith(f"penguiflow: cannot open the store sqlite:///{not_a_db}: ")
    assert len(result.stderr.splitlines()) == 1


# -- the command itself ------------------------------------------------------------------------


def test_python_dash_m_and_main_give_the_same_command() -> None:
    done = run_process("--help")
    assert done.returncode == 0
    for command in ("run", "graph", "traces", "history", "recover", "worker", "dlq"):
        assert f"  {command} " in done.stdout
    assert main(["graph", f"{FLOWS}:nothing"]) == 2
    assert main(["graph", f"{FLOWS}:chain"]) == 0
    assert main(["nope"]) == 2  # click's usage error


def test_without_click_the_command_says_how_to_get_it() -> None:
    code = (
        "import sys; sys.modules['click'] = None\n"  # as if it were not installed
        "from penguiflow.cli import main\n"
        "sys.exit(main(['--help']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=False
    )
    assert done.returncode == 2
    assert done.stderr == MISSING_CLICK + "\n"
    assert MISSING_CLICK == (
        "penguiflow: the command needs click: pip install 'penguiflow-runtime[cli]'"
    )


def test_the_core_does_not_import_click() -> None:
    code = "import sys, penguiflow, penguiflow.cli; assert 'click' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, check=False)
    assert done.returncode == 0


def test_without_click_main_returns_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "click", None)  # what the import system sees when absent
    assert main(["--help"]) == 2
    assert capsys.readouterr().err == MISSING_CLICK + "\n"


def test_a_damaged_store_is_an_error_of_one_line_unless_debugging(
    penguiflow: Callable[..., Result], tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    url = f"sqlite:///{path}"
    penguiflow("run", f"{FLOWS}:chain", "--store", url, input="1\n")
    with sqlite3.connect(path) as db:
        (trace_id,) = db.execute("SELECT trace_id FROM traces").fetchone()
        db.execute("UPDATE events SET payload = 'not json'")
    result = penguiflow("history", url, trace_id)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("penguiflow: error: CorruptRecordError: ")
    assert line.endswith(" (--debug shows the traceback)")
    debugged = penguiflow("--debug", "history", url, trace_id)
    assert "Traceback (most recent call last)" in debugged.stderr


def test_dlq_needs_a_redis_url(
    penguiflow: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PENGUIFLOW_REDIS_URL", raising=False)
    result = penguiflow("dlq", "list", f"{FLOWS}:chain", "double")
    assert result.exit_code == 2
    assert result.stderr == "penguiflow: give --redis URL or set PENGUIFLOW_REDIS_URL\n"
    shown = penguiflow("dlq", "show", f"{FLOWS}:chain", "double", "--redis", "redis://x")
    assert shown.stderr == "penguiflow: dlq show takes one dead-letter id, got 0\n"


def test_a_flow_rebuilt_on_a_store_keeps_its_graph_and_settings() -> None:
    from penguiflow._runtime.journal import flow_key
    from penguiflow.stores import MemoryStore

    from .flows import reporting, two_entries

    for flow in (reporting(), two_entries()):
        seen: list[object] = []
        flow.add_middleware(seen.append)
        store = MemoryStore()
        rebuilt = flow._with_state_store(store)
        assert [(f.source, f.target) for f in rebuilt._floes] == [
            (f.source, f.target) for f in flow._floes
        ]
        assert flow_key(rebuilt._floes) == flow_key(flow._floes)
        assert rebuilt._middlewares == flow._middlewares
        assert rebuilt._emit_errors_to_rookery == flow._emit_errors_to_rookery
        assert rebuilt._state_store is store
        with pytest.raises(ValueError, match="the flow keeps its state in MemoryStore"):
            rebuilt._with_state_store(MemoryStore())
