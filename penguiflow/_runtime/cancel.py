"""Cancelling one trace while the others carry on.

The trace's flag is set first, so that anything of it a worker takes from now on is dropped
(with ``trace_cancel_drop``); its results are purged from the Rookery's floes, its buffer and
the callers' inboxes (the rest keep their order); its running invocations are cancelled
inside their workers (see ``worker``), and the tasks registered for it are cancelled.

Design note (cost): items of the trace still queued for a node are not searched for: each
is dropped when a worker takes it, so a cancel costs what the trace has at the Rookery and
in flight, not what every floe holds. The trace ends, with ``trace_cancel_finish``, once the
last of them is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._events import TRACE_CANCEL_START
from .enqueue import trace_of

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .context import Context
    from .events import EventSink
    from .floe import Floe
    from .lifecycle import TraceLifecycle
    from .results import Results
    from .tasks import TaskOwner
    from .traces import TraceEnd, TraceRegistry
    from .worker import Worker

__all__ = ["Canceller"]


class Canceller:
    """Cancels traces of one flow.

    Args:
        floes: The Rookery's floes and its buffer (purged at once; see the design note).
        workers: The flow's workers (the list the flow keeps up to date).
    """

    __slots__ = ("floes", "lifecycle", "opensea", "owner", "results", "sink", "traces", "workers")

    def __init__(
        self,
        *,
        traces: TraceRegistry,
        sink: EventSink,
        opensea: Context,
        floes: Sequence[Floe[Any]],
        results: Results,
        workers: Sequence[Worker],
        owner: TaskOwner,
        lifecycle: TraceLifecycle,
    ) -> None:
        self.traces = traces
        self.sink = sink
        self.opensea = opensea
        self.floes = floes
        self.results = results
        self.workers = workers
        self.owner = owner
        self.lifecycle = lifecycle

    async def cancel(self, trace_id: str) -> bool:
        """Cancel ``trace_id``; return False if it has nothing pending or running."""
        traces = self.traces
        record = traces.records.get(trace_id)
        if record is None or (record.pending <= 0 and record.inflight <= 0):
            return False
        traces.ensure_flag(trace_id).set()
        if not record.cancel_announced:
            record.cancel_announced = True
            await self.sink.emit(
                TRACE_CANCEL_START, self.opensea, trace_id, extra={"pending": record.pending}
            )
        # Running invocations first: one of them may wait to push a result onto a Rookery
        # floe, and the purge below frees room there, which would let that result in.
        for worker in self.workers:
            worker.cancel_trace(trace_id)
        self.owner.cancel_trace(trace_id)
        ended: TraceEnd | None = None
        for _item in self._purge(trace_id):
            ended = traces.release(trace_id) or ended
        if ended is not None:
            await self.lifecycle.ended(trace_id, ended)
        return True

    def _purge(self, trace_id: str) -> list[Any]:
        """Remove and return every queued item of ``trace_id``."""

        def of_trace(item: Any) -> bool:
            return trace_of(item) == trace_id

        purged: list[Any] = []
        for floe in self.floes:
            purged.extend(floe.remove_where(of_trace))
        purged.extend(self.results.cancel(trace_id))
        return purged
