"""The differential harness: the core tests run over both paths and several observer counts.

Every item a worker takes runs either inline in its loop or down the general path
(``penguiflow._runtime.worker``). The fixture below, used by the core and production suites,
runs each of their tests six times: inline allowed, or every item forced down the general
path, each with 0, 1 or 2 extra no-op middlewares attached to every flow the test runs (on
top of the test's own observers). So a behaviour that holds on one path and not on the other,
or only with some number of observers, fails a test.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

import pytest

from penguiflow._runtime.worker import Worker
from penguiflow.core import PenguiFlow

if TYPE_CHECKING:
    from penguiflow.metrics import FlowEvent

PATHS = ("inline", "general")
EXTRA_OBSERVERS = (0, 1, 2)
MODES = [(path, extra) for path in PATHS for extra in EXTRA_OBSERVERS]


async def _unseen(event: FlowEvent) -> None:
    """A middleware that observes and does nothing."""


@pytest.fixture(autouse=True, params=MODES, ids=[f"{path}-{extra}obs" for path, extra in MODES])
def engine_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Force the path and attach the extra observers for the test that uses it."""
    path, extra = request.param
    monkeypatch.setattr(Worker, "inline_allowed", path == "inline")
    if extra:
        original_run = PenguiFlow.run
        observed: weakref.WeakSet[PenguiFlow] = weakref.WeakSet()

        def run_observed(self: PenguiFlow, *, registry: Any = None) -> None:
            if self not in observed:
                observed.add(self)
                self._middlewares.extend([_unseen] * extra)
            original_run(self, registry=registry)

        monkeypatch.setattr(PenguiFlow, "run", run_observed)
    return f"{path}-{extra}"


def own(middlewares: list[Any]) -> list[Any]:
    """A flow's middlewares without the ones this harness attached."""
    return [each for each in middlewares if each is not _unseen]
