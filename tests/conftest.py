"""Shared fixtures: every test is checked for leaked tasks and per-trace state; examples load
by path."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from penguiflow.core import PenguiFlow

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Iterator
    from types import ModuleType


@pytest.fixture(autouse=True)
async def _leak_check(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[list[PenguiFlow]]:
    """Fail a test that leaves a flow running, per-trace state behind, or a task alive."""
    started: list[PenguiFlow] = []
    original_run = PenguiFlow.run

    def tracking_run(self: PenguiFlow, *, registry: object = None) -> None:
        original_run(self, registry=registry)  # type: ignore[arg-type]
        started.append(self)

    monkeypatch.setattr(PenguiFlow, "run", tracking_run)
    yield started
    problems: list[str] = []
    for flow in started:
        if flow._running:
            problems.append(f"a flow was left running: {flow!r}")
            await flow.stop()
        residue = {key: value for key, value in flow._residue().items() if value}
        if residue:
            problems.append(f"per-flow state left after stop(): {residue}")
    current = asyncio.current_task()
    stray = [task for task in asyncio.all_tasks() if task is not current and not task.done()]
    for task in stray:
        task.cancel()
    if stray:
        await asyncio.wait(stray)
        problems.append(f"stray tasks: {[task.get_name() for task in stray]}")
    assert not problems, "\n".join(problems)


@pytest.fixture
def load() -> Iterator[Callable[[str], ModuleType]]:
    """Import scripts of ``examples/`` by path under private names; forget them afterwards."""
    examples = Path(__file__).resolve().parent.parent / "examples"
    loaded: list[str] = []

    def _load(name: str) -> ModuleType:
        module_name = f"_penguiflow_example_{name}"
        spec = importlib.util.spec_from_file_location(module_name, examples / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        # Registered before running so pydantic can resolve the module's annotations.
        sys.modules[module_name] = module
        loaded.append(module_name)
        spec.loader.exec_module(module)
        return module

    yield _load
    for module_name in loaded:
        sys.modules.pop(module_name, None)
