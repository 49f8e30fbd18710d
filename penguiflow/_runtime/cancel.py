"""Cancelling one trace while the others carry on.

The trace's flag is set first, so that anything of it a worker takes from now on is dropped;
then its queued items are purged from every floe, the Rookery buffer and the roundtrip
queues (the rest keep their order), its running invocations are cancelled inside their
workers (see ``worker``), and the tasks registered for it are cancelled.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .constants import TRACE_CANCEL_START
from .endpoints import OPEN_SEA, ROOKERY
from .enqueue import trace_of

if TYPE_CHECKING:
    from .flow import PenguiFlow

__all__ = ["cancel_trace"]


async def cancel_trace(flow: PenguiFlow, trace_id: str) -> bool:
    """Cancel ``trace_id`` in ``flow``; return False if it has nothing pending or running."""
    traces = flow._traces
    record = traces.records.get(trace_id)
    if record is None or (record.pending <= 0 and record.inflight <= 0):
        return False
    traces.ensure_flag(trace_id).set()
    if not record.cancel_announced:
        record.cancel_announced = True
        await flow._events.emit(
            TRACE_CANCEL_START,
            flow._contexts[OPEN_SEA],
            trace_id,
            extra={"pending": record.pending},
        )
    ended = None
    for _item in _purge(flow, trace_id):
        ended = traces.finalize(trace_id) or ended
    for worker in flow._workers:
        worker.cancel_trace(trace_id)
    flow._owner.cancel_trace(trace_id)
    if ended is not None:
        await flow._trace_ended(trace_id, ended)
    return True


def _purge(flow: PenguiFlow, trace_id: str) -> list[Any]:
    """Remove and return every queued item of ``trace_id``."""

    def of_trace(item: Any) -> bool:
        return trace_of(item) == trace_id

    purged: list[Any] = []
    for floe in flow._floes:
        purged.extend(floe.queue.remove_where(of_trace))
    rookery = flow._contexts[ROOKERY]
    if rookery._buffer:
        kept = [item for item in rookery._buffer if not of_trace(item)]
        purged.extend(item for item in rookery._buffer if of_trace(item))
        rookery._buffer.clear()
        rookery._buffer.extend(kept)
    purged.extend(flow._roundtrip.cancel(trace_id))
    return purged
