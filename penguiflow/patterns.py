"""Reusable flow shapes: bounded concurrent map, routers and a per-trace join.

The routers and the join are ordinary nodes (``validate="none"``) built around closures, so
each call gives an independent node with its own state (a join's buckets: ``_Join``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, Final, TypeAlias, TypeVar, final

from pydantic import TypeAdapter

from ._runtime.constants import logger
from .node import Node, NodePolicy
from .policies import PolicyLike, RoutingRequest, evaluate_policy
from .types import Message

if TYPE_CHECKING:
    from ._runtime.protocols import Runtime
    from ._runtime.traces import TraceRecord
    from .core import Context

__all__ = [
    "DEFAULT_MAX_BUCKETS",
    "JOIN_BUCKET_DROPPED",
    "join_k",
    "map_concurrent",
    "predicate_router",
    "union_router",
]

T = TypeVar("T")
R = TypeVar("R")

#: What a router may name as its targets: a node, a successor's name, or several of them.
Targets: TypeAlias = Node | str | Iterable[Node | str]


async def map_concurrent(
    items: Iterable[T],
    worker: Callable[[T], Awaitable[R]],
    *,
    max_concurrency: int = 8,
) -> list[R]:
    """Apply ``worker`` to every item, at most ``max(1, max_concurrency)`` at a time.

    ``items`` is materialised first. Results come back in input order.

    On the first failure the other workers are cancelled and awaited, then that exception
    propagates unchanged. If the caller is cancelled, every worker is cancelled and awaited
    before the cancellation propagates.

    Raises:
        Exception: the first exception a worker raised.
    """
    pending = list(items)
    results: dict[int, R] = {}
    indexes = iter(range(len(pending)))

    async def _drain() -> None:
        # Each lane pulls the next index from the shared iterator, so at most ``lanes``
        # items are in progress at once and no item runs twice.
        for index in indexes:
            results[index] = await worker(pending[index])

    lanes = min(max(1, max_concurrency), len(pending))
    tasks = [asyncio.create_task(_drain()) for _ in range(lanes)]
    try:
        if tasks:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled():
                error = task.exception()
                if error is not None:
                    raise error
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return [results[index] for index in range(len(pending))]


def _successor_named(context: Context, name: str) -> Node:
    for target in context._outgoing:
        if isinstance(target, Node) and target.name == name:
            return target
    raise KeyError(f"No successor named '{name}'")


def _normalize_targets(context: Context, targets: Targets) -> list[Node]:
    """Resolve ``targets`` (a node, a name, or an iterable of them) to nodes.

    Nodes are kept as they are; names are matched against the node keys of
    ``context._outgoing``.

    Raises:
        KeyError: a name matches no successor.
        TypeError: an entry is neither a ``Node`` nor a ``str``.
    """
    if isinstance(targets, Node | str):
        entries: list[object] = [targets]
    elif isinstance(targets, Iterable):
        entries = list(targets)
    else:
        raise TypeError("Targets must be Node or str")
    resolved: list[Node] = []
    for entry in entries:
        if isinstance(entry, Node):
            resolved.append(entry)
        elif isinstance(entry, str):
            resolved.append(_successor_named(context, entry))
        else:
            raise TypeError("Targets must be Node or str")
    return resolved


async def _forward(
    policy: PolicyLike | None,
    message: Any,
    context: Context,
    router: Node,
    proposed: list[Node],
) -> None:
    """Emit ``message`` to ``proposed``, or to what ``policy`` decides instead.

    An empty proposal, a None decision or one that resolves to no target drops the message.
    """
    if not proposed:
        return
    selected = proposed
    if policy is not None:
        request = RoutingRequest(
            message=message,
            context=context,
            node=router,
            proposed=tuple(proposed),
            trace_id=getattr(message, "trace_id", None),
        )
        decision = await evaluate_policy(policy, request)
        selected = [] if decision is None else _normalize_targets(context, decision)
    if selected:
        await context.emit(message, to=selected)


def predicate_router(
    name: str,
    predicate: Callable[[Any], Targets | None],
    *,
    policy: PolicyLike | None = None,
) -> Node:
    """Build a node that forwards each message to the successors ``predicate`` names.

    ``predicate(message)`` returns a node, a successor name, several of them, or None. None or
    an empty selection drops the message. With a ``policy``, its decision replaces the
    selection (None or empty drops). The message itself is emitted, unchanged, and the node
    returns None.

    Raises:
        KeyError: (inside the node) a name matches no successor.
        TypeError: (inside the node) a target is neither a ``Node`` nor a ``str``.
    """
    router: Node

    # ``message`` is whatever the upstream node produced.
    async def _route(message: Any, ctx: Context) -> None:
        targets = predicate(message)
        if targets is not None:
            await _forward(policy, message, ctx, router, _normalize_targets(ctx, targets))

    router = Node(_route, name=name, policy=NodePolicy(validate="none"))
    return router


def union_router(
    name: str,
    union_model: Any,  # a type expression (a union, possibly Annotated), which has no type
    *,
    policy: PolicyLike | None = None,
) -> Node:
    """Build a node that validates each message against a union and routes by its variant.

    The validated object's ``kind`` attribute (else its class name) names the successor. A
    ``policy`` may override the choice as in ``predicate_router``. The **validated object**
    is emitted.

    Raises:
        pydantic.ValidationError: (inside the node) the message fits no variant.
        KeyError: (inside the node) no successor has the variant's name.
    """
    adapter: TypeAdapter[Any] = TypeAdapter(union_model)
    router: Node

    async def _route(message: Any, ctx: Context) -> None:
        validated = adapter.validate_python(message)
        target = getattr(validated, "kind", type(validated).__name__)
        await _forward(policy, validated, ctx, router, _normalize_targets(ctx, target))

    router = Node(_route, name=name, policy=NodePolicy(validate="none"))
    return router


#: How many incomplete buckets a ``join_k`` node keeps at most, unless told otherwise.
DEFAULT_MAX_BUCKETS: Final = 10_000

#: The event (and log) a join node gives when it drops an incomplete bucket.
JOIN_BUCKET_DROPPED: Final = "join_bucket_dropped"
# Its ``reason``: pushed out by ``max_buckets``, or its trace cancelled or its flow stopped.
_MAX_BUCKETS: Final = "max_buckets"
_CANCELLED_OR_STOPPED: Final = "cancelled_or_stopped"


async def _idle() -> None:
    """Wait until cancelled: the body of a watcher task."""
    await asyncio.get_running_loop().create_future()


@final
class _Join:
    """The buckets of one ``join_k`` node, oldest first, and what drops them.

    Design note. A bucket (the list of a trace's items so far) lives until its k-th item
    arrives, its trace is cancelled, the flow stops, or ``max_buckets`` newer ones push it out.
    While the bucket's trace has items pending, an end-of-trace callback in the flow's trace
    registry (``_TraceEnd``) watches it: an end by cancellation or by ``stop()`` drops it. An
    ordinary end leaves it waiting for later emits of the same trace, so it gets a watcher: an
    idle task registered with the flow for the trace (``register_external_task``), which
    ``cancel()`` of the trace and ``stop()`` cancel, and whose end drops the bucket. A fan-in
    that completes within its trace, the common case, costs one list and one callback object.
    """

    __slots__ = ("buckets", "max_buckets", "name", "watchers")

    def __init__(self, name: str, max_buckets: int) -> None:
        self.name = name
        self.max_buckets = max_buckets
        self.buckets: dict[str, list[Any]] = {}
        self.watchers: dict[str, asyncio.Task[None]] = {}
        """The watcher of each bucket that outlived its trace's pending items."""

    def open(self, trace_id: str, ctx: object) -> tuple[list[Any], tuple[str, int] | None]:
        """Start the bucket of ``trace_id``, pushing out the oldest one if over the bound.

        Returns:
            The new bucket, and the (trace id, item count) of the bucket pushed out, if any.
        """
        bucket: list[Any] = []
        self.buckets[trace_id] = bucket
        runtime: Runtime | None = getattr(ctx, "runtime", None)
        traces = getattr(runtime, "_traces", None)  # the flow's TraceRegistry
        # Outside a running flow (e.g. a unit test calling the node) there is no trace to hear.
        if runtime is not None and traces is not None:
            record = traces.records.get(trace_id)
            if record is not None:
                traces.on_end(trace_id, _TraceEnd(self, trace_id, bucket, runtime, record))
        if len(self.buckets) <= self.max_buckets:
            return bucket, None
        oldest_trace = next(iter(self.buckets))
        return bucket, (oldest_trace, len(self.remove(oldest_trace)))

    def remove(self, trace_id: str) -> list[Any]:
        """Remove the bucket of ``trace_id`` (and its watcher) and return its items."""
        watcher = self.watchers.pop(trace_id, None) if self.watchers else None
        if watcher is not None:
            watcher.cancel()  # its end finds the bucket gone and does nothing
        return self.buckets.pop(trace_id)

    def trace_ended(
        self, trace_id: str, bucket: list[Any], cancelled: bool, runtime: Runtime
    ) -> None:
        """The trace of ``bucket`` has nothing pending any more: drop or keep the bucket."""
        if self.buckets.get(trace_id) is not bucket:
            return  # completed or pushed out meanwhile
        # Cancelled: drop. The flow stopping (its record is forgotten by ``stop()``, or the
        # trace ends as ``stop()`` cancels the flow's tasks): drop too, since a watcher started
        # now would outlive the flow. Else the trace merely has nothing pending: keep.
        if cancelled or not runtime.health().running:
            self._drop(trace_id)
            return
        watcher = asyncio.get_running_loop().create_task(
            _idle(), name=f"penguiflow:join_k:{self.name}:{trace_id}"
        )
        # A done callback, not a ``finally`` in the task: a task cancelled before its first
        # step never runs its body.
        watcher.add_done_callback(lambda _: self._watcher_done(trace_id, bucket))
        self.watchers[trace_id] = watcher
        runtime.register_external_task(trace_id, watcher)

    def _watcher_done(self, trace_id: str, bucket: list[Any]) -> None:
        if self.buckets.get(trace_id) is bucket:
            self._drop(trace_id)

    def _drop(self, trace_id: str) -> None:
        """Drop a bucket whose trace was cancelled or whose flow stopped, and say so."""
        dropped = len(self.remove(trace_id))
        extra = {"event": JOIN_BUCKET_DROPPED, "node_name": self.name, "trace_id": trace_id}
        facts = {"dropped": dropped, "reason": _CANCELLED_OR_STOPPED}
        logger.debug(JOIN_BUCKET_DROPPED, extra={**extra, **facts})


@final
class _TraceEnd:
    """The end-of-trace callback of one bucket, kept by the trace's record until it ends.

    The record holds this callback and the callback the record: the call lets go of the
    record, or each trace would leave a cycle that only the garbage collector frees.
    """

    __slots__ = ("bucket", "join", "record", "runtime", "trace_id")

    def __init__(
        self,
        join: _Join,
        trace_id: str,
        bucket: list[Any],
        runtime: Runtime,
        record: TraceRecord,
    ) -> None:
        self.join = join
        self.trace_id = trace_id
        self.bucket = bucket
        self.runtime = runtime
        self.record: TraceRecord | None = record

    def __call__(self) -> None:
        record, self.record = self.record, None
        cancelled = record is not None and record.cancel_announced
        self.join.trace_ended(self.trace_id, self.bucket, cancelled, self.runtime)


def join_k(name: str, k: int, *, max_buckets: int = DEFAULT_MAX_BUCKETS) -> Node:
    """Build a node that gathers ``k`` items per trace and emits them as one.

    Buckets are per trace id and private to this node. The node returns None until the k-th
    item of a trace arrives; then it clears that bucket and returns a copy of the first item
    whose payload is the list of payloads in arrival order (keeping the first item's trace id,
    headers and meta) when the first item is a ``Message``, else the list of items.

    A bucket waits for its k items however they come: in one fan-out, or from separate
    ``emit`` calls with the same trace id, the trace having had nothing pending in between.
    An incomplete bucket is dropped when its trace is cancelled (``PenguiFlow.cancel`` while
    the trace has something pending) or the flow stops, with a DEBUG ``join_bucket_dropped``
    log on ``penguiflow.core``. When a new trace would make more than ``max_buckets``
    incomplete buckets, the oldest one is dropped with a WARNING ``join_bucket_dropped`` flow
    event (log, store and middlewares) naming the node and that trace, whose ``extra`` holds
    how many items were ``dropped``.

    Args:
        name: The node's name.
        k: Items per trace to gather.
        max_buckets: Incomplete buckets kept at most (beyond the contract, which keeps them
            all); default ``DEFAULT_MAX_BUCKETS``.

    Raises:
        ValueError: ``k <= 0`` or ``max_buckets <= 0``; or (inside the node) an item has no
            ``trace_id``.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    if max_buckets <= 0:
        raise ValueError(f"join_k {name!r}: max_buckets must be positive; got {max_buckets}")
    joins = _Join(name, max_buckets)
    node: Node

    async def _join(message: Any, ctx: Context) -> Any:
        trace_id = getattr(message, "trace_id", None)
        if trace_id is None:
            raise ValueError("join_k requires messages with trace_id")
        bucket = joins.buckets.get(trace_id)
        pushed_out = None
        if bucket is None:
            bucket, pushed_out = joins.open(trace_id, ctx)
        bucket.append(message)
        merged = _merged(joins.remove(trace_id)) if len(bucket) >= k else None
        if pushed_out is not None:
            await _report_pushed_out(ctx, node, *pushed_out, max_buckets)
        return merged

    node = Node(_join, name=name, policy=NodePolicy(validate="none"))
    return node


def _merged(items: list[Any]) -> Any:
    """What a complete bucket gives: one Message listing the payloads, or the items."""
    first = items[0]
    if isinstance(first, Message):
        payloads = [getattr(item, "payload", item) for item in items]
        return first.model_copy(update={"payload": payloads})
    return items


async def _report_pushed_out(
    ctx: object, node: Node, trace_id: str, dropped: int, max_buckets: int
) -> None:
    """Say that ``node`` dropped the bucket of ``trace_id``: a flow event, else a log."""
    facts = {"dropped": dropped, "reason": _MAX_BUCKETS, "max_buckets": max_buckets}
    # ``record_remote_event`` is the flow's public way to emit an event about a node; the
    # ``Runtime`` protocol that types ``ctx.runtime`` does not list it.
    emit = getattr(getattr(ctx, "runtime", None), "record_remote_event", None)
    if emit is not None:
        await emit(
            event=JOIN_BUCKET_DROPPED,
            node=node,
            context=ctx,
            trace_id=trace_id,
            latency_ms=None,
            level=logging.WARNING,
            extra=facts,
        )
    else:  # called outside a flow
        extra = {"event": JOIN_BUCKET_DROPPED, "node_name": node.name, "trace_id": trace_id}
        logger.warning(JOIN_BUCKET_DROPPED, extra={**extra, **facts})
