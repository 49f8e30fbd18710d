"""The per-node worker: one loop that takes an item, admits it, calls the node and routes.

Design note (two paths): whether a node can run *inline* is decided once per run from its
policy: no timeout, no breaker, no validation. Then the worker's loop itself calls the node,
pushes the commonest result (a Message of the item's own trace onto the node's only outgoing
floe) with an inlined ``Enqueuer.try_put``, and delivers the node's two events when something
observes them, all without a coroutine per item besides the node's own. Everything else takes
the *general path* (``attempt.execute``): nodes with a timeout, validation or a breaker,
messages with a deadline, items without a trace or of a cancelled trace, and an inline
attempt that failed (its retries and error boundary). Both paths keep the same events,
accounting and cancellation; the test suite runs with every item forced down the general
path too (``Worker.inline_allowed``), so the two cannot drift.

Design note (policy): a worker takes a copy of its node's policy when the flow starts, and
keeps it until the flow stops: a policy changed (or replaced) while the flow runs takes effect
at the next ``run()``, for every field alike (``concurrency`` and ``breaker`` included).

Design note (cancellation): node invocations run in the worker task (no task per message).
To cancel the invocation of one trace, ``cancel_trace`` marks the worker and cancels its task;
the ``CancelledError`` surfaces in the node, and the worker, seeing its mark, consumes that
one cancellation with ``Task.uncancel()`` and carries on with its next item. A cancellation
that is not ours (``stop()``), or that arrives together with ours, still propagates. The mark
is set only while the worker is inside the cancellable scope (node call, routing, backoff) for
that very trace, so a trace cancel never lands in event dispatch or in the take of the next
item. A ``CancelledError`` that nobody sent the worker (neither mark nor ``Task.cancelling``:
the node awaited a task cancelled elsewhere) is the node's failure (``attempt.is_stray``).
"""

from __future__ import annotations

import asyncio
import copy
import time
from types import CoroutineType
from typing import TYPE_CHECKING, Any, ClassVar, Final

from .._events import (
    DEADLINE_SKIP,
    NODE_CANCELLED,
    NODE_START,
    NODE_SUCCESS,
    NODE_TRACE_CANCELLED,
    TRACE_CANCEL_DROP,
    WORKER_RESTARTED,
)
from ..node import unawaited
from ..types import FinalAnswer, Message
from .attempt import Failed, Outcome, execute, is_stray
from .constants import DEADLINE_EXCEEDED_TEXT, logger
from .enqueue import trace_of
from .events import Observers, middleware_failed
from .floe import Floe
from .routing import CONTROL_CACHE, warn_if_not_message

if TYPE_CHECKING:
    from ..node import Node, NodePolicy
    from ..registry import ModelRegistry
    from .context import Context
    from .enqueue import Enqueuer
    from .events import EventSink
    from .lifecycle import TraceLifecycle
    from .nodes import NodeStatus
    from .routing import Router
    from .tasks import TaskOwner
    from .traces import TraceRecord, TraceRegistry

__all__ = ["Worker"]

_ONE: Final = Observers.ONE_MIDDLEWARE
_CANCELLED: Final = Outcome.CANCELLED

# Stand-ins that let the loop skip a None check: a floe that is always full, the "commonest
# hop" when the node has no single outgoing floe (or a bus mirrors every enqueue), so that
# its push always declines; and one that is always empty, the "single incoming floe" when the
# node reads several, so that the loop always waits through the context.
_NO_HOP: Final[Floe[Any]] = Floe(None, None, maxsize=1)
_NO_HOP.items.append(None)
_NO_INPUT: Final[Floe[Any]] = Floe(None, None, maxsize=1)


class Worker:
    """Runs one node: takes items FIFO from its incoming floes and processes them one by one."""

    inline_allowed: ClassVar[bool] = True
    """Whether workers may use the inline path at all (tests turn it off)."""

    __slots__ = (
        "ctx",
        "enqueuer",
        "errors_to_rookery",
        "in_scope",
        "inline",
        "item",
        "lifecycle",
        "name",
        "node",
        "policy",
        "registry",
        "router",
        "sink",
        "started",
        "status",
        "task",
        "template",
        "trace_cancel_requested",
        "trace_id",
        "traces",
        "warn_non_message",
    )

    def __init__(
        self,
        node: Node,
        ctx: Context,
        status: NodeStatus,
        index: int,
        *,
        traces: TraceRegistry,
        sink: EventSink,
        enqueuer: Enqueuer,
        router: Router,
        lifecycle: TraceLifecycle,
        errors_to_rookery: bool,
    ) -> None:
        self.node = node
        self.ctx = ctx
        self.status = status
        """The node's shared state: breaker, last error, restarts."""
        self.traces = traces
        self.sink = sink
        self.enqueuer = enqueuer
        self.router = router
        self.lifecycle = lifecycle
        self.errors_to_rookery = errors_to_rookery
        self.template = sink.template(node, ctx)
        self.name = f"penguiflow:{node.name}" + (f"#{index}" if index else "")
        """The task name: ``penguiflow:<node>``, plus ``#<n>`` for extra concurrent workers."""
        self.policy: NodePolicy = node.policy
        """The copy of the node's policy taken by ``start``."""
        self.registry: ModelRegistry | None = None
        self.inline = False
        """Whether this run's items may take the inline path (decided by ``start``)."""
        self.warn_non_message = False
        """Whether the registry declares Message outputs for this node (set by ``start``)."""
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

    def start(
        self, owner: TaskOwner, registry: ModelRegistry | None, warn_non_message: bool
    ) -> asyncio.Task[None]:
        """Take the node's policy as it is now and start the worker's task."""
        policy = self.policy = copy.copy(self.node.policy)
        self.registry = registry
        self.warn_non_message = warn_non_message
        self.inline = (
            Worker.inline_allowed
            and policy.timeout_s is None
            and policy.breaker is None
            and (registry is None or policy.validate == "none")
        )
        self.task = owner.start_worker(self.run(), name=self.name)
        return self.task

    def reset(self) -> None:
        """Forget the last run (after ``stop()`` awaited the task)."""
        self.started = self.in_scope = self.trace_cancel_requested = False
        self.task = self.item = self.trace_id = None

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
        if task is not asyncio.current_task():
            task.cancel()
        # else the node cancels its own trace: there is no await to interrupt (and before
        # Python 3.13 uncancel() would not take back a cancel the task sent itself); the
        # mark alone makes the loop drop the node's result, as for a swallowed cancel.
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
            await self.sink.emit(NODE_CANCELLED, self.ctx, None)
            raise

    async def _serve(self) -> None:
        """The loop: take, admit, attempt inline (or hand over to the general path), release.

        Design note: the node's output is counted when it is pushed, before its input is
        released and after ``node_success``, so that the event sees both (spec 7.9) and the
        trace cannot end while its observers run.
        """
        ctx, func, sink = self.ctx, self.node.func, self.sink
        single, hop = self._floes()
        while True:
            item = single.pop_nowait() if single.items else await ctx._next()
            self.item = item
            record = self._admit(item)
            if record is None:
                await self._process(item)
                continue
            trace_id = self.trace_id
            observed = sink.observers()
            outcome: Outcome | Failed | None = None
            if observed and await self._observe(NODE_START, record, observed, 0.0):
                outcome = _CANCELLED  # cancelled while observers ran: the node is not called
            started = time.perf_counter()
            if outcome is None:
                record.inflight += 1
                self.in_scope = True
                try:
                    result = await func(item, ctx)
                    # inlined: Enqueuer.try_put, for the commonest hop: a plain Message of the
                    # item's own trace onto the node's only outgoing floe, which has room.
                    if (
                        type(result) is Message
                        and result.trace_id == trace_id
                        and CONTROL_CACHE.get(type(result.payload)) is False
                        and not self.trace_cancel_requested
                        and hop.try_push(result)
                    ):
                        record.pending += 1
                    elif result is not None:
                        await self.route(item, result)
                except asyncio.CancelledError as error:
                    outcome = self._cancelled(error, started)
                except Exception as exc:
                    outcome = Failed(exc, started)
                finally:
                    self.in_scope = False
                    record.inflight -= 1
            if outcome is not None or self.trace_cancel_requested:
                await self._unsucceeded(item, trace_id, outcome)
            elif observed:
                latency = (time.perf_counter() - started) * 1000.0
                await self._observe(NODE_SUCCESS, record, sink.observers(), latency)
            self.item = self.trace_id = None
            # inlined: TraceRegistry.release, while it cannot end the trace or wake a waiter.
            pending = record.pending - 1
            if pending > 0 and not record.waiters:
                record.pending = pending
            else:
                await self.lifecycle.release(trace_id)

    def _floes(self) -> tuple[Floe[Any], Floe[Any]]:
        """The loop's floes: the only incoming one, and the commonest hop's (or stand-ins)."""
        ctx = self.ctx
        single = ctx._all_in[0] if len(ctx._all_in) == 1 else _NO_INPUT
        alone = len(ctx._all_out) == 1 and self.enqueuer.bus is None
        return single, ctx._all_out[0] if alone else _NO_HOP

    def _admit(self, item: Any) -> TraceRecord | None:
        """Start on ``item``: set its trace, and return its record if it may run inline.

        Returns:
            None for the general path: the node cannot run inline, the item has no trace
            (or one nobody counted), a deadline that has passed, or a cancelled trace.
        """
        if type(item) is Message:
            trace_id: str | None = item.trace_id
            deadline = item.deadline_s
        else:
            trace_id = trace_of(item)
            deadline = None if not isinstance(item, Message) else item.deadline_s
        self.trace_id = trace_id
        if not self.inline or trace_id is None or (deadline is not None and _expired(deadline)):
            return None
        traces = self.traces
        if traces.flags.holds_events:  # else no trace has a flag that could be set
            flag = traces.flag_of(trace_id)  # raw: an unread flag is None
            if flag is not None and flag.is_set():
                return None
        return traces.records.get(trace_id)

    async def _observe(
        self, kind: str, record: TraceRecord, observed: Observers, latency_ms: float
    ) -> bool:
        """Build and deliver ``node_start`` or ``node_success``; tell if the trace is cancelled.

        A lone middleware gets the event directly; otherwise ``EventSink.deliver`` logs,
        stores and dispatches it.
        """
        trace_id = self.trace_id
        assert trace_id is not None
        event = self.template.build(kind, trace_id, record, 0, latency_ms)
        if observed is _ONE:
            middleware = self.sink.middlewares[0]
            try:
                await middleware(event)
            except Exception as error:
                middleware_failed(middleware, event, error)
        else:
            await self.sink.deliver(event)
        return self.traces.is_cancelled(trace_id)

    async def route(self, item: Any, result: Any) -> None:
        """Route the node's result for ``item`` (see ``Router.route``), unless cancelled.

        Raises:
            TypeError: the result is a coroutine the node never awaited (``node.unawaited``);
                ``Node.invoke`` checks the general path's results, this the inline path's.
        """
        if type(result) is CoroutineType:  # the type cannot be subclassed
            raise unawaited(self.node, result)
        if self.trace_cancel_requested:
            return  # the node swallowed its trace's cancellation: its result is dropped
        if self.warn_non_message and not isinstance(result, Message):
            warn_if_not_message(self.node, result)
        await self.router.route(self.node, self.ctx, item, result)

    def _cancelled(self, error: asyncio.CancelledError, started: float) -> Outcome | Failed:
        """Consume the cancellation of the current item's trace, or re-raise a real one.

        A stray one (``attempt.is_stray``) is the node's failure, handed to the general path.
        """
        if is_stray(self):
            return Failed(error, started)
        if not self.consume_trace_cancel():
            raise error
        return _CANCELLED

    def consume_trace_cancel(self) -> bool:
        """Take back our own trace cancellation; False if none was requested or more came."""
        if not self.trace_cancel_requested:
            return False
        self.trace_cancel_requested = False
        task = self.task
        assert task is not None
        # Anything left after removing our own request is a real cancellation (stop()).
        return task.uncancel() == 0

    async def _unsucceeded(
        self, item: Any, trace_id: str | None, outcome: Outcome | Failed | None
    ) -> None:
        """Finish an inline item whose attempt did not simply succeed."""
        if isinstance(outcome, Failed):
            # The general path takes over: events, retries, the error boundary.
            await self._execute(item, trace_id, failed=outcome)
            return
        if self.trace_cancel_requested:
            self.consume_trace_cancel()  # the node swallowed its trace's cancellation
        await self.sink.emit(NODE_TRACE_CANCELLED, self.ctx, trace_id)

    async def _process(self, item: Any) -> None:
        """The general path for one item (``_admit`` already set the trace)."""
        trace_id = self.trace_id
        if (
            isinstance(item, Message)
            and item.deadline_s is not None
            and (time.time() > item.deadline_s)
        ):
            await self._skip_expired(item, trace_id)
        elif trace_id is not None and self.traces.is_cancelled(trace_id):
            await self.sink.emit(TRACE_CANCEL_DROP, self.ctx, trace_id)
        else:
            await self._execute(item, trace_id)
        self.item = self.trace_id = None
        await self.lifecycle.release(trace_id)

    async def _execute(
        self, item: Any, trace_id: str | None, *, failed: Failed | None = None
    ) -> None:
        """Run ``attempt.execute``; a cancel of the trace ends it with ``node_trace_cancelled``."""
        try:
            outcome = await execute(self, item, trace_id, failed=failed)
        except asyncio.CancelledError:
            if not self.consume_trace_cancel():
                raise
            outcome = _CANCELLED
        if self.trace_cancel_requested:
            # The node swallowed the CancelledError meant for its trace.
            self.consume_trace_cancel()
            outcome = _CANCELLED
        if outcome is _CANCELLED:
            await self.sink.emit(NODE_TRACE_CANCELLED, self.ctx, trace_id)

    async def _skip_expired(self, item: Message, trace_id: str | None) -> None:
        await self.sink.emit(
            DEADLINE_SKIP, self.ctx, trace_id, extra={"deadline_s": item.deadline_s}
        )
        payload = item.payload
        if not isinstance(payload, FinalAnswer):
            payload = FinalAnswer(text=DEADLINE_EXCEEDED_TEXT)
        await self.router.deliver(self.ctx, item.model_copy(update={"payload": payload}))

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
        await self.sink.emit(WORKER_RESTARTED, self.ctx, trace_id, extra={"exception": repr(exc)})
        await self.lifecycle.release(trace_id)


def _expired(deadline_s: float) -> bool:
    return time.time() > deadline_s
