"""Run ``examples/metrics_server.py`` and ``examples/tracing.py`` and check what they return.

The autouse leak check also verifies that each example stops every flow it starts (the
tracing example's subflow included) and that the metrics server leaves no task behind.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from types import ModuleType

    Loader = Callable[[str], ModuleType]

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture
def load() -> Iterator[Loader]:
    """Import examples by path under private module names, and forget them afterwards."""
    loaded: list[str] = []

    def _load(name: str) -> ModuleType:
        module_name = f"_penguiflow_observe_example_{name}"
        spec = importlib.util.spec_from_file_location(module_name, EXAMPLES / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        loaded.append(module_name)
        spec.loader.exec_module(module)
        return module

    yield _load
    for module_name in loaded:
        sys.modules.pop(module_name, None)


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
