"""One message through one node: attempts, timeouts, retries and the error boundary.

A final failure becomes a ``FlowError``. Only the node call, the routing of its result and the
backoff sleep are *trace-cancellable* (see ``worker``): they run with ``worker.in_scope`` set.
Event dispatch runs outside that scope, so a trace cancel never interrupts a middleware or a
store write.

Hot path: with nothing observing events, an attempt is the node call plus the routing of its
result, inline in this coroutine; plain results go straight onto the outgoing floes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Final, Literal

from ..errors import FlowError, FlowErrorCode
from ..health import NodeError
from ..types import Message
from .constants import (
    NODE_ERROR,
    NODE_FAILED,
    NODE_RETRY,
    NODE_START,
    NODE_SUCCESS,
    NODE_TIMEOUT,
)
from .routing import CONTROL_CACHE, is_control, warn_if_not_message

if TYPE_CHECKING:
    from .enqueue import Enqueuer
    from .traces import TraceRecord
    from .worker import Worker

__all__ = [
    "CANCELLED",
    "FAILED",
    "SUCCEEDED",
    "Failed",
    "attempt_once",
    "execute",
    "execute_with_breaker",
    "route_nowait",
]

Outcome = Literal["succeeded", "failed", "cancelled"]
SUCCEEDED: Final = "succeeded"
"""The message went through the node (its result, if any, was routed)."""
FAILED: Final = "failed"
"""The message failed for good (retries exhausted, or rejected by an open breaker)."""
CANCELLED: Final = "cancelled"
"""The message's trace was cancelled before or while it ran."""

_DEBUG = logging.DEBUG
_INFO = logging.INFO


class Failed:
    """A failed attempt: the exception and when the attempt started (``perf_counter``)."""

    __slots__ = ("error", "started")

    def __init__(self, error: Exception, started: float) -> None:
        self.error = error
        self.started = started


async def execute(
    worker: Worker, item: Any, trace_id: str | None, *, failed: Failed | None = None
) -> Outcome:
    """Run ``item`` through the worker's node until success or final failure.

    With ``failed``, the first attempt already ran (on the worker's ordinary path) and failed:
    its failure is reported and retries carry on from there.

    Raises:
        asyncio.CancelledError: the worker was cancelled (by ``stop`` or a trace cancel).
    """
    attempt = 0
    while True:
        if failed is None:
            outcome = await attempt_once(worker, item, trace_id, attempt)
            if not isinstance(outcome, Failed):
                return outcome
            failed = outcome
        settled = await _after_failure(worker, trace_id, failed, attempt)
        if settled is not None:
            return settled
        attempt += 1
        failed = None


async def execute_with_breaker(worker: Worker, item: Any, trace_id: str | None) -> Outcome:
    """``execute`` behind the node's circuit breaker.

    An open breaker rejects the message without calling the node: a ``FlowError`` of code
    ``CIRCUIT_OPEN`` is reported like any final failure. Otherwise the message's outcome is
    recorded, which may open, re-open or close the breaker.
    """
    breaker = worker.status.breaker
    assert breaker is not None
    loop = asyncio.get_running_loop()
    ticket, transition = breaker.admit(loop.time())
    if transition is not None:
        await _announce_breaker(worker, transition)
    if ticket is None:
        node = worker.node
        retry_after = breaker.retry_after(loop.time())
        rejection = FlowError(
            trace_id=trace_id,
            node_name=node.name,
            node_id=node.node_id,
            code=FlowErrorCode.CIRCUIT_OPEN,
            message=f"Node '{node.name}' circuit is {breaker.state.replace('_', '-')}; "
            "the call was rejected",
            metadata={"breaker": breaker.state, "retry_after_s": retry_after},
        )
        await _report_failure(worker, trace_id, rejection, attempt=0, latency=0.0, exc=None)
        return FAILED
    outcome = await execute(worker, item, trace_id)
    if outcome != CANCELLED:
        transition = breaker.record(ticket, outcome == SUCCEEDED, loop.time())
        if transition is not None:
            await _announce_breaker(worker, transition)
    return outcome


async def _announce_breaker(worker: Worker, transition: str) -> None:
    breaker = worker.status.breaker
    assert breaker is not None
    await worker.flow._events.emit(transition, worker.ctx, None, extra={"state": breaker.state})


async def attempt_once(
    worker: Worker, item: Any, trace_id: str | None, attempt: int
) -> Outcome | Failed:
    """Run one attempt: success, cancellation, or a ``Failed`` to handle."""
    flow, node, ctx = worker.flow, worker.node, worker.ctx
    policy = node.policy
    sink = flow._events
    if attempt and trace_id is not None and flow._traces.is_cancelled(trace_id):
        return CANCELLED  # the worker checked before the first attempt; retries check again
    if sink.wants(_DEBUG):
        await sink.emit(NODE_START, ctx, trace_id, attempt=attempt, latency_ms=0.0)
        if trace_id is not None and flow._traces.is_cancelled(trace_id):
            return CANCELLED  # cancelled while observers ran
    registry = flow._registry
    started = time.perf_counter()
    worker.in_scope = True
    try:
        if policy.timeout_s is None and (registry is None or policy.validate == "none"):
            result = await node.func(item, ctx)  # no validation: skip invoke's coroutine
        else:
            async with asyncio.timeout(policy.timeout_s):
                result = await node.invoke(item, ctx, registry=registry)
        if result is not None and not route_nowait(worker, flow._enqueuer, result):
            await flow._router.route(node, ctx, item, result)
    except Exception as exc:
        return Failed(exc, started)
    finally:
        worker.in_scope = False
    if worker.trace_cancel_requested:
        return CANCELLED  # the node swallowed its trace's cancellation: no success
    if sink.wants(_INFO):
        latency = (time.perf_counter() - started) * 1000.0
        await sink.emit(NODE_SUCCESS, ctx, trace_id, attempt=attempt, latency_ms=latency)
    return SUCCEEDED


NOT_ROUTED: Final = 0
"""``route_nowait``: nothing done; ``Router.route`` must route the result."""
ROUTED: Final = 1
"""``route_nowait``: the result is dealt with (routed, or dropped for a cancelled trace)."""
HANDED_OFF: Final = 2
"""``route_nowait``: routed, and the result took over the input's pending count."""


def route_nowait(
    worker: Worker,
    enqueuer: Enqueuer,
    result: Any,
    held: TraceRecord | None = None,
    keep: bool = False,
) -> int:
    """Route a plain result onto every outgoing floe if all have room, without waiting.

    With ``held`` (the record of the trace of the worker's current item), a result of that
    same trace takes over the item's pending count instead of counting anew (see
    ``Enqueuer.put_all_nowait``); the caller must then not finalize its item. With ``keep``
    too, the result is counted on ``held`` without a lookup and the caller keeps its item's
    count (the answer is then ``ROUTED``, not ``HANDED_OFF``).

    Returns:
        ``NOT_ROUTED`` for controller hops, final answers, a full floe or a bus;
        ``ROUTED`` when routed, or dropped because the node swallowed the cancellation of its
        trace (its result counts as cancelled); ``HANDED_OFF`` when routed with a handoff.
    """
    if worker.trace_cancel_requested:
        return ROUTED
    message = isinstance(result, Message)
    if message:
        payload = result.payload
        control = CONTROL_CACHE.get(type(payload))  # is_control's cache, read inline
        if control or (control is None and is_control(payload)):
            return NOT_ROUTED
    elif worker.warn_non_message:
        warn_if_not_message(worker.node, result)
    floes = worker.ctx._all_out
    trace_id = result.trace_id if message else getattr(result, "trace_id", None)
    if held is not None and floes and trace_id == worker.trace_id:
        if enqueuer.bus is None and len(floes) == 1:
            # put_all_nowait's handoff for the one-floe case, without its call and loops:
            # this is every hop of a chain (and the observed path's only way out).
            queue = floes[0].queue
            if 0 < queue._maxsize <= len(queue._queue):
                return NOT_ROUTED
            queue.push(result)
            if keep:
                held.pending += 1
                return ROUTED
            return HANDED_OFF
        if not enqueuer.put_all_nowait(floes, result, held, keep):
            return NOT_ROUTED
        return ROUTED if keep else HANDED_OFF
    return ROUTED if enqueuer.put_all_nowait(floes, result) else NOT_ROUTED


async def _after_failure(
    worker: Worker, trace_id: str | None, failed: Failed, attempt: int
) -> Outcome | None:
    """Report a failed attempt, then sleep the backoff before the next one, or fail for good.

    The backoff sleep is trace-cancellable.

    Returns:
        None to try again; otherwise ``execute``'s answer: ``CANCELLED`` if the trace turned
        out to be cancelled (the node swallowed the cancellation, then raised), ``FAILED``
        once the failure is final.
    """
    if worker.trace_cancel_requested:
        return CANCELLED
    error = failed.error
    latency = (time.perf_counter() - failed.started) * 1000.0
    sink, ctx, policy = worker.flow._events, worker.ctx, worker.node.policy
    await sink.emit(
        NODE_TIMEOUT if isinstance(error, TimeoutError) else NODE_ERROR,
        ctx,
        trace_id,
        attempt=attempt,
        latency_ms=latency,
        extra={"exception": repr(error)},
        exc=error,
    )
    if attempt >= policy.max_retries:
        await _fail(worker, trace_id, error, attempt, latency)
        return FAILED
    delay = policy.backoff_delay(attempt + 1)
    await sink.emit(
        NODE_RETRY,
        ctx,
        trace_id,
        attempt=attempt + 1,
        extra={"sleep_s": delay, "exception": repr(error)},
    )
    worker.in_scope = True
    try:
        await asyncio.sleep(delay)
    finally:
        worker.in_scope = False
    return None


async def _fail(
    worker: Worker, trace_id: str | None, error: Exception, attempt: int, latency: float
) -> None:
    node = worker.node
    name = node.name
    timeout_s = node.policy.timeout_s
    metadata: dict[str, Any] = {"attempt": attempt, "latency_ms": latency}
    if isinstance(error, TimeoutError):
        code = FlowErrorCode.NODE_TIMEOUT
        message = f"Node '{name}' timed out after {timeout_s:.2f}s" if timeout_s else None
        metadata["timeout_s"] = timeout_s
    else:
        code = FlowErrorCode.NODE_EXCEPTION
        message = f"Node '{name}' raised {type(error).__name__}: {error}"
        metadata["exception_repr"] = repr(error)
    flow_error = FlowError.from_exception(
        trace_id=trace_id,
        node_name=name,
        node_id=node.node_id,
        exc=error,
        code=code,
        message=message,
        metadata=metadata,
    )
    await _report_failure(worker, trace_id, flow_error, attempt=attempt, latency=latency, exc=error)


async def _report_failure(
    worker: Worker,
    trace_id: str | None,
    flow_error: FlowError,
    *,
    attempt: int,
    latency: float,
    exc: Exception | None,
) -> None:
    """Report a final failure: the error boundary.

    A ``node_failed`` event, the node's last error, and the ``FlowError`` at the Rookery when
    the flow asks for it.
    """
    flow = worker.flow
    record = flow._traces.records.get(trace_id) if trace_id is not None else None
    if record is not None:
        record.failed = True  # the trace will end as "failed" in a journal
    worker.status.last_error = NodeError(
        code=flow_error.code, message=flow_error.message, trace_id=trace_id, ts=time.time()
    )
    extra: dict[str, Any] = {} if exc is None else {"exception": repr(exc)}
    extra["flow_error"] = flow_error.to_payload()
    await flow._events.emit(
        NODE_FAILED, worker.ctx, trace_id, attempt=attempt, latency_ms=latency, extra=extra, exc=exc
    )
    if flow._emit_errors_to_rookery and trace_id is not None:
        await flow._router.deliver(worker.ctx, flow_error)
