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
from typing import TYPE_CHECKING, Any

from ..errors import FlowError, FlowErrorCode
from ..types import WM, FinalAnswer, Message
from .constants import (
    NODE_ERROR,
    NODE_FAILED,
    NODE_RETRY,
    NODE_START,
    NODE_SUCCESS,
    NODE_TIMEOUT,
)
from .routing import warn_if_not_message

if TYPE_CHECKING:
    from .enqueue import Enqueuer
    from .worker import Worker

__all__ = ["execute"]

_DEBUG = logging.DEBUG
_INFO = logging.INFO


async def execute(worker: Worker, item: Any, trace_id: str | None) -> bool:
    """Run ``item`` through the worker's node until success or final failure.

    Returns:
        True if the run stopped because the trace is cancelled (checked before each attempt).

    Raises:
        asyncio.CancelledError: the worker was cancelled (by ``stop`` or a trace cancel).
    """
    flow, node, ctx = worker.flow, worker.node, worker.ctx
    policy = node.policy
    sink = flow._events
    traces = flow._traces
    enqueuer = flow._enqueuer
    registry = flow._registry
    # Without validation the node function is called directly, saving a coroutine per hop.
    call = node.func if registry is None or policy.validate == "none" else None
    timeout_s = policy.timeout_s
    attempt = 0
    while True:
        # The worker checked the trace before the first attempt; retries check again.
        if attempt and trace_id is not None and traces.is_cancelled(trace_id):
            return True
        if sink.wants(_DEBUG) and await _announce_start(worker, trace_id, attempt):
            return True
        started = time.perf_counter()
        worker.in_scope = True
        try:
            if timeout_s is None and call is not None:
                result = await call(item, ctx)
            else:
                async with asyncio.timeout(timeout_s):
                    result = await node.invoke(item, ctx, registry=registry)
            if result is not None and not _route_nowait(worker, enqueuer, result):
                await flow._router.route(node, ctx, item, result)
        except Exception as exc:
            error: Exception = exc
        else:
            if worker.trace_cancel_requested:
                return True  # the node swallowed its trace's cancellation: no success
            if sink.wants(_INFO):
                latency = (time.perf_counter() - started) * 1000.0
                await sink.emit(NODE_SUCCESS, ctx, trace_id, attempt=attempt, latency_ms=latency)
            return False
        finally:
            worker.in_scope = False
        if worker.trace_cancel_requested:
            return True  # the node swallowed its trace's cancellation, then failed
        latency = (time.perf_counter() - started) * 1000.0
        if not await _retry_after(worker, trace_id, error, attempt, latency):
            return False
        attempt += 1


def _route_nowait(worker: Worker, enqueuer: Enqueuer, result: Any) -> bool:
    """Route a plain result onto every outgoing floe if all have room.

    Returns:
        True if the result is dealt with: routed, or dropped because the node swallowed the
        cancellation of its trace (its result counts as cancelled). False leaves controller
        hops, final answers, a full floe or a bus to ``Router.route``.
    """
    if worker.trace_cancel_requested:
        return True
    if worker.warn_non_message and not isinstance(result, Message):
        warn_if_not_message(worker.node, result)
    if isinstance(result, Message) and isinstance(result.payload, WM | FinalAnswer):
        return False
    if enqueuer.bus is not None:
        return False
    floes = worker.ctx._all_out
    for floe in floes:
        queue = floe.queue
        if 0 < queue._maxsize <= len(queue._queue):
            return False
    for floe in floes:
        enqueuer.try_put(floe, result)
    return True


async def _announce_start(worker: Worker, trace_id: str | None, attempt: int) -> bool:
    """Emit ``node_start``; return True if the trace was cancelled meanwhile."""
    flow = worker.flow
    await flow._events.emit(NODE_START, worker.ctx, trace_id, attempt=attempt, latency_ms=0.0)
    # Observers may have yielded to the loop.
    return trace_id is not None and flow._traces.is_cancelled(trace_id)


async def _retry_after(
    worker: Worker, trace_id: str | None, error: Exception, attempt: int, latency: float
) -> bool:
    """Report a failed attempt, then either sleep the backoff (True: try again) or fail.

    The backoff sleep is trace-cancellable.
    """
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
        return False
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
    return True


async def _fail(
    worker: Worker, trace_id: str | None, error: Exception, attempt: int, latency: float
) -> None:
    flow, node = worker.flow, worker.node
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
    await flow._events.emit(
        NODE_FAILED,
        worker.ctx,
        trace_id,
        attempt=attempt,
        latency_ms=latency,
        extra={"exception": repr(error), "flow_error": flow_error.to_payload()},
        exc=error,
    )
    if flow._emit_errors_to_rookery and trace_id is not None:
        await flow._router.deliver(worker.ctx, flow_error)
