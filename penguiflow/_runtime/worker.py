"""The per-node worker loop, and how one trace is cancelled without killing the worker.

Design note: node invocations run inline in the worker task (no task per message). To cancel
the invocation of one trace, ``cancel_trace`` marks the worker and cancels its task; the
``CancelledError`` surfaces in the node, and the worker, seeing its mark, consumes that one
cancellation with ``Task.uncancel()`` and carries on with its next item. A cancellation that
is not ours (``stop()``), or that arrives together with ours, still propagates. The mark is set
only while the worker is inside the cancellable scope (node call, routing, backoff) for that
very trace, so a trace cancel can never land in event dispatch or in the fetch of the next item.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from ..types import FinalAnswer, Message
from .constants import (
    DEADLINE_EXCEEDED_TEXT,
    DEADLINE_SKIP,
    NODE_CANCELLED,
    NODE_TRACE_CANCELLED,
    TRACE_CANCEL_DROP,
    WORKER_RESTARTED,
    logger,
)
from .enqueue import trace_of
from .execution import execute
from .roundtrip import current_trace

if TYPE_CHECKING:
    from ..node import Node
    from .context import Context
    from .flow import PenguiFlow

__all__ = ["Worker"]


class Worker:
    """Runs one node: takes items FIFO from its incoming floes and processes them one by one."""

    __slots__ = (
        "ctx",
        "flow",
        "in_scope",
        "node",
        "started",
        "task",
        "trace_cancel_requested",
        "trace_id",
        "warn_non_message",
    )

    def __init__(self, flow: PenguiFlow, node: Node, ctx: Context) -> None:
        self.flow = flow
        self.node = node
        self.ctx = ctx
        self.task: asyncio.Task[None] | None = None
        self.trace_id: str | None = None
        """Trace of the item being processed."""
        self.in_scope = False
        """Whether the worker is in the trace-cancellable part of processing."""
        self.trace_cancel_requested = False
        self.started = False
        """Whether ``run`` began; a worker stopped before its first step never does."""
        self.warn_non_message = False
        """Whether the registry declares Message outputs for this node (set by ``run``)."""

    def cancel_trace(self, trace_id: str) -> bool:
        """Cancel the running invocation if it serves ``trace_id``; return whether it did."""
        task = self.task
        if (
            task is None
            or not self.in_scope
            or self.trace_id != trace_id
            or self.trace_cancel_requested
        ):
            return False
        self.trace_cancel_requested = True
        task.cancel()
        return True

    async def run(self) -> None:
        """Process items until cancelled; emits ``node_cancelled`` on the way out."""
        self.started = True
        ctx = self.ctx
        floes = ctx._all_in
        single = floes[0].queue if len(floes) == 1 else None
        try:
            while True:
                # Fast path: take a queued item without the coroutine round of fetch.
                if single is not None and single._queue and not ctx._buffer:
                    item = single.get_nowait()
                else:
                    item = await ctx._next()
                try:
                    await self._process(item)
                except Exception as exc:
                    await self._recover(item, exc)
        except asyncio.CancelledError:
            await self.flow._events.emit(NODE_CANCELLED, ctx, None)
            raise

    async def _process(self, item: Any) -> None:
        flow = self.flow
        trace_id = trace_of(item)
        self.trace_id = trace_id
        current_trace.set(trace_id)
        if (
            isinstance(item, Message)
            and item.deadline_s is not None
            and (time.time() > item.deadline_s)
        ):
            await self._skip_expired(item, trace_id)
        elif trace_id is not None and flow._traces.is_cancelled(trace_id):
            await flow._events.emit(TRACE_CANCEL_DROP, self.ctx, trace_id)
        else:
            record = flow._traces.records.get(trace_id) if trace_id is not None else None
            if record is not None:
                record.inflight += 1
            try:
                cancelled = await execute(self, item, trace_id)
            except asyncio.CancelledError:
                if not self._consume_trace_cancel():
                    raise
                cancelled = True
            finally:
                if record is not None:
                    record.inflight -= 1
            if self.trace_cancel_requested:
                # The node swallowed the CancelledError meant for its trace.
                self._consume_trace_cancel()
                cancelled = True
            if cancelled:
                await flow._events.emit(NODE_TRACE_CANCELLED, self.ctx, trace_id)
        self.trace_id = None
        if trace_id is not None and flow._traces.finalize(trace_id):
            await flow._announce_cancel_finish(trace_id)

    def _consume_trace_cancel(self) -> bool:
        if not self.trace_cancel_requested:
            return False
        self.trace_cancel_requested = False
        task = self.task
        assert task is not None
        # Anything left after removing our own request is a real cancellation (stop()).
        return task.uncancel() == 0

    async def _skip_expired(self, item: Message, trace_id: str | None) -> None:
        flow = self.flow
        await flow._events.emit(
            DEADLINE_SKIP, self.ctx, trace_id, extra={"deadline_s": item.deadline_s}
        )
        payload = item.payload
        if not isinstance(payload, FinalAnswer):
            payload = FinalAnswer(text=DEADLINE_EXCEEDED_TEXT)
        await flow._router.deliver(self.ctx, item.model_copy(update={"payload": payload}))

    async def _recover(self, item: Any, exc: Exception) -> None:
        """A fault of the runtime itself (not of the node): report it and keep serving."""
        logger.error(
            WORKER_RESTARTED,
            exc_info=exc,
            extra={"event": WORKER_RESTARTED, "node_name": self.node.name},
        )
        self.in_scope = False
        self.trace_id = None
        trace_id = trace_of(item)
        await self.flow._events.emit(
            WORKER_RESTARTED, self.ctx, trace_id, extra={"exception": repr(exc)}
        )
        if trace_id is not None and self.flow._traces.finalize(trace_id):
            await self.flow._announce_cancel_finish(trace_id)
