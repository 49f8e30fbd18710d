"""One unit of a node's concurrency in a worker process: the in-process call machinery, reused.

Design note (reuse): a node served from Redis is called through the very code that calls it in
process, ``attempt.execute`` (NodePolicy timeouts, retries with backoff, validation against
the registry, the breaker, the ``FlowError`` boundary, every event to the middlewares and the
store). A ``Slot`` is the ``attempt.Runner`` it needs. What differs is where outputs go: the
slot's context and router record them in an ``Outbox`` instead of pushing them onto floes,
and the consumer publishes the outbox and acknowledges the input in one atomic commit. So
``ctx.emit(x, to=node)``, routers, controller hops (``WM``), ``FinalAnswer``s and ``FlowError``s
all take the in-process routing, resolved against the same successor nodes.

Streamed chunks bound for the caller cannot wait for the commit: ``Outbox`` sends them at
once, numbered, and the caller drops a chunk whose number it has seen (a re-run re-streams).
"""

from __future__ import annotations

import asyncio
import time
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from .._events import DEADLINE_SKIP, NODE_TRACE_CANCELLED, TRACE_CANCEL_DROP
from .._runtime.attempt import Outcome, execute
from .._runtime.constants import DEADLINE_EXCEEDED_TEXT
from .._runtime.context import Context
from .._runtime.endpoints import ROOKERY, Endpoint, Target
from .._runtime.enqueue import Enqueuer
from .._runtime.floe import Floe
from .._runtime.routing import Router
from .._runtime.tasks import TaskOwner
from ..node import Node, unawaited
from ..types import FinalAnswer, Message, StreamChunk
from ._envelope import encode
from ._keys import name_of

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from .._runtime.events import EventSink
    from .._runtime.nodes import NodeStatus
    from ..node import NodePolicy
    from ..registry import ModelRegistry
    from ._envelope import TypeTable

__all__ = ["Outbox", "Output", "Slot"]

Output = tuple[str, int, str]
"""One output: its stream, that stream's bound (0: none), the envelope's JSON."""


class Outbox:
    """The outputs of the item a slot is working on, until the commit publishes them."""

    __slots__ = ("chunk", "outputs", "reply_to", "trace_id")

    def __init__(self, chunk: Callable[[str, str], Awaitable[None]]) -> None:
        self.chunk = chunk
        """Sends one streamed chunk to a result stream at once: ``(stream, json)``."""
        self.outputs: list[Output] = []
        self.reply_to = ""
        """The caller's result stream (from the input's envelope)."""
        self.trace_id: str | None = None
        """The input's trace: a trace-less output to the caller is tagged with it."""

    def reset(self, reply_to: str, trace_id: str | None) -> None:
        """Start on a new input."""
        self.outputs = []
        self.reply_to = reply_to
        self.trace_id = trace_id


class _OutboxContext(Context):
    """A node's context whose emits land in the slot's outbox (see the module's note)."""

    __slots__ = ("limit", "maxsizes", "outbox", "streams", "types")

    def __init__(
        self,
        node: Node,
        outbox: Outbox,
        streams: dict[Node | Endpoint, str | None],
        maxsizes: tuple[int, int],
        types: TypeTable,
        enqueuer: Enqueuer,
        limit: int,
    ) -> None:
        super().__init__(node)
        # Bound like a flow's context, so that emit_chunk works; emits never reach the floes.
        self._bind(enqueuer, enqueuer.traces)
        for target in streams:
            self.add_outgoing_floe(Floe(node, target, maxsize=0))
        self.outbox = outbox
        self.streams = streams
        self.maxsizes = maxsizes
        """The bound of an edge stream, then of a result stream."""
        self.types = types
        self.limit = limit
        """The largest envelope in bytes (``RedisBackend.max_envelope_bytes``)."""

    async def emit(self, msg: Any, to: Target = None) -> None:
        """Record ``msg`` for each selected target; a chunk for the caller goes out now.

        Raises:
            KeyError: ``to`` names a node this node has no edge to.
            EnvelopeError: ``msg`` cannot travel as JSON, or its type is not declared.
            EnvelopeTooLarge: its envelope is over ``max_envelope_bytes``.
        """
        for stream, maxsize, body in self._outputs(msg, to):
            if stream == self.outbox.reply_to and _is_chunk(msg):
                await self.outbox.chunk(stream, body)
            else:
                self.outbox.outputs.append((stream, maxsize, body))

    def emit_nowait(self, msg: Any, to: Target = None) -> None:
        """Record ``msg`` for each selected target (an outbox is never full)."""
        self.outbox.outputs.extend(self._outputs(msg, to))

    def _outputs(self, msg: Any, to: Target) -> list[Output]:
        floes = self._all_out if to is None else self._resolve(to, self._outgoing)
        return [self.output(floe.target, msg) for floe in floes]

    def output(self, target: Node | Endpoint | None, item: Any) -> Output:
        """Encode ``item`` for ``target`` (the caller's result stream for the Rookery).

        Raises:
            EnvelopeError: ``item`` cannot travel as JSON, or its type is not declared.
            EnvelopeTooLarge: its envelope is over ``max_envelope_bytes``.
        """
        outbox = self.outbox
        stream = self.streams.get(target) if target is not None else None
        trace_id = getattr(item, "trace_id", None)
        trace_id = trace_id if isinstance(trace_id, str) else outbox.trace_id
        to = name_of(target) if isinstance(target, Node) and stream is not None else "the caller"
        body = encode(
            item,
            reply_to=outbox.reply_to,
            trace_id=trace_id,
            types=self.types,
            where=f"node {self._owner.name} output to {to} (trace {trace_id})",
            limit=self.limit,
        )
        if stream is None:
            return outbox.reply_to, self.maxsizes[1], body
        return stream, self.maxsizes[0], body


def _is_chunk(msg: Any) -> bool:
    return isinstance(msg, Message) and isinstance(msg.payload, StreamChunk)


class _OutboxRouter(Router):
    """Routes as in process; what goes to the Rookery goes to the outbox instead."""

    __slots__ = ()

    async def deliver(self, ctx: Context, item: Any) -> None:
        """Record ``item`` for the caller's result stream."""
        assert isinstance(ctx, _OutboxContext)
        if _is_chunk(item):
            stream, _maxsize, body = ctx.output(ROOKERY, item)
            await ctx.outbox.chunk(stream, body)
            return
        ctx.outbox.outputs.append(ctx.output(None, item))


class Slot:
    """Runs one item at a time through a node; the ``attempt.Runner`` of that node call."""

    __slots__ = (
        "ctx",
        "errors_to_rookery",
        "in_scope",
        "node",
        "outbox",
        "policy",
        "registry",
        "router",
        "sink",
        "status",
        "task",
        "trace_cancel_requested",
        "trace_id",
        "traces",
    )

    def __init__(
        self,
        node: Node,
        *,
        streams: dict[Node | Endpoint, str | None],
        maxsizes: tuple[int, int],
        types: TypeTable,
        limit: int,
        registry: ModelRegistry | None,
        status: NodeStatus,
        sink: EventSink,
        chunk: Callable[[str, str], Awaitable[None]],
    ) -> None:
        self.node = node
        self.policy: NodePolicy = node.policy
        self.registry = registry
        self.status = status
        self.sink = sink
        self.traces = sink.traces
        self.outbox = Outbox(chunk)
        # The sink's registry is unbounded and empty: in a worker process no trace is counted
        # (Redis holds the pending work), so per-trace capacity never waits; it keeps the
        # cancel flags only.
        enqueuer = Enqueuer(traces=self.traces, owner=TaskOwner(), bus=None)
        ctx = _OutboxContext(node, self.outbox, streams, maxsizes, types, enqueuer, limit)
        self.ctx: Context = ctx
        sink.keep(node, ctx)
        self.router: Router = _OutboxRouter(
            fallback=Floe(node, ROOKERY, maxsize=0), enqueuer=enqueuer, traces=self.traces
        )
        # Errors always travel to the caller: in a worker nobody else would see them.
        self.errors_to_rookery = True
        self.task: asyncio.Task[None] | None = None
        self.in_scope = False
        self.trace_cancel_requested = False
        self.trace_id: str | None = None

    async def route(self, item: Any, result: Any) -> None:
        """Route the node's result for ``item`` into the outbox, unless its trace was cancelled.

        Raises:
            TypeError: the node returned a coroutine it never awaited.
        """
        if type(result) is CoroutineType:
            raise unawaited(self.node, result)
        if not self.trace_cancel_requested:
            await self.router.route(self.node, self.ctx, item, result)

    async def run(self, item: Any, trace_id: str | None, reply_to: str) -> Outcome:
        """Process ``item`` as an in-process worker would; its outputs end in ``outbox``.

        A deadline that has passed answers the caller with a ``FinalAnswer``; a cancelled
        trace is dropped; otherwise the node is called under its policy.

        Raises:
            asyncio.CancelledError: the task was cancelled, not (only) the trace.
        """
        self.outbox.reset(reply_to, trace_id)
        self.trace_id = trace_id
        self.task = asyncio.current_task()
        try:
            return await self._run(item, trace_id)
        finally:
            self.trace_id = self.task = None
            self.in_scope = self.trace_cancel_requested = False

    async def _run(self, item: Any, trace_id: str | None) -> Outcome:
        ctx, sink = self.ctx, self.sink
        deadline = item.deadline_s if isinstance(item, Message) else None
        if deadline is not None and time.time() > deadline:
            await sink.emit(DEADLINE_SKIP, ctx, trace_id, extra={"deadline_s": deadline})
            payload = item.payload
            if not isinstance(payload, FinalAnswer):
                payload = FinalAnswer(text=DEADLINE_EXCEEDED_TEXT)
            await self.router.deliver(ctx, item.model_copy(update={"payload": payload}))
            return Outcome.SUCCEEDED
        if trace_id is not None and self.traces.is_cancelled(trace_id):
            await sink.emit(TRACE_CANCEL_DROP, ctx, trace_id)
            return Outcome.CANCELLED
        try:
            outcome = await execute(self, item, trace_id)
        except asyncio.CancelledError:
            if not self._consume_trace_cancel():
                raise
            outcome = Outcome.CANCELLED
        if self.trace_cancel_requested:  # the node swallowed its trace's cancellation
            self._consume_trace_cancel()
            outcome = Outcome.CANCELLED
        if outcome is Outcome.CANCELLED:
            self.outbox.outputs = []
            await sink.emit(NODE_TRACE_CANCELLED, ctx, trace_id)
        return outcome

    def cancel_trace(self, trace_id: str) -> bool:
        """Cancel the node call if it serves ``trace_id`` (see ``Worker.cancel_trace``)."""
        task = self.task
        if task is None or not self.in_scope or self.trace_id != trace_id:
            return False
        if self.trace_cancel_requested:
            return True
        self.trace_cancel_requested = True
        task.cancel()
        return True

    def _consume_trace_cancel(self) -> bool:
        """Take back our own trace cancellation; False if none was asked or more came."""
        if not self.trace_cancel_requested:
            return False
        self.trace_cancel_requested = False
        task = self.task
        assert task is not None
        return task.uncancel() == 0
