"""The trace journal: what a durable store needs to re-drive unfinished traces after a crash.

When a flow's ``state_store`` has the lifecycle methods of ``SupportsTraceLifecycle``
(``save_trace_start``, ``save_trace_end``, ``unfinished_traces``), the flow records each
trace's input message when the trace enters through OpenSea and its status when it ends.
``PenguiFlow.recover()`` then emits again, with the same trace id, the input of every trace
still marked running: delivery is at least once, and ``Context.idempotency_key`` lets nodes
make their side effects safe.

A flow is identified in the store by a key derived from its graph (node names and edges), so
the same program finds its own traces after a restart without any extra argument.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from ..types import Message

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..state import SupportsTraceLifecycle
    from .floe import Floe
    from .tasks import TaskOwner
    from .traces import TraceEnd

__all__ = ["TraceJournal", "flow_key", "idempotency_key"]


def flow_key(floes: Sequence[Floe[Any]]) -> str:
    """A stable key for a flow's graph: the sorted edges between named nodes, hashed."""
    edges = sorted(
        f"{getattr(floe.source, 'name', '?')}->{getattr(floe.target, 'name', '?')}"
        for floe in floes
    )
    return hashlib.sha256("\n".join(edges).encode()).hexdigest()[:16]


def idempotency_key(trace_id: str | None, node_name: str, message: Any) -> str:
    """Return a key stable across runs of ``node_name`` on this message of this trace.

    It is the same each time, including when a recovered trace is driven again.

    A ``Message`` is identified by its payload, headers and meta (not its timestamp, which a
    node that builds a new Message would change); anything else by its JSON form.
    """
    if isinstance(message, Message):
        content = to_json(
            {"payload": message.payload, "headers": message.headers, "meta": message.meta},
            fallback=repr,
        )
    else:
        content = to_json(message, fallback=repr)
    digest = hashlib.sha256()
    for part in (str(trace_id).encode(), node_name.encode(), content):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


class TraceJournal:
    """Writes traces' starts and ends through the flow's store, a trace's end after its start."""

    __slots__ = ("_starting", "key", "store")

    def __init__(self, store: SupportsTraceLifecycle, key: str) -> None:
        self.store = store
        self.key = key
        # Starts written by a task (emit_nowait cannot wait), until that task is done.
        self._starting: dict[str, asyncio.Task[None]] = {}

    async def started(self, message: Message) -> None:
        """Record a trace's input message."""
        await self.store.save_trace_start(
            message.trace_id, message.model_dump_json(), flow_key=self.key
        )

    def start_soon(self, message: Message, owner: TaskOwner) -> None:
        """Record a trace's input from a task; the trace's end will wait for it."""
        trace_id = message.trace_id
        task = owner.spawn(self.started(message), name="penguiflow:journal")
        self._starting[trace_id] = task
        task.add_done_callback(lambda done: self._forget_start(trace_id, done))

    def pending_starts(self) -> int:
        """How many starts are still being written by a task."""
        return len(self._starting)

    def _forget_start(self, trace_id: str, task: asyncio.Task[None]) -> None:
        if self._starting.get(trace_id) is task:
            del self._starting[trace_id]

    async def ended(self, trace_id: str, status: TraceEnd) -> None:
        """Record a trace's end, once its start is written."""
        starting = self._starting.get(trace_id)
        if starting is not None:
            await asyncio.wait([starting])
        await self.store.save_trace_end(trace_id, status)

    async def unfinished(self) -> list[Message]:
        """Return the input messages of this flow's traces that never ended."""
        traces = await self.store.unfinished_traces(self.key)
        return [Message.model_validate_json(trace.input_json) for trace in traces]
