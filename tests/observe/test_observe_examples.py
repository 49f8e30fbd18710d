"""Run ``examples/metrics_server.py`` and ``examples/tracing.py`` and check what they return.

The autouse leak check also verifies that each example stops every flow it starts (the
tracing example's subflow included) and that the metrics server leaves no task behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    Loader = Callable[[str], ModuleType]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


async def test_metrics_server_example(load: Loader) -> None:
    result = await load("metrics_server").main()
    assert result == {
        "successes": 3.0,
        "errors": 1.0,
        "retries": 1.0,
        "latency_count": 4.0,
        "ingress_depth": 0.0,
        "health_status": 200,
        "health": "ok",
    }


async def test_tracing_example(load: Loader) -> None:
    tree = await load("tracing").main()
    assert tree == [
        ("penguiflow.node plan", None, 0, "success"),
        ("penguiflow.node research", None, 0, "success"),
        ("penguiflow.node search", "penguiflow.node research", 0, "timeout"),
        ("penguiflow.node search", "penguiflow.node research", 1, "success"),
    ]
