"""Run each script in ``examples/`` and check what its ``main()`` returns.

The examples order their work with ``asyncio.Event``s and roundtrips, never with sleeps, so
these tests are deterministic. The autouse leak check in ``conftest.py`` also verifies that
every flow an example starts (subflows included) is stopped with no task left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from penguiflow.core import BUDGET_EXCEEDED_TEXT, TOKEN_BUDGET_EXCEEDED_TEXT
from penguiflow.stores import SQLiteStore
from penguiflow.types import FinalAnswer, StreamChunk

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from penguiflow.core import PenguiFlow
    from penguiflow.metrics import FlowEvent

    Loader = Callable[[str], ModuleType]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


async def test_quickstart_validates_and_answers(load: Loader) -> None:
    example = load("quickstart")
    answers = await example.main()
    assert [type(answer) for answer in answers] == [example.Answer, example.Answer]
    assert [(answer.topic, answer.sources) for answer in answers] == [
        ("billing", 2),
        ("shipping", 1),
    ]
    assert answers[1].text == "Orders ship within 48 hours."


async def test_quickstart_registry_rejects_bad_input(load: Loader) -> None:
    """The registry built by the example really validates: a malformed input never answers."""
    example = load("quickstart")
    flow, registry = example.build()
    seen: list[str] = []

    async def record(event: FlowEvent) -> None:
        seen.append(event.event_type)

    flow.add_middleware(record)
    flow.run(registry=registry)
    try:
        await flow.emit({"not_text": 1})
        await flow.emit(example.Question(text="refund?"))
        answer = await flow.fetch()
    finally:
        await flow.stop()
    assert answer.topic == "billing"  # the bad input produced nothing, so this is next
    assert "node_failed" in seen


async def test_fanout_join_merges_three_parts_per_trace(load: Loader) -> None:
    example = load("fanout_join")
    results = await example.main()
    assert set(results) == {"req-kettle", "req-toaster"}
    for trace_id, product in (("req-kettle", "kettle"), ("req-toaster", "toaster")):
        merged = results[trace_id]
        assert merged["parts"] == 3
        assert merged["price"] == example.PRICES[product]
        assert merged["in_stock"] == example.STOCK[product]
        assert merged["rating"] == example.REVIEWS[product]


async def test_streaming_yields_ordered_chunks_then_final(load: Loader) -> None:
    example = load("streaming")
    out = await example.main()
    chunks = out["chunks"]
    words = example.STORY.split()
    assert all(isinstance(chunk, StreamChunk) for chunk in chunks)
    assert [chunk.seq for chunk in chunks] == list(range(len(words)))
    assert [chunk.text for chunk in chunks] == words
    assert [chunk.done for chunk in chunks] == [False] * (len(words) - 1) + [True]
    assert {chunk.stream_id for chunk in chunks} == {out["trace_id"]}
    assert out["final"] == FinalAnswer(text=example.STORY)


async def test_cancellation_stops_one_trace_only(load: Loader) -> None:
    example = load("cancellation")
    out = await example.main()
    assert out["cancelled"] is True
    assert out["results"] == {"job-a": "query job-a -> ok", "job-c": "query job-c -> ok"}
    assert out["interrupted"] == ["job-b"]
    assert out["events"] == [
        ("trace_cancel_start", "job-b", "OpenSea"),
        ("trace_cancel_finish", "job-b", "Rookery"),
    ]


async def test_playbook_runs_subflow_on_parent_trace(
    load: Loader, _leak_check: list[PenguiFlow]
) -> None:
    example = load("playbook")
    out = await example.main()
    payload = out["payload"]
    assert payload["trace"] == out["trace_id"] == "ask-1"
    assert payload["topic"] == "penguins"
    assert payload["sources"] == 3
    assert payload["question"] == "Tell me about penguins"
    # The parent flow and one subflow were started, and both are stopped again.
    assert len(_leak_check) == 2
    assert not any(flow._running or flow._tasks for flow in _leak_check)


async def test_controller_ends_with_answer_or_budget(load: Loader) -> None:
    example = load("controller")
    results = await example.main()
    assert results["answer"] == FinalAnswer(
        text="They live in Antarctica. They breed on sea ice.",
        citations=["fact-0", "fact-1"],
    )
    assert results["hops"].text == BUDGET_EXCEEDED_TEXT
    assert results["tokens"].text == TOKEN_BUDGET_EXCEEDED_TEXT


async def test_demo_shows_fanout_join_stream_retry_and_cancel(
    load: Loader, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    example = load("demo")
    summary = await example.main(tmp_path / "demo.db")

    assert set(summary["answers"]) == {"req-1", "req-2"}
    assert summary["answers"]["req-2"].startswith("They eat mostly krill")
    assert summary["cancelled"] == ["req-3"]
    # Every trace, the cancelled one included, was joined from all three searchers.
    assert summary["merged"] == {"req-1": 3, "req-2": 3, "req-3": 3}
    # Streams are numbered from 0; the cancelled one stopped after its first chunk.
    assert summary["chunks"] == {"req-1": [0, 1, 2], "req-2": [0, 1, 2], "req-3": [0]}
    # Exactly one retry: the docs node's first call, on the first trace.
    assert summary["retries"] == [("req-1", "docs", 1)]
    events = summary["events"]
    assert events["node_error"] == events["node_retry"] == 1
    assert "node_failed" not in events
    assert events["trace_cancel_start"] == events["trace_cancel_finish"] == 1
    assert events["node_trace_cancelled"] == 1

    printed = capsys.readouterr().out
    assert "retry (attempt 1) in 0.05 s" in printed
    assert "trace_cancel_start" in printed
    assert "cancelled after 1 streamed chunk(s)" in printed
    assert printed.splitlines()[-1] == f"Trace history saved to {(tmp_path / 'demo.db').resolve()}"


# What each demo trace journals: every node call's events (sse runs once per chunk and once
# for the answer), the docs node's failed first attempt on req-1, and req-3's cancellation.
DEMO_JOURNAL = {
    "req-1": ("finished", {"node_start": 12, "node_success": 11, "node_error": 1, "node_retry": 1}),
    "req-2": ("finished", {"node_start": 11, "node_success": 11}),
    "req-3": (
        "cancelled",
        {
            "node_start": 8,
            "node_success": 7,
            "trace_cancel_start": 1,
            "node_trace_cancelled": 1,
            "trace_cancel_finish": 1,
        },
    ),
}


async def read_demo_db(path: Path) -> dict[str, tuple[str, dict[str, int]]]:
    """Each stored trace's status and event counts, read back with a store of its own."""
    async with SQLiteStore(path) as store:
        found = {}
        for trace in await store.list_traces():
            history = await store.load_history(trace.trace_id)
            assert {event.trace_id for event in history} == {trace.trace_id}
            found[trace.trace_id] = (trace.status, dict(Counter(e.kind for e in history)))
        return found


async def test_demo_journals_its_traces_to_the_sqlite_file(load: Loader, tmp_path: Path) -> None:
    """The demo's file holds its three traces and their events, for a reader opened later."""
    db = tmp_path / "demo.db"
    summary = await load("demo").main(db)
    trace_ids = summary["trace_ids"]
    assert set(trace_ids) == set(DEMO_JOURNAL)
    assert await read_demo_db(db) == {trace_ids[label]: DEMO_JOURNAL[label] for label in trace_ids}
    # What the demo printed is what the file holds.
    for label, entry in summary["journal"].items():
        status, kinds = DEMO_JOURNAL[label]
        assert (entry["trace_id"], entry["status"], entry["kinds"]) == (
            trace_ids[label],
            status,
            Counter(kinds),
        )
        assert entry["events"] == sum(kinds.values())


async def test_demo_script_writes_to_the_current_directory_and_keeps_each_run(
    load: Loader, tmp_path: Path
) -> None:
    """``python examples/demo.py`` (the README's command) with no flag and no variable writes
    ./penguiflow-demo.db and says so last; a second run on the same file adds its own traces."""
    env = {key: value for key, value in os.environ.items() if key != "PENGUIFLOW_DEMO_DB"}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    db = tmp_path / "penguiflow-demo.db"
    assert done.stdout.splitlines()[-1] == f"Trace history saved to {db.resolve()}"
    first = await read_demo_db(db)

    summary = await load("demo").main(db)
    both = await read_demo_db(db)
    assert len(both) == 6
    assert both == first | {
        summary["trace_ids"][label]: expected for label, expected in DEMO_JOURNAL.items()
    }
    runs = {trace_id.partition(".")[2] for trace_id in both}
    assert len(runs) == 2


def test_demo_db_path_flag_beats_variable_beats_default(load: Loader) -> None:
    db_path = load("demo").db_path
    assert db_path([], {}) == Path("penguiflow-demo.db")
    assert db_path([], {"PENGUIFLOW_DEMO_DB": "/data/pf.db"}) == Path("/data/pf.db")
    assert db_path(["--db", "run.db"], {"PENGUIFLOW_DEMO_DB": "/data/pf.db"}) == Path("run.db")


async def test_concurrency_example_runs_calls_in_parallel(load: Loader) -> None:
    result = await load("concurrency").main()
    assert result["answers"][3] == "profile of user 3"
    assert result["peak"] == 8


@pytest.mark.looptime
async def test_resilience_example_trips_and_recovers(load: Loader) -> None:
    module = load("resilience")
    result = await module.main(cooldown_s=30.0)
    assert result["codes"] == ["NODE_EXCEPTION"] * 3 + ["CIRCUIT_OPEN"] * 2
    assert result["calls"] == 4  # three failures, then the trial after the cool-down
    assert result["transitions"] == ["circuit_open", "circuit_half_open", "circuit_closed"]
    assert (result["status_while_open"], result["status_after"]) == ("failing", "ok")
