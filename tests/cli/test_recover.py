"""``penguiflow recover``: a crashed process's unfinished traces, taken over and finished."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from typing import TYPE_CHECKING

from penguiflow import Headers, Message
from penguiflow._runtime.journal import flow_key
from penguiflow.stores.sqlite import SQLiteStore

from .conftest import FLOWS, run_process
from .flows import chain, filtering

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from click.testing import Result

    from penguiflow.core import PenguiFlow


async def _journal(
    path: Path, flow: PenguiFlow, payloads: dict[str, object], *, targets: list[str] | None = None
) -> None:
    """Journal traces as a process that crashed would have left them: started, not ended.

    The store is closed afterwards, which ends its lease: the traces are free at once.
    """
    async with SQLiteStore(path) as store:
        for trace_id, payload in payloads.items():
            message = Message(payload=payload, headers=Headers(tenant="t"), trace_id=trace_id)
            await store.save_trace_start(
                trace_id, message.model_dump_json(), flow_key=flow_key(flow._floes), targets=targets
            )


def _statuses(path: Path) -> dict[str, str]:
    with sqlite3.connect(path) as db:
        return dict(db.execute("SELECT trace_id, status FROM traces").fetchall())


def test_recover_finishes_the_traces_and_sums_up(
    penguiflow: Callable[..., Result], tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    asyncio.run(_journal(path, chain(), {"a": 5, "b": -1, "c": 7}))
    result = penguiflow("recover", f"{FLOWS}:chain", "--store", f"sqlite:///{path}")
    assert result.exit_code == 1
    found = {r["trace_id"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert found["a"] == {"trace_id": "a", "payload": {"value": 10}}
    assert found["c"] == {"trace_id": "c", "payload": {"value": 14}}
    assert found["b"]["error"]["code"] == "NODE_EXCEPTION"
    assert result.stderr == (
        f"penguiflow: recovered 3 traces from sqlite:///{path}: 2 finished, 1 failed\n"
    )
    assert _statuses(path) == {"a": "finished", "b": "failed", "c": "finished"}
    again = penguiflow("recover", f"{FLOWS}:chain", "--store", f"sqlite:///{path}")
    assert again.exit_code == 0 and again.stdout == ""
    assert (
        again.stderr
        == f"penguiflow: recovered 0 traces from sqlite:///{path}: 0 finished, 0 failed\n"
    )


def test_recover_waits_for_traces_that_deliver_nothing(
    penguiflow: Callable[..., Result], tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    asyncio.run(_journal(path, filtering(), {f"t{n}": n for n in range(10)}))
    result = penguiflow("recover", f"{FLOWS}:filtering", "--store", f"sqlite:///{path}")
    assert result.exit_code == 0, result.stderr
    assert sorted(json.loads(line)["payload"] for line in result.stdout.splitlines()) == [
        0,
        2,
        4,
        6,
        8,
    ]
    assert set(_statuses(path).values()) == {"finished"}
    assert "recovered 10 traces" in result.stderr


def test_a_trace_sent_to_a_node_that_is_gone_counts_as_failed(
    penguiflow: Callable[..., Result], tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    asyncio.run(_journal(path, chain(), {"x": 1}, targets=["renamed"]))
    result = penguiflow("recover", f"{FLOWS}:chain", "--store", f"sqlite:///{path}")
    assert result.exit_code == 1 and result.stdout == ""
    assert result.stderr == (
        f"penguiflow: recovered 1 trace from sqlite:///{path}: 0 finished, 1 failed "
        "(1 could not be sent again: see the log with --debug)\n"
    )
    assert _statuses(path) == {"x": "failed"}


async def test_traces_a_live_process_holds_are_left_to_it(
    penguiflow: Callable[..., Result], tmp_path: Path
) -> None:
    path = tmp_path / "s.db"
    async with SQLiteStore(path) as alive:  # its lease is live while the command runs
        message = Message(payload=1, headers=Headers(tenant="t"), trace_id="mine")
        await alive.save_trace_start(
            "mine", message.model_dump_json(), flow_key=flow_key(chain()._floes)
        )
        await alive.flush()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(
            None, penguiflow, "recover", f"{FLOWS}:chain", "--store", f"sqlite:///{path}"
        )
        assert result.exit_code == 0
        assert "recovered 0 traces" in result.stderr
        assert [t.status for t in await alive.list_traces()] == ["running"]


def test_recover_in_a_subprocess(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    asyncio.run(_journal(path, chain(), {"p": 21}))
    done = run_process("recover", "tests.cli.flows:chain", "--store", f"sqlite:///{path}")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"trace_id": "p", "payload": {"value": 42}}


def test_recover_needs_a_store(penguiflow: Callable[..., Result]) -> None:
    result = penguiflow("recover", f"{FLOWS}:chain")
    assert result.exit_code == 2 and "Missing option '--store'" in result.stderr
