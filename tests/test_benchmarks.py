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
