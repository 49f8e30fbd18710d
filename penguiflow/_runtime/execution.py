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
    direct = registry is None or policy.validate == "none"
    timeout_s = policy.timeout_s
    attempt = 0
    while True:
        # The worker checked the trace before the first attempt; retries check again.
        if attempt and trace_id is not None and traces.is_cancelled(trace_id):
            return True
        if sink.wants(_DEBUG):
            await sink.emit(NODE_START, ctx, trace_id, attempt=attempt, latency_ms=0.0)
            # Observers may have yielded to the loop; the trace may be cancelled by now.
            if trace_id is not None and traces.is_cancelled(trace_id):
                return True
        started = time.perf_counter()
        worker.in_scope = True
        try:
            if timeout_s is not None:
                async with asyncio.timeout(timeout_s):
                    result = await node.invoke(item, ctx, registry=registry)
            elif direct:
                result = await node.func(item, ctx)
            else:
                result = await node.invoke(item, ctx, registry=registry)
            if result is not None:
                if worker.warn_non_message and not isinstance(result, Message):
                    warn_if_not_message(node, result)
                payload = result.payload if isinstance(result, Message) else None
                if isinstance(payload, WM | FinalAnswer):
                    await flow._router.route(node, ctx, item, result)
                else:
                    for floe in ctx._all_out:
                        if not enqueuer.try_put(floe, result):
                            await enqueuer.put(floe, result)
        except Exception as exc:
            error: Exception = exc
        else:
            if sink.wants(_INFO):
                latency = (time.perf_counter() - started) * 1000.0
                await sink.emit(NODE_SUCCESS, ctx, trace_id, attempt=attempt, latency_ms=latency)
            return False
        finally:
            worker.in_scope = False
        latency = (time.perf_counter() - started) * 1000.0
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
        attempt += 1
        delay = policy.backoff_delay(attempt)
        await sink.emit(
            NODE_RETRY,
            ctx,
            trace_id,
            attempt=attempt,
            extra={"sleep_s": delay, "exception": repr(error)},
        )
        worker.in_scope = True
        try:
            await asyncio.sleep(delay)
        finally:
            worker.in_scope = False


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
