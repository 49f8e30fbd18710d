"""The trace journal: what a durable store needs to re-drive unfinished traces after a crash.

When a flow's ``state_store`` has the lifecycle methods of ``SupportsTraceLifecycle``
(``save_trace_start``, ``save_trace_end``, ``unfinished_traces``), the flow records each
trace's input message when the trace enters through OpenSea and its status when it ends.
``PenguiFlow.recover()`` then takes over the traces still marked running that no other live
process holds (see the stores' leases) and emits again, with the same trace id and to the
same nodes, the input of each: delivery is at least once, and ``Context.idempotency_key``
lets nodes make their side effects safe. Chunks a caller streamed in with ``emit_chunk``
are not journaled: a recovered trace starts again from its input message alone.

A flow is identified in the store by a key derived from its graph (node names and edges), so
the same program finds its own traces after a restart without any extra argument.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import TYPE_CHECKING, Any

from pydantic_core import to_json

from ..types import Message

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

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
    """Writes traces' starts and ends through the flow's store, a trace's end after its start.

    Durability: a store whose ``durability`` is ``"commit"`` (penguiflow's stores, by
    default) offers ``sync()``, its group commit: ``started`` waits on it, so ``emit()``
    returns once the trace's start is committed, and ``ended(..., durable=True)`` waits on
    ``flush()``, so ``fetch()`` hands out a result once its trace's end is committed. A store
    without them (or in ``"queued"`` durability) is as durable as its ``save_*`` calls.
    """

    __slots__ = ("_flush", "_starting", "_sync", "key", "store")

    def __init__(self, store: SupportsTraceLifecycle, key: str) -> None:
        self.store = store
        self.key = key
        # Starts written by a task (emit_nowait cannot wait), until that task is done.
        self._starting: dict[str, asyncio.Task[None]] = {}
        durable = getattr(store, "durability", None) == "commit"
        self._sync: Callable[[], Awaitable[None]] | None = (
            getattr(store, "sync", None) if durable else None
        )
        self._flush: Callable[[], Awaitable[None]] | None = (
            getattr(store, "flush", None) if durable else None
        )

    async def started(self, message: Message, targets: Sequence[str] | None = None) -> None:
        """Record a trace's input message (and the nodes it went to); wait until durable.

        Raises:
            Exception: what the store raises; ``StoreFailingError`` when its commits keep
                failing (the start stays queued, but is not known to be durable).
        """
        await self._save_start(message, targets)
        if self._sync is not None:
            await self._sync()

    async def _save_start(self, message: Message, targets: Sequence[str] | None) -> None:
        text = message.model_dump_json()
        if targets is None:
            await self.store.save_trace_start(message.trace_id, text, flow_key=self.key)
        else:  # only penguiflow's stores take it (beyond the protocol)
            save: Any = self.store.save_trace_start
            await save(message.trace_id, text, flow_key=self.key, targets=targets)

    def start_soon(self, message: Message, owner: TaskOwner) -> None:
        """Record a trace's input from a task; the trace's end will wait for it.

        Nothing waits for the commit: ``emit_nowait`` cannot.
        """
        trace_id = message.trace_id
        task = owner.spawn(self._save_start(message, None), name="penguiflow:journal")
        self._starting[trace_id] = task
        task.add_done_callback(lambda done: self._forget_start(trace_id, done))

    def pending_starts(self) -> int:
        """How many starts are still being written by a task."""
        return len(self._starting)

    def _forget_start(self, trace_id: str, task: asyncio.Task[None]) -> None:
        if self._starting.get(trace_id) is task:
            del self._starting[trace_id]

    async def ended(self, trace_id: str, status: TraceEnd, *, durable: bool = False) -> None:
        """Record a trace's end, once its start is written; ``durable``: until committed.

        ``fetch`` asks for ``durable`` before handing out a result. The wait lasts as
        long as the store's commits fail; closing the store ends it (``StoreClosedError``).
        """
        starting = self._starting.get(trace_id)
        if starting is not None:
            await asyncio.wait([starting])
        await self.store.save_trace_end(trace_id, status)
        if durable and self._flush is not None:
            await self._flush()

    async def unfinished(self) -> list[tuple[Message, list[str] | None]]:
        """Take over this flow's unfinished traces; return each one's input and targets.

        With a store that keeps leases (``claim_traces``), only the traces no other live
        process holds are taken (they become this store's); else every unfinished one.
        """
        claim = getattr(self.store, "claim_traces", None)
        traces: Sequence[Any] = (
            await claim(self.key)
            if claim is not None
            else await self.store.unfinished_traces(self.key)
        )
        return [
            (Message.model_validate_json(trace.input_json), _targets(trace)) for trace in traces
        ]


def _targets(trace: object) -> list[str] | None:
    """The node names a stored trace's input went to, or None (every ingress node)."""
    text = getattr(trace, "targets", None)
    if text is None:
        return None
    names = json.loads(text)
    return [str(name) for name in names]
