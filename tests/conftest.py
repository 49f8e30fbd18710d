"""Shared fixtures: every test is checked for leaked tasks and per-trace state."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from penguiflow.core import PenguiFlow

if TYPE_CHECKING:
    from collections.abc import AsyncIterator


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
