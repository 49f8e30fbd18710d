"""The benchmark scripts still run against the runtime as it is (tiny sizes, one round).

Only that they run and report every line is checked here: no timing is ever asserted.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


@pytest.fixture
def chain(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``benchmarks/chain.py``, imported the way the scripts import each other (by bare name)."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import chain as module

    yield module
    for name in ("chain", "_common"):
        sys.modules.pop(name, None)


async def test_chain_reports_every_line_and_restores_the_event_builder(chain: Any) -> None:
    from penguiflow._runtime.events import EventTemplate

    real_build = EventTemplate.build
    results = await chain.main(messages=300, roundtrips=20, middleware=True, rounds=1)
    lines = [line for line, _, _ in chain.rows(results)]
    assert lines == [
        "chain, pipelined 300 msgs",
        "chain, one at a time (20 round trips)",
        "chain + no-op middleware, pipelined",
        "events alone: build + deliver a message's FlowEvents, no runtime",
        "events free: the middleware line with events prebuilt, not built",
    ]
    for key in ("throughput_ratio", "middleware_ratio", "events_free_ratio", "middleware_bound"):
        assert results[key] > 0, key
    assert EventTemplate.build is real_build  # the events-free side put the real builder back


def test_ratios_pair_the_figures_of_each_round(chain: Any) -> None:
    """A slow phase that spans a round hits both sides of that round and cancels out."""
    import _common

    rounds = _common.Rounds({"floor": [1.0, 10.0, 10.0], "flow": [0.5, 5.0, 1.0]})
    assert rounds["flow"] / rounds["floor"] == 0.1  # the ratio of medians mixes rounds
    assert rounds.ratio("flow", "floor") == 0.5
    assert rounds.per_round(lambda figures: figures["floor"] - figures["flow"]) == 5.0


async def test_compare_runs_two_copies_of_the_runtime_side_by_side(chain: Any) -> None:
    import tempfile
    from pathlib import Path

    import compare

    with tempfile.TemporaryDirectory() as directory:
        sys.path.insert(0, directory)
        try:
            runtimes = {
                label: compare.export(compare.WORKTREE, Path(directory), f"_pf_smoke_{label}")
                for label in ("base", "other")
            }
            assert runtimes["base"].PenguiFlow is not runtimes["other"].PenguiFlow
            measured = await compare.main(runtimes, messages=100, rounds=1, middleware=True)
        finally:
            sys.path.remove(directory)
            for name in [n for n in sys.modules if n.startswith("_pf_smoke_")]:
                del sys.modules[name]
            sys.modules.pop("compare", None)
    assert set(measured) == {"floor", "base", "other"}
    assert all(rate > 0 for rate in measured.values())


@pytest.fixture
def fairness(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """``benchmarks/fairness.py``, imported by bare name as the scripts import each other."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import fairness as module

    yield module
    for name in ("fairness", "_common"):
        sys.modules.pop(name, None)


async def test_fairness_prints_every_figure_for_both_sides_and_every_producer_emitted(
    fairness: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    results = await fairness.main(messages=600, producers=30, maxsize=4)
    for side in ("flow", "floor"):
        figures = results[side]
        assert figures["total"] == 600, side
        assert figures["min"] <= figures["median"] <= figures["max"], side
        assert figures["max_over_fair"] == figures["max"] / 20, side
        assert figures["min_over_fair"] == figures["min"] / 20, side
        assert figures["msgs_per_s"] > 0, side
    assert results["flow"]["never"] == 0
    assert results["flow"]["min"] >= 1

    fairness.report(results)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(
        "fairness: 30 producers emitting into one full floe of size 4, 600 messages -- python "
    )
    assert lines[1] == "  fair share: 20.0 emits per producer"
    assert lines[2].split() == ["PenguiFlow", "asyncio.Queue"]
    rows = fairness.rows(results)
    assert [label for label, _, _ in rows] == [
        "emits per producer, min",
        "emits per producer, median",
        "emits per producer, max",
        "producers that never emitted",
        "max / fair share",
        "min / fair share",
        "throughput",
    ]
    assert len(lines) == 3 + len(rows)
    for line, (label, flow, floor) in zip(lines[3:], rows, strict=True):
        assert line.split() == [*label.split(), *flow.split(), *floor.split()]
    assert rows[3][1] == "0"  # the flow's producers that never emitted


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Import a benchmark script by bare name; forget it and ``_common`` afterwards."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    imported: list[str] = []

    def load(name: str) -> Any:
        import importlib

        imported.append(name)
        return importlib.import_module(name)

    yield load
    for name in [*imported, "_common"]:
        sys.modules.pop(name, None)


async def test_roundtrip_reports_its_line_with_both_sides(script: Any) -> None:
    roundtrip = script("roundtrip")
    results = await roundtrip.main(callers=20, requests=100, rounds=1)
    assert results["flow_per_s"] > 0
    assert results["floor_per_s"] > 0
    [(line, target, figures)] = roundtrip.rows(results)
    assert line == "roundtrips, 20 callers, 100 requests"
    assert target == ">= 0.5x floor requests/s"
    assert figures.endswith("/s)")


async def test_cancel_reports_the_cancels_and_the_drain(script: Any) -> None:
    cancel = script("cancel")
    results = await cancel.main(traces=50, rounds=1)
    assert results["cancel_s"] > 0
    assert results["drain_s"] >= 0
    lines = [line for line, _, _ in cancel.rows(results)]
    assert lines == [
        "cancel 50 traces in flight",
        "their queued items dropped as the worker reaches them",
    ]


def test_store_paths_asks_for_events_none_only_where_the_store_takes_it(script: Any) -> None:
    store_paths = script("store_paths")

    class Takes:
        def __init__(self, path: str, *, events: object = "all") -> None: ...

    class Lacks:
        def __init__(self, path: str) -> None: ...

    assert store_paths.journal_only(Takes) == {"events": "none"}
    assert store_paths.journal_only(Lacks) == {}


async def test_store_paths_reports_every_part_and_leaves_no_file(
    script: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    store_paths = script("store_paths")
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    results = await store_paths.main(
        callers=10, requests=40, events=300, messages=20, trips=5, rounds=1, postgres=False
    )
    assert results["kinds"] == ["none", "sqlite"]
    assert results["modes"]["sqlite"] in ("all", "none")
    lines = [line for line, _, _ in store_paths.rows(results)]
    mode = results["modes"]["sqlite"]
    assert lines == [
        "roundtrips, 10 callers, 40 requests, no store",
        f"roundtrips, SQLiteStore (events={mode}), flush included",
        "  its writer",
        "SQLiteStore writer, 300 events, vs bare executemany in batches of 2,048",
        "  its writer",
        "pipelined flow + SQLiteStore, every event, 20 msgs",
        "  its writer",
        "one caller, 5 round trips a round, no store",
        f"one caller, 5 round trips a round, SQLiteStore (events={mode})",
        "  its writer",
    ]
    for key in ("roundtrip_sqlite_ratio", "audit_sqlite_ratio", "latency_sqlite_ratio"):
        assert results[key] > 0, key
    assert results["audit_sqlite_writer_tally"]["writes"] == 300
    assert list(tmp_path.iterdir()) == []  # every database file went with its directory


async def test_store_paths_drops_every_postgres_schema_it_made(
    script: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    store_paths = script("store_paths")
    if not await store_paths.postgres_reachable():
        pytest.skip(f"PostgreSQL is not reachable at {store_paths.PG_DSN}")
    prefix = f"pf_bench_smoke_{os.getpid()}_"
    monkeypatch.setattr(store_paths, "SCHEMA_PREFIX", prefix)
    results = await store_paths.main(
        parts=("roundtrip", "audit"), callers=10, requests=20, events=100, messages=10, rounds=1
    )
    assert results["kinds"] == ["none", "sqlite", "postgres"]
    assert results["roundtrip_postgres_ratio"] > 0
    assert results["audit_postgres_ratio"] > 0

    import asyncpg

    connection = await asyncpg.connect(store_paths.PG_DSN)
    try:
        left = await connection.fetch(
            "SELECT nspname FROM pg_namespace WHERE starts_with(nspname, $1)", prefix
        )
    finally:
        await connection.close()
    assert left == []
