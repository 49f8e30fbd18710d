"""The one owner of every task a flow starts.

Workers are created synchronously by ``run()`` (so they are scheduled before anything the
caller creates next); helpers (the Rookery dispatcher, subflow watchers), tasks registered by
users per trace, and scheduled bus publishes are tracked here too. ``shutdown`` cancels and
awaits all of them, so after ``stop()`` nothing of the flow runs.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Coroutine

__all__ = ["RECANCEL_S", "TaskOwner"]

RECANCEL_S = 0.1
"""How often ``shutdown`` cancels again a task that swallowed its cancellation."""


class TaskOwner:
    """Creates, tracks and reaps a flow's tasks."""

    __slots__ = ("external", "helpers", "publishes", "workers")

    def __init__(self) -> None:
        self.workers: list[asyncio.Task[None]] = []
        self.helpers: set[asyncio.Task[Any]] = set()
        self.publishes: set[asyncio.Task[None]] = set()
        self.external: dict[str, set[asyncio.Task[Any]]] = {}

    def start_worker(self, coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Create a worker task now, on the running loop."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.workers.append(task)
        return task

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """Start a helper task that ``shutdown`` will cancel if it is still running."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self.helpers.add(task)
        task.add_done_callback(self.helpers.discard)
        return task

    def spawn_publish(self, coro: Coroutine[Any, Any, None]) -> None:
        """Start a bus publish that ``shutdown`` lets finish."""
        task = asyncio.get_running_loop().create_task(coro, name="penguiflow:publish")
        self.publishes.add(task)
        task.add_done_callback(self.publishes.discard)

    def adopt(self, trace_id: str, task: asyncio.Task[Any]) -> None:
        """Track a user task of ``trace_id`` until it is done."""
        tasks = self.external.setdefault(trace_id, set())
        tasks.add(task)

        def _forget(done: asyncio.Task[Any]) -> None:
            owned = self.external.get(trace_id)
            if owned is not None:
                owned.discard(done)
                if not owned:
                    del self.external[trace_id]

        task.add_done_callback(_forget)

    def cancel_trace(self, trace_id: str) -> None:
        """Cancel the user tasks registered for ``trace_id``."""
        for task in list(self.external.get(trace_id, ())):
            task.cancel()

    async def shutdown(self) -> None:
        """Cancel workers, helpers and user tasks, let publishes finish, and await them all.

        Tasks of a loop that is closed already (the flow ran in an earlier ``asyncio.run``)
        ended with it: they are forgotten, not awaited.
        """
        cancelled: list[asyncio.Task[Any]] = [*self.workers, *self.helpers]
        for tasks in self.external.values():
            cancelled.extend(tasks)
        cancelled = [task for task in cancelled if not task.get_loop().is_closed()]
        for task in cancelled:
            task.cancel()
        pending = cancelled + [t for t in self.publishes if not t.get_loop().is_closed()]
        while pending:
            # A node that swallows its CancelledError keeps its worker going: cancel again,
            # for as long as it takes, rather than let stop() wait for good.
            _done, still = await asyncio.wait(pending, timeout=RECANCEL_S)
            for task in still:
                if task in cancelled:
                    task.cancel()
            pending = list(still)
        for task in cancelled:
            if not task.cancelled() and task.exception() is not None:
                # A task that raised instead of being cancelled: say so rather than lose it.
                from .constants import logger

                logger.error(
                    "task_failed_at_stop",
                    exc_info=task.exception(),
                    extra={"event": "task_failed_at_stop", "task": task.get_name()},
                )
        self.workers.clear()
        self.helpers.clear()
        self.publishes.clear()
        self.external.clear()
