"""Re-driving recovered traces through a running flow, a bounded number at a time.

``PenguiFlow.recover()`` hands the traces it took over to a ``Redriver``, which emits them
from one task, at most ``window`` of them in flight: the next one goes in only when one of
them has ended (its result was fetched, or it ended without one). So recovering more
traces than the flow can hold never blocks the caller of ``recover()``, and the results
that nobody fetches yet hold at most ``window`` traces, not the flow.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import TYPE_CHECKING, Any

from .constants import logger

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Iterable, Sequence

    from ..node import Node
    from ..types import Message
    from .journal import TraceJournal
    from .tasks import TaskOwner

__all__ = ["Redriver"]

RECOVERY_FAILED = "trace_recovery_failed"


class Redriver:
    """Emits recovered traces into a flow, at most ``window`` in flight.

    Args:
        emit: The flow's ``emit(message, to)``.
        nodes: The flow's nodes, to find the ones a recovered input first went to.
        journal: Where a trace that cannot be re-driven is recorded as failed.
        window: The most recovered traces in flight at once.
    """

    __slots__ = (
        "_done",
        "_emit",
        "_journal",
        "_nodes",
        "_pending",
        "_pending_ids",
        "_task",
        "_wakeup",
        "active",
        "window",
    )

    def __init__(
        self,
        emit: Callable[[Message, Any], Awaitable[None]],
        *,
        nodes: Sequence[Node],
        journal: TraceJournal | None,
        window: int,
    ) -> None:
        self._emit = emit
        self._nodes = nodes
        self._journal = journal
        self.window = window
        self._pending: deque[tuple[Message, list[str] | None]] = deque()
        # The trace ids in ``_pending``: ``known`` is asked once per claimed trace.
        self._pending_ids: set[str] = set()
        self.active: set[str] = set()
        """Recovered traces emitted and not ended yet."""
        self._task: asyncio.Task[None] | None = None
        self._wakeup: asyncio.Event | None = None
        # Set (and dropped) once nothing is waiting or in flight: ``wait_done`` waits on it.
        self._done: asyncio.Event | None = None

    def known(self, trace_id: str) -> bool:
        """Whether the trace is being re-driven (waiting or in flight)."""
        return trace_id in self.active or trace_id in self._pending_ids

    @property
    def waiting(self) -> int:
        """Recovered traces not emitted yet."""
        return len(self._pending)

    def add(self, items: Iterable[tuple[Message, list[str] | None]], owner: TaskOwner) -> None:
        """Queue recovered inputs and make sure the task that emits them runs."""
        for message, targets in items:
            self._pending.append((message, targets))
            self._pending_ids.add(message.trace_id)
        if self._task is None or self._task.done():
            self._task = owner.spawn(self._run(), name="penguiflow:recovery")
        self._wake()

    def ended(self, trace_id: str) -> None:
        """A trace has ended: if it was a recovered one, its slot frees."""
        if trace_id in self.active:
            self.active.discard(trace_id)
            self._wake()
            self._check_done()

    async def wait_done(self) -> None:
        """Wait until no recovered trace is waiting or in flight (at once if none is)."""
        while self._pending or self.active:
            if self._done is None:
                self._done = asyncio.Event()
            await self._done.wait()

    def _check_done(self) -> None:
        if self._done is not None and not self._pending and not self.active:
            self._done.set()
            self._done = None

    def reset(self) -> None:
        """Forget everything (the flow stopped; its task was cancelled with the others).

        The traces not re-driven stay this store's in the store; the next ``recover()``
        takes them again.
        """
        self._pending.clear()
        self._pending_ids.clear()
        self.active.clear()
        self._task = None
        self._check_done()

    def _wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.set()

    async def _run(self) -> None:
        while self._pending:
            if len(self.active) >= self.window:
                self._wakeup = wakeup = asyncio.Event()
                await wakeup.wait()
                continue
            message, targets = self._pending.popleft()
            self._pending_ids.discard(message.trace_id)
            self.active.add(message.trace_id)
            try:
                await self._redrive(message, targets)
            except Exception as error:
                self.active.discard(message.trace_id)
                self._failed(message, targets, error)
                self._check_done()

    async def _redrive(self, message: Message, targets: list[str] | None) -> None:
        """Emit one recovered input to the nodes it first went to (all: None).

        Raises:
            LookupError: the flow has none of a node of that name any more; the trace is
                recorded as failed.
        """
        if targets is None:
            await self._emit(message, None)
            return
        by_name = {node.name: node for node in self._nodes}
        missing = [name for name in targets if name not in by_name]
        if missing:
            if self._journal is not None:
                await self._journal.ended(message.trace_id, "failed")
            raise LookupError(
                f"recovered trace {message.trace_id!r} was sent to {missing}, "
                "which this flow has no longer; it is recorded as failed"
            )
        await self._emit(message, [by_name[name] for name in targets])

    @staticmethod
    def _failed(message: Message, targets: Any, error: Exception) -> None:
        logger.error(
            RECOVERY_FAILED,
            exc_info=error,
            extra={
                "event": RECOVERY_FAILED,
                "trace_id": message.trace_id,
                "targets": targets,
                "exception": repr(error),
            },
        )
