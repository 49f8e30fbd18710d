"""The general path: one message through one node, attempts, timeouts, retries, the breaker.

A final failure becomes a ``FlowError`` (the error boundary). Only the node call, the routing
of its result and the backoff sleep are *trace-cancellable* (see ``worker``): they run with
``worker.in_scope`` set. Event dispatch runs outside that scope, so a trace cancel never
interrupts a middleware or a store write. The worker's loop keeps an inlined copy of one
attempt for nodes that need none of this (see ``worker``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from .._events import NODE_ERROR, NODE_FAILED, NODE_RETRY, NODE_START, NODE_SUCCESS, NODE_TIMEOUT
from ..errors import FlowError, FlowErrorCode
from ..health import NodeError

if TYPE_CHECKING:
    from collections.abc import Awaitable

    from ..node import Node, NodePolicy
    from ..registry import ModelRegistry
    from .breaker import Breaker
    from .context import Context
    from .events import EventSink
    from .nodes import NodeStatus
    from .routing import Router
    from .traces import TraceRecord, TraceRegistry

__all__ = ["Failed", "Outcome", "Runner", "execute", "is_stray"]


class Runner(Protocol):
    """What the general path needs of the worker that runs it (``Worker`` has all of it)."""

    node: Node
    ctx: Context
    policy: NodePolicy
    registry: ModelRegistry | None
    status: NodeStatus
    traces: TraceRegistry
    sink: EventSink
    router: Router
    errors_to_rookery: bool
    task: asyncio.Task[None] | None
    in_scope: bool
    """Set while the worker is in the trace-cancellable part of processing."""
    trace_cancel_requested: bool

    async def route(self, item: Any, result: Any) -> None:
        """Route the node's result for ``item``."""


class Outcome(enum.Enum):
    """How the handling of one message by one node ended."""

    SUCCEEDED = "succeeded"
    """The message went through the node (its result, if any, was routed)."""
    FAILED = "failed"
    """The message failed for good (retries exhausted, or rejected by an open breaker)."""
    CANCELLED = "cancelled"
    """The message's trace was cancelled before or while it ran."""


_SUCCEEDED: Final = Outcome.SUCCEEDED
_FAILED: Final = Outcome.FAILED
_CANCELLED: Final = Outcome.CANCELLED
_DEBUG: Final = logging.DEBUG
_INFO: Final = logging.INFO
_T = TypeVar("_T")


class Failed:
    """A failed attempt: the exception and when the attempt started (``perf_counter``).

    The exception is the node's; a ``CancelledError`` among them is a stray one (see
    ``is_stray``).
    """

    __slots__ = ("error", "started")

    def __init__(self, error: BaseException, started: float) -> None:
        self.error = error
        self.started = started


def is_stray(worker: Runner) -> bool:
    """Whether a ``CancelledError`` the node let escape is the node's own error.

    It is when nobody cancelled the worker: not its trace (the worker's mark, see
    ``Worker.consume_trace_cancel``) and not its task (``stop()``, seen in
    ``Task.cancelling``). Then the node awaited something cancelled elsewhere (a task it
    shares with another caller, say), and the cancellation is a failure of the node like any
    exception: retried per policy, then a ``FlowError``. The worker lives on.
    """
    if worker.trace_cancel_requested:
        return False
    task = worker.task
    return task is not None and task.cancelling() == 0


async def execute(
    worker: Runner, item: Any, trace_id: str | None, *, failed: Failed | None = None
) -> Outcome:
    """Run ``item`` through the worker's node until success or final failure.

    With ``failed``, the first attempt already ran (inline, in the worker's loop) and failed:
    its failure is reported and retries carry on from there. Otherwise the node's breaker,
    if it has one, admits the message first.

    Raises:
        asyncio.CancelledError: the worker was cancelled (by ``stop`` or a trace cancel).
    """
    breaker = worker.status.breaker if failed is None else None
    if breaker is None:
        return await _attempts(worker, item, trace_id, failed, None)
    loop = asyncio.get_running_loop()
    ticket, transition = breaker.admit(loop.time())
    if transition is not None:
        await _announce_breaker(worker, transition)
    if ticket is None:
        await _reject(worker, trace_id, breaker.retry_after(loop.time()))
        return _FAILED
    admission = _Admission(breaker, ticket)
    outcome = _CANCELLED
    try:
        outcome = await _attempts(worker, item, trace_id, None, admission)
    finally:
        if outcome is not _FAILED:
            admission.release()  # cancelled before any call ended: it counts for nothing
    if outcome is _FAILED:
        await admission.settle(worker, ok=False)  # unless a call succeeded, routing failed
    return outcome


class _Admission:
    """A message the breaker let through, until the breaker learns how its call went.

    Design note: the breaker hears of the message once, when a call of the node ends: success
    as soon as an attempt's call succeeds, *before* its result is routed (routing into a full
    floe can wait for as long as the consumer takes, and a half-open breaker would wait with
    it, rejecting everything else); failure once retries are exhausted. A cancelled message
    counts for nothing. A routing failure after a successful call is retried like any failed
    attempt, but the breaker already counted the message as a success.
    """

    __slots__ = ("breaker", "ticket")

    def __init__(self, breaker: Breaker, ticket: int) -> None:
        self.breaker = breaker
        self.ticket: int | None = ticket
        """The breaker's ticket, until the outcome is recorded."""

    def release(self) -> None:
        """Give the admission back unrecorded (a half-open breaker's trial place included)."""
        ticket, self.ticket = self.ticket, None
        if ticket is not None:
            self.breaker.release(ticket)

    async def settle(self, worker: Runner, *, ok: bool) -> None:
        """Record the outcome (the first time only) and announce a transition it caused."""
        ticket, self.ticket = self.ticket, None
        if ticket is None:
            return
        transition = self.breaker.record(ticket, ok, asyncio.get_running_loop().time())
        if transition is not None:
            await _announce_breaker(worker, transition)


async def _attempts(
    worker: Runner,
    item: Any,
    trace_id: str | None,
    failed: Failed | None,
    admission: _Admission | None,
) -> Outcome:
    attempt = 0
    while True:
        if failed is None:
            outcome = await _attempt(worker, item, trace_id, attempt, admission)
            if not isinstance(outcome, Failed):
                return outcome
            failed = outcome
        settled = await _after_failure(worker, trace_id, failed, attempt)
        if settled is not None:
            return settled
        attempt += 1
        failed = None


async def _reject(worker: Runner, trace_id: str | None, retry_after: float) -> None:
    """An open breaker rejects the message: a ``CIRCUIT_OPEN`` final failure."""
    node, breaker = worker.node, worker.status.breaker
    assert breaker is not None
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


async def _announce_breaker(worker: Runner, transition: str) -> None:
    breaker = worker.status.breaker
    assert breaker is not None
    await worker.sink.emit(transition, worker.ctx, None, extra={"state": breaker.state})


async def _attempt(
    worker: Runner, item: Any, trace_id: str | None, attempt: int, admission: _Admission | None
) -> Outcome | Failed:
    """Run one attempt: call the node, tell the breaker, route the result.

    Returns:
        ``SUCCEEDED``, ``CANCELLED``, or a ``Failed`` to handle (a failed call or routing).
    """
    traces, sink, ctx = worker.traces, worker.sink, worker.ctx
    if attempt and trace_id is not None and traces.is_cancelled(trace_id):
        return _CANCELLED  # the worker checked before the first attempt; retries check again
    if sink.wants(_DEBUG):
        await sink.emit(NODE_START, ctx, trace_id, attempt=attempt, latency_ms=0.0)
        if trace_id is not None and traces.is_cancelled(trace_id):
            return _CANCELLED  # cancelled while observers ran
    record = traces.records.get(trace_id) if trace_id is not None else None
    started = time.perf_counter()
    called = await _in_scope(worker, record, started, _call(worker, item))
    if isinstance(called, Failed):
        return called
    if worker.trace_cancel_requested:
        return _CANCELLED  # the node swallowed its trace's cancellation: no success
    if admission is not None:
        await admission.settle(worker, ok=True)
        if trace_id is not None and traces.is_cancelled(trace_id):
            return _CANCELLED  # cancelled while the breaker's observers ran
    result = called.result
    if result is not None:
        routed = await _in_scope(worker, record, started, worker.route(item, result))
        if routed is not None:
            return routed
    if sink.wants(_INFO):
        latency = (time.perf_counter() - started) * 1000.0
        await sink.emit(NODE_SUCCESS, ctx, trace_id, attempt=attempt, latency_ms=latency)
    return _SUCCEEDED


class _Called:
    """What a successful call of the node returned."""

    __slots__ = ("result",)

    def __init__(self, result: Any) -> None:
        self.result = result


async def _call(worker: Runner, item: Any) -> _Called:
    """Call the node once, within the policy's timeout, validating per the policy."""
    policy, node, registry = worker.policy, worker.node, worker.registry
    if policy.timeout_s is None and (registry is None or policy.validate == "none"):
        return _Called(await node.func(item, worker.ctx))  # nothing to add: no coroutine more
    async with asyncio.timeout(policy.timeout_s):
        if policy.validate == node.policy.validate:
            # The contract's signature, which subclasses may override.
            result = await node.invoke(item, worker.ctx, registry=registry)
        else:  # the policy changed since run(): this run keeps the mode it started with
            result = await node.invoke(
                item, worker.ctx, registry=registry, validate=policy.validate
            )
    return _Called(result)


async def _in_scope(
    worker: Runner, record: TraceRecord | None, started: float, step: Awaitable[_T]
) -> _T | Failed:
    """Await ``step`` (the node's call or its routing) in the trace-cancellable scope.

    Returns:
        What ``step`` returned, or a ``Failed`` for its exception (a stray cancellation
        included, see ``is_stray``).

    Raises:
        asyncio.CancelledError: the worker was cancelled (by ``stop`` or a trace cancel).
    """
    if record is not None:
        record.inflight += 1
    worker.in_scope = True
    try:
        return await step
    except asyncio.CancelledError as error:
        if not is_stray(worker):
            raise
        return Failed(error, started)
    except Exception as exc:
        return Failed(exc, started)
    finally:
        worker.in_scope = False
        if record is not None:
            record.inflight -= 1


async def _after_failure(
    worker: Runner, trace_id: str | None, failed: Failed, attempt: int
) -> Outcome | None:
    """Report a failed attempt, then sleep the backoff before the next one, or fail for good.

    The backoff sleep is trace-cancellable.

    Returns:
        None to try again; otherwise ``execute``'s answer: ``CANCELLED`` if the trace turned
        out to be cancelled (the node swallowed the cancellation, then raised), ``FAILED``
        once the failure is final.
    """
    if worker.trace_cancel_requested:
        return _CANCELLED
    error = failed.error
    latency = (time.perf_counter() - failed.started) * 1000.0
    sink, ctx, policy = worker.sink, worker.ctx, worker.policy
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
        return _FAILED
    try:
        delay = _delay(policy, attempt + 1)
    except Exception as retry_error:
        # The retry machinery failed, not the node: the message fails for good with the
        # node's error, rather than vanish in a worker restart.
        await _fail(worker, trace_id, error, attempt, latency, retry_error=retry_error)
        return _FAILED
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


def _delay(policy: NodePolicy, attempt: int) -> float:
    """The policy's sleep before ``attempt``.

    Raises:
        ValueError: ``backoff_delay`` (a subclass's) returned something no sleep can take.
    """
    delay = policy.backoff_delay(attempt)
    if not (isinstance(delay, int | float) and delay >= 0):  # NaN included
        raise ValueError(f"backoff_delay({attempt}) returned {delay!r}, not a number >= 0")
    return delay


async def _fail(
    worker: Runner,
    trace_id: str | None,
    error: BaseException,
    attempt: int,
    latency: float,
    *,
    retry_error: Exception | None = None,
) -> None:
    """Report the final failure of the node's ``error`` (``retry_error``: why no retry)."""
    node = worker.node
    name = node.name
    timeout_s = worker.policy.timeout_s
    metadata: dict[str, Any] = {"attempt": attempt, "latency_ms": latency}
    if retry_error is not None:
        metadata["retry_exception"] = repr(retry_error)
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
    worker: Runner,
    trace_id: str | None,
    flow_error: FlowError,
    *,
    attempt: int,
    latency: float,
    exc: BaseException | None,
) -> None:
    """Report a final failure: the error boundary.

    A ``node_failed`` event, the node's last error, and the ``FlowError`` at the Rookery when
    the flow asks for it.
    """
    record = worker.traces.records.get(trace_id) if trace_id is not None else None
    if record is not None:
        record.failed = True  # the trace will end as "failed" in a journal
    worker.status.last_error = NodeError(
        code=flow_error.code, message=flow_error.message, trace_id=trace_id, ts=time.time()
    )
    extra: dict[str, Any] = {} if exc is None else {"exception": repr(exc)}
    extra["flow_error"] = flow_error.to_payload()
    await worker.sink.emit(
        NODE_FAILED, worker.ctx, trace_id, attempt=attempt, latency_ms=latency, extra=extra, exc=exc
    )
    if worker.errors_to_rookery and trace_id is not None:
        await worker.router.deliver(worker.ctx, flow_error)
