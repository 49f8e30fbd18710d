"""Reusable flow shapes: bounded concurrent map, routers and a per-trace join.

The routers and the join are ordinary nodes (``validate="none"``) built around closures, so
each call gives an independent node with its own state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from pydantic import TypeAdapter

from .node import Node, NodePolicy
from .policies import PolicyLike, RoutingRequest, evaluate_policy
from .types import Message

if TYPE_CHECKING:
    from .core import Context

__all__ = ["join_k", "map_concurrent", "predicate_router", "union_router"]

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


def _drop_with_trace(ctx: Any, trace_id: str, buckets: dict[str, list[Any]]) -> None:
    """Have the running flow drop ``buckets[trace_id]`` when the trace ends."""
    traces = getattr(getattr(ctx, "runtime", None), "_traces", None)
    if traces is not None:
        traces.on_end(trace_id, lambda: buckets.pop(trace_id, None))


def join_k(name: str, k: int) -> Node:
    """Build a node that gathers ``k`` items per trace and emits them as one.

    Buckets are per trace id and private to this node; a bucket still incomplete when its trace
    ends (a branch failed, the trace was cancelled) or the flow stops is dropped with it. The
    node returns None until the k-th
    item of a trace arrives; then it clears that bucket and returns a copy of the first item
    whose payload is the list of payloads in arrival order (keeping the first item's trace id,
    headers and meta) when the first item is a ``Message``, else the list of items.

    Raises:
        ValueError: ``k <= 0``; or (inside the node) an item has no ``trace_id``.
    """
    if k <= 0:
        raise ValueError("k must be positive")
    buckets: dict[str, list[Any]] = {}

    async def _join(message: Any, ctx: Context) -> Any:
        trace_id = getattr(message, "trace_id", None)
        if trace_id is None:
            raise ValueError("join_k requires messages with trace_id")
        bucket = buckets.get(trace_id)
        if bucket is None:
            bucket = buckets[trace_id] = []
            _drop_with_trace(ctx, trace_id, buckets)
        bucket.append(message)
        if len(bucket) < k:
            return None
        del buckets[trace_id]
        first = bucket[0]
        if isinstance(first, Message):
            payloads = [getattr(item, "payload", item) for item in bucket]
            return first.model_copy(update={"payload": payloads})
        return bucket

    return Node(_join, name=name, policy=NodePolicy(validate="none"))
