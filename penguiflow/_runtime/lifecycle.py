"""A trace's beginning and end as the outside hears of them: the journal and the cancel finish.

Releasing an item (see the invariant in ``traces``) may end its trace; then a cancelled trace
is announced with ``trace_cancel_finish`` and, with a journal attached, every end is recorded.
A trace's start is journaled when it enters through OpenSea.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._events import TRACE_CANCEL_FINISH
from ..types import Message

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .context import Context
    from .events import EventSink
    from .journal import TraceJournal
    from .tasks import TaskOwner
    from .traces import TraceEnd, TraceRegistry

__all__ = ["TraceLifecycle"]


class TraceLifecycle:
    """Releases items, and tells the journal and the observers when a trace ends."""

    __slots__ = ("journal", "on_cancelled", "on_ended", "owner", "rookery", "sink", "traces")

    def __init__(
        self,
        *,
        traces: TraceRegistry,
        sink: EventSink,
        rookery: Context,
        journal: TraceJournal | None,
        owner: TaskOwner,
    ) -> None:
        self.traces = traces
        self.sink = sink
        self.rookery = rookery
        self.journal = journal
        self.owner = owner
        self.on_cancelled: Callable[[str], object] | None = None
        """Told when a cancelled trace has ended: its callers stop waiting (see ``results``)."""
        self.on_ended: Callable[[str], object] | None = None
        """Told when any trace has ended (recovery frees a slot, see ``recovery``)."""

    def is_new(self, msg: object) -> bool:
        """Whether ``msg`` starts a trace the journal should record (a live Message, new)."""
        return (
            self.journal is not None
            and isinstance(msg, Message)
            and msg.trace_id not in self.traces.records
        )

    async def started(self, msg: Message, targets: Sequence[str] | None = None) -> None:
        """Journal a trace's input message and the nodes it went to; wait until durable.

        No-op without a journal.
        """
        if self.journal is not None:
            await self.journal.started(msg, targets)

    def start_soon(self, msg: Message) -> None:
        """Journal a trace's input from a task (for ``emit_nowait``, which cannot wait)."""
        if self.journal is not None:
            self.journal.start_soon(msg, self.owner)

    async def release(self, trace_id: str | None) -> None:
        """Release one item of ``trace_id`` (see ``TraceRegistry.release``); no-op for None."""
        if trace_id is not None:
            end = self.traces.release(trace_id)
            if end is not None:
                await self.ended(trace_id, end)

    async def ended(self, trace_id: str, end: TraceEnd, *, durable: bool = False) -> None:
        """A trace has nothing pending any more: announce a cancelled one, journal it.

        With ``durable`` (``fetch`` asks), wait until the journaled end is committed.
        """
        if self.on_ended is not None:
            self.on_ended(trace_id)
        if end == "cancelled":
            if self.on_cancelled is not None:
                # A message of the trace that came in after the cancel was dropped too: its
                # caller's fetch must not wait for it, nor its roundtrip lock stay held.
                self.on_cancelled(trace_id)
            await self.sink.emit(TRACE_CANCEL_FINISH, self.rookery, trace_id)
        if self.journal is not None:
            await self.journal.ended(trace_id, end, durable=durable)
