"""Bad arguments and misuse get a clear error naming what was wrong, at the call that did it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from penguiflow.core import PenguiFlow, create

from .helpers import echo, fetch, make_msg, node, running


@pytest.mark.parametrize(
    ("value", "error", "words"),
    [
        (-5, ValueError, "queue_maxsize must be >= 0"),
        ("64", TypeError, "queue_maxsize must be an int (0 for unbounded floes), got str '64'"),
        (True, TypeError, "got bool True"),
        (2.5, TypeError, "got float 2.5"),
    ],
)
def test_queue_maxsize_is_checked_at_create(value: Any, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as caught:
        create(node(echo, "a").to(), queue_maxsize=value)
    assert words in str(caught.value)


def test_queue_maxsize_zero_still_means_unbounded() -> None:
    flow = create(node(echo, "a").to(), queue_maxsize=0)
    assert {floe.maxsize for floe in flow._floes} == {0}


async def test_a_flow_without_nodes_cannot_run() -> None:
    flow = create()  # building it is valid (spec 7.2); running it would drop every emit
    with pytest.raises(RuntimeError, match="has no nodes"):
        flow.run()
    assert flow._running is False


async def test_calls_before_run_raise_instead_of_hanging() -> None:
    flow = PenguiFlow(node(echo, "a").to(), queue_maxsize=1)
    with pytest.raises(RuntimeError, match="not running"):
        await flow.fetch()
    with pytest.raises(RuntimeError, match="not running"):
        await flow.emit(make_msg("x"))
    with pytest.raises(RuntimeError, match="not running"):
        flow.emit_nowait(make_msg("x"))
    assert flow._residue()["queued"] == 0  # nothing was queued before the error


async def test_trace_ids_must_be_strings() -> None:
    flow = PenguiFlow(node(echo, "a").to())
    async with running(flow):
        with pytest.raises(TypeError, match=r"emit\(trace_id=...\) takes a str, got int 123"):
            await flow.emit(make_msg("x"), trace_id=123)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match=r"fetch\(trace_id=...\) takes a str, got int 123"):
            await flow.fetch(trace_id=123)  # type: ignore[arg-type]
        await flow.emit(make_msg("y"), trace_id="123")
        assert (await fetch(flow, trace_id="123")).payload == "y"


def test_a_flow_left_running_in_a_finished_loop_says_so_in_the_next() -> None:
    """``asyncio.run`` twice on one flow: the second loop gets a clear error from ``run()``
    at once, can ``stop()`` what the first left behind, and then run the flow itself."""
    flow = PenguiFlow(node(echo, "a").to())

    async def first() -> None:
        flow.run()
        await flow.emit(make_msg("one"))
        assert (await flow.fetch()).payload == "one"  # and never stopped

    async def second() -> str:
        with pytest.raises(RuntimeError, match="another event loop"):
            flow.run()
        await flow.stop()
        flow.run()
        try:
            await flow.emit(make_msg("two"), trace_id="t2")
            answer = await asyncio.wait_for(flow.fetch(trace_id="t2"), 10)
        finally:
            await flow.stop()
        return str(answer.payload)

    asyncio.run(first())
    assert asyncio.run(second()) == "two"
    assert flow._running is False
    assert not any(flow._residue().values())
