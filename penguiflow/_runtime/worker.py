"""The per-node worker loop, and how one trace is cancelled without killing the worker.

Design note (cancellation): node invocations run inline in the worker task (no task per
message). To cancel the invocation of one trace, ``cancel_trace`` marks the worker and cancels
its task; the ``CancelledError`` surfaces in the node, and the worker, seeing its mark,
consumes that one cancellation with ``Task.uncancel()`` and carries on with its next item. A
cancellation that is not ours (``stop()``), or that arrives together with ours, still
propagates. The mark is set only while the worker is inside the cancellable scope (node call,
routing, backoff) for that very trace, so a trace cancel can never land in event dispatch or
in the fetch of the next item.

Design note (speed): most items are *ordinary*: the message has no deadline, its trace is not
cancelled, the node has no timeout, no validation and no breaker. They run inline in the
worker loop, with no coroutine per item besides the node's own: ``_serve_quiet`` while nothing
observes events (a plain result is routed with one synchronous put that takes over the input's
pending count), ``_serve_watched`` while something does (the node's two events are built and
delivered inline, a lone middleware awaited directly). Everything else, and an ordinary item
whose node raised, goes through ``_process``, the general path, where ``execution.execute``
owns attempts, timeouts, retries and the error boundary.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, Final

from ..metrics import _new_event
from ..types import FinalAnswer, Message
from .constants import (
    DEADLINE_EXCEEDED_TEXT,
    DEADLINE_SKIP,
    NODE_CANCELLED,
    NODE_START,
    NODE_SUCCESS,
    NODE_TRACE_CANCELLED,
    TRACE_CANCEL_DROP,
    WORKER_RESTARTED,
    logger,
)
from .enqueue import trace_of
from .events import NO_EXTRA, OBSERVED, ONE_MIDDLEWARE, QUIET, middleware_failed
from .execution import (
    CANCELLED,
    HANDED_OFF,
    ROUTED,
    Failed,
    execute,
    execute_with_breaker,
    route_nowait,
)
from .routing import CONTROL_CACHE
from .traces import TraceRecord

if TYPE_CHECKING:
    from ..node import Node
    from .context import Context
    from .floe import FloeQueue
    from .flow import PenguiFlow
    from .nodes import NodeStatus

__all__ = ["Worker"]

_SLOW: Final = TraceRecord()
"""``_admit``'s answer for an item that needs the general path (never a live record)."""
_UNTRACED: Final = TraceRecord()
"""Stands in for the record of an item without a trace on the ordinary path, so that the
loop needs no special case: its counts balance out and nobody reads them."""


class Worker:
    """Runs one node: takes items FIFO from its incoming floes and processes them one by one."""

    __slots__ = (
        "ctx",
        "flow",
        "in_scope",
        "item",
        "name",
        "node",
        "started",
        "status",
        "task",
        "trace_cancel_requested",
        "trace_id",
        "warn_non_message",
    )

    def __init__(
        self, flow: PenguiFlow, node: Node, ctx: Context, status: NodeStatus, index: int = 0
    ) -> None:
        self.flow = flow
        self.node = node
        self.ctx = ctx
        self.status = status
        """The node's shared state: breaker, last error, restarts."""
        self.name = f"penguiflow:{node.name}" + (f"#{index}" if index else "")
        """The task name: ``penguiflow:<node>``, plus ``#<n>`` for extra concurrent workers."""
        self.task: asyncio.Task[None] | None = None
        self.item: Any = None
        """The item being processed (user data), kept for fault recovery."""
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
        """Process items until cancelled; emits ``node_cancelled`` on the way out.

        A fault of the runtime itself while handling an item is reported and the loop resumes.
        """
        self.started = True
        try:
            while True:
                try:
                    await self._serve()
                except Exception as exc:
                    await self._recover(exc)
        except asyncio.CancelledError:
            await self.flow._events.emit(NODE_CANCELLED, self.ctx, None)
            raise

    async def _serve(self) -> None:
        sink = self.flow._events
        while True:
            if sink.observers() == QUIET:
                await self._serve_quiet()
            else:
                await self._serve_watched()

    async def _serve_quiet(self) -> None:
        """Serve items while nothing observes events; return once something does.

        Ordinary items run inline: one attempt, no event, a plain result routed with one
        synchronous put that hands the input's pending count over to it.
        """
        flow, ctx, node = self.flow, self.ctx, self.node
        enqueuer, router, sink = flow._enqueuer, flow._router, flow._events
        single = self._single_in()
        out = ctx._all_out[0].queue if len(ctx._all_out) == 1 else None
        observed = QUIET
        while not observed:
            # An item already queued is taken without a fetch coroutine.
            ready = single is not None and single._queue and not ctx._buffer
            item = single.get_nowait() if ready else await ctx._next()  # type: ignore[union-attr]
            self.item = item
            record = self._admit(item)
            observed = sink.observers()
            if record is _SLOW or observed:
                await self._process(item)
                continue
            trace_id = self.trace_id
            outcome: object = None
            routed = 0
            record.inflight += 1
            started = time.perf_counter()
            self.in_scope = True
            try:
                result = await node.func(item, ctx)
                if (
                    type(result) is Message
                    and out is not None
                    and result.trace_id == trace_id
                    and CONTROL_CACHE.get(type(result.payload)) is False
                    and not 0 < out._maxsize <= len(out._queue)
                    and enqueuer.bus is None
                    and not self.trace_cancel_requested
                ):
                    # The common hop, route_nowait's handoff inlined: a plain Message of the
                    # same trace onto the node's one outgoing floe, which has room.
                    out.push(result)
                    routed = HANDED_OFF
                else:
                    routed = (
                        ROUTED if result is None else route_nowait(self, enqueuer, result, record)
                    )
                if not routed:
                    await router.route(node, ctx, item, result)
            except asyncio.CancelledError as error:
                outcome = self._cancelled(error)
            except Exception as exc:
                outcome = Failed(exc, started)
            finally:
                self.in_scope = False
                record.inflight -= 1
            if outcome is not None or self.trace_cancel_requested:
                await self._settle(item, trace_id, outcome)
            self.trace_id = self.item = None
            # After a handoff the output carries the input's pending count: nothing to finalize.
            if routed != HANDED_OFF and trace_id is not None and self._release(record):
                await self._finish(trace_id)

    async def _serve_watched(self) -> None:
        """Serve items while events are observed; return once nothing observes them.

        Ordinary items of a trace run inline with their ``node_start`` and ``node_success``.
        With one middleware and nothing else observing, each event goes straight to it;
        otherwise ``EventSink.deliver`` logs, stores and dispatches it.

        Design note: a node's output is counted before its input is released, after
        ``node_success``, so that the event sees both (spec 7.9) and the trace cannot end
        while its observers run.
        """
        flow, ctx, node = self.flow, self.ctx, self.node
        enqueuer, router, sink = flow._enqueuer, flow._router, flow._events
        middlewares, flags, flag_of = sink.middlewares, flow._traces.flags, flow._traces.flag_of
        # What every event of this node shares, and its queues' depths (one floe each way is
        # the common case: its length is the depth).
        name, node_id, edges, maxsize = node.name, node.node_id, len(ctx._outgoing), sink.maxsize
        ins, outs = ctx._in_deques, ctx._out_deques
        in0 = ins[0] if len(ins) == 1 else None
        out0 = outs[0] if len(outs) == 1 else None
        single = self._single_in()
        observed = OBSERVED
        while observed:
            ready = single is not None and single._queue and not ctx._buffer
            item = single.get_nowait() if ready else await ctx._next()  # type: ignore[union-attr]
            self.item = item
            record = self._admit(item)
            trace_id = self.trace_id
            observed = sink.observers()
            if record is _SLOW or trace_id is None or not observed:
                await self._process(item)  # untraced items too: their events have no counts
                continue
            outcome: object = None
            record.inflight += 1
            try:
                event = _new_event(
                    NODE_START,
                    time.time(),
                    name,
                    node_id,
                    trace_id,
                    0,
                    0.0,
                    len(in0) if in0 is not None else sum(map(len, ins)),
                    len(out0) if out0 is not None else sum(map(len, outs)),
                    edges,
                    maxsize,
                    record.pending,
                    record.inflight,
                    False,  # admitted above, so not cancelled
                    NO_EXTRA,
                )
                target = middlewares[0] if observed == ONE_MIDDLEWARE else sink.deliver
                try:
                    await target(event)
                except Exception as error:  # only a lone middleware's: deliver keeps its own
                    middleware_failed(target, event, error)
                # Cancelled while observers ran? Then the node is not called.
                flag = flag_of(trace_id) if flags.holds_events else None
                outcome = _CANCELLED if flag is not None and flag.is_set() else None
                started = time.perf_counter()
                if outcome is None:
                    self.in_scope = True
                    try:
                        result = await node.func(item, ctx)
                        if not (
                            result is None or route_nowait(self, enqueuer, result, record, True)
                        ):
                            await router.route(node, ctx, item, result)
                    except asyncio.CancelledError as error:
                        outcome = self._cancelled(error)
                    except Exception as exc:
                        outcome = Failed(exc, started)
                    finally:
                        self.in_scope = False
                if outcome is None and not self.trace_cancel_requested:
                    latency = (time.perf_counter() - started) * 1000.0
                    flag = flag_of(trace_id) if flags.holds_events else None
                    event = _new_event(
                        NODE_SUCCESS,
                        time.time(),
                        name,
                        node_id,
                        trace_id,
                        0,
                        latency,
                        len(in0) if in0 is not None else sum(map(len, ins)),
                        len(out0) if out0 is not None else sum(map(len, outs)),
                        edges,
                        maxsize,
                        record.pending,
                        record.inflight,
                        flag is not None and flag.is_set(),
                        NO_EXTRA,
                    )
                    one = sink.observers() == ONE_MIDDLEWARE
                    target = middlewares[0] if one else sink.deliver
                    try:
                        await target(event)
                    except Exception as error:
                        middleware_failed(target, event, error)
            finally:
                record.inflight -= 1
            if outcome is not None or self.trace_cancel_requested:
                await self._settle(item, trace_id, outcome)
            self.trace_id = self.item = None
            if self._release(record):
                await self._finish(trace_id)

    def _single_in(self) -> FloeQueue | None:
        """The queue of the node's only incoming floe, or None if it has several."""
        floes = self.ctx._all_in
        return floes[0].queue if len(floes) == 1 else None

    @staticmethod
    def _release(record: TraceRecord) -> bool:
        """Release one pending item of ``record`` inline when that cannot end its trace.

        Returns:
            False if done; True if the caller must call ``_finish`` instead (the item may be
            the trace's last, or capacity waiters may need waking).
        """
        pending = record.pending - 1
        if pending > 0 and not record.waiters:
            record.pending = pending
            return False
        return True

    def _cancelled(self, error: asyncio.CancelledError) -> object:
        """Consume the cancellation of the current item's trace, or re-raise a real one."""
        if not self._consume_trace_cancel():
            raise error
        return _CANCELLED

    def _admit(self, item: Any) -> TraceRecord:
        """Start on ``item`` and tell which path it takes.

        Returns:
            ``_SLOW`` for the general path; else, for the ordinary path, the item's trace
            record (``_UNTRACED`` when the item has no trace).
        """
        message = isinstance(item, Message)
        trace_id = item.trace_id if message else getattr(item, "trace_id", None)
        if not isinstance(trace_id, str):
            trace_id = None  # only string trace ids are counted (see enqueue.trace_of)
        self.trace_id = trace_id
        flow = self.flow
        policy = self.node.policy
        if (
            policy.timeout_s is not None
            or policy.breaker is not None
            or (flow._registry is not None and policy.validate != "none")
            or (message and item.deadline_s is not None)
        ):
            return _SLOW
        if trace_id is None:
            return _UNTRACED
        traces = flow._traces
        if traces.flags.holds_events:  # else no trace has a flag that could be set
            flag = traces.flag_of(trace_id)  # raw: an unread flag is None
            if flag is not None and flag.is_set():
                return _SLOW
        return traces.records.get(trace_id) or _SLOW

    async def _done(self, trace_id: str | None) -> None:
        """Count the current item as finished."""
        self.trace_id = self.item = None
        await self._finish(trace_id)

    async def _finish(self, trace_id: str | None) -> None:
        """Finalize one item of ``trace_id`` and report the trace's end if it ended."""
        if trace_id is not None:
            ended = self.flow._traces.finalize(trace_id)
            if ended is not None:
                await self.flow._trace_ended(trace_id, ended)

    async def _settle(self, item: Any, trace_id: str | None, outcome: Any) -> None:
        """Finish an ordinary item whose attempt did not simply succeed."""
        if isinstance(outcome, Failed):
            # Hand the failure to the general path: events, retries, the error boundary.
            await self._execute(item, trace_id, failed=outcome)
            return
        if self.trace_cancel_requested:
            self._consume_trace_cancel()  # the node swallowed its trace's cancellation
        await self.flow._events.emit(NODE_TRACE_CANCELLED, self.ctx, trace_id)

    async def _process(self, item: Any) -> None:
        """The general path for one item (``_admit`` already set the trace)."""
        flow = self.flow
        trace_id = self.trace_id
        if (
            isinstance(item, Message)
            and item.deadline_s is not None
            and (time.time() > item.deadline_s)
        ):
            await self._skip_expired(item, trace_id)
        elif trace_id is not None and flow._traces.is_cancelled(trace_id):
            await flow._events.emit(TRACE_CANCEL_DROP, self.ctx, trace_id)
        else:
            await self._execute(item, trace_id)
        await self._done(trace_id)

    async def _execute(
        self,
        item: Any,
        trace_id: str | None,
        *,
        failed: Failed | None = None,
    ) -> None:
        """Run ``execute`` within the trace-cancel scope, counting the invocation in flight."""
        record = self.flow._traces.records.get(trace_id) if trace_id is not None else None
        if record is not None:
            record.inflight += 1
        try:
            if self.status.breaker is not None and failed is None:
                outcome = await execute_with_breaker(self, item, trace_id)
            else:
                outcome = await execute(self, item, trace_id, failed=failed)
            cancelled = outcome == CANCELLED
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
            await self.flow._events.emit(NODE_TRACE_CANCELLED, self.ctx, trace_id)

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

    async def _recover(self, exc: Exception) -> None:
        """A fault of the runtime itself (not of the node): report it and keep serving."""
        self.status.restarts += 1
        logger.error(
            WORKER_RESTARTED,
            exc_info=exc,
            extra={"event": WORKER_RESTARTED, "node_name": self.node.name},
        )
        item, self.item = self.item, None
        self.in_scope = False
        self.trace_id = None
        trace_id = trace_of(item)
        await self.flow._events.emit(
            WORKER_RESTARTED, self.ctx, trace_id, extra={"exception": repr(exc)}
        )
        await self._finish(trace_id)


_CANCELLED: Final = object()
"""Outcome of an ordinary attempt stopped by its trace's cancellation."""
