"""Hearing when a trace ends, and in which task, so a command knows when to stop fetching.

A trace may deliver any number of items (none for a node that drops its message, several
for a stream), so ``run`` and ``recover`` cannot wait for "the" result: they fetch a
trace's items until it has ended. The flow's trace registry says when (``on_end``, as
``join_k`` uses it). A delivered item counts in its trace until it is fetched, so a trace
that ended in some other task has nothing left to fetch; but a trace also ends in the very
``fetch`` that hands out its last item, and with a store that commits, that fetch then
waits for the end to be committed before it returns. The callback is told in which task
the trace ended, so its caller can tell "nothing more will come" from "the last item is on
its way".

``on_end`` needs a live trace. The middleware registers a trace at its first event (every
trace has one before it can end: a worker announces each item it takes), and ``attach``
registers it right after the emit, if no event came first.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    from .._runtime.flow import PenguiFlow
    from ..metrics import FlowEvent

__all__ = ["TraceEnds"]


class TraceEnds:
    """A middleware that calls back, with the current task, when a watched trace ends.

    Args:
        flow: The flow it is a middleware of.
        every: Watch every trace it hears of with this callback (given the trace id too);
            else only the traces given to ``watch``.
    """

    def __init__(
        self,
        flow: PenguiFlow,
        *,
        every: Callable[[str, asyncio.Task[Any] | None], None] | None = None,
    ) -> None:
        self._traces = flow._traces
        self._every = every
        self._waiting: dict[str, Callable[[asyncio.Task[Any] | None], None]] = {}
        self._registered: set[str] = set()

    def watch(self, trace_id: str, callback: Callable[[asyncio.Task[Any] | None], None]) -> None:
        """Call ``callback`` when ``trace_id`` ends; call before emitting it."""
        self._waiting[trace_id] = callback

    def forget(self, trace_id: str) -> None:
        """Stop waiting to register ``trace_id`` (its emit failed)."""
        self._waiting.pop(trace_id, None)

    def attach(self, trace_id: str) -> None:
        """Register ``trace_id`` now unless an event did (call right after the emit)."""
        callback = self._waiting.pop(trace_id, None)
        if callback is not None and not self._register(trace_id, callback):
            callback(asyncio.current_task())  # not live: it ended in this very task

    async def __call__(self, event: FlowEvent) -> None:
        trace_id = event.trace_id
        if trace_id is None:
            return
        callback = self._waiting.pop(trace_id, None)
        if callback is not None:
            self._register(trace_id, callback)
        elif self._every is not None and trace_id not in self._registered:
            self._registered.add(trace_id)
            self._register(trace_id, lambda task: self._ended(trace_id, task))

    def _ended(self, trace_id: str, task: asyncio.Task[Any] | None) -> None:
        self._registered.discard(trace_id)
        assert self._every is not None
        self._every(trace_id, task)

    def _register(
        self, trace_id: str, callback: Callable[[asyncio.Task[Any] | None], None]
    ) -> bool:
        return self._traces.on_end(trace_id, lambda: callback(_current_task()))


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # pragma: no cover - the registry calls back from the flow's loop
        return None
