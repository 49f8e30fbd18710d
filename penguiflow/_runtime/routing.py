"""Routing a node's result (controller hops, final answers, plain results) to its next stop."""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

from ..types import WM, FinalAnswer, Message
from .constants import BUDGET_EXCEEDED_TEXT, DEADLINE_EXCEEDED_TEXT, TOKEN_BUDGET_EXCEEDED_TEXT
from .endpoints import ROOKERY

if TYPE_CHECKING:
    from ..node import Node
    from ..registry import ModelRegistry
    from .context import Context
    from .enqueue import Enqueuer
    from .floe import Floe
    from .traces import TraceRegistry

__all__ = ["CONTROL_CACHE", "Router", "is_control", "message_output_nodes", "warn_if_not_message"]

# isinstance() against a pydantic model class is slow for non-instances (the model metaclass
# runs its own instance check), and routing asks "is this payload a WM or a FinalAnswer?" at
# every hop. The answer depends on the payload's type only, so it is cached per type.
CONTROL_CACHE: dict[type, bool] = {WM: True, FinalAnswer: True}
"""``is_control``'s answer per payload type seen so far; hot paths read it inline."""
_CONTROL_CACHE_LIMIT = 4096


def is_control(payload: object) -> bool:
    """Return whether ``payload`` is a ``WM`` or a ``FinalAnswer`` (controller traffic)."""
    kind = type(payload)
    known = CONTROL_CACHE.get(kind)
    if known is None:
        known = issubclass(kind, (WM, FinalAnswer))
        if len(CONTROL_CACHE) < _CONTROL_CACHE_LIMIT:
            CONTROL_CACHE[kind] = known
    return known


def message_output_nodes(nodes: list[Node], registry: ModelRegistry | None) -> frozenset[Node]:
    """Return the nodes whose registered output model is a ``Message`` (for the warning)."""
    if registry is None:
        return frozenset()
    found = set()
    for node in nodes:
        try:
            _in_model, out_model = registry.models(node.name or node.node_id)
        except KeyError:
            continue
        if isinstance(out_model, type) and issubclass(out_model, Message):
            found.add(node)
    return frozenset(found)


def warn_if_not_message(node: Node, result: Any) -> None:
    """Warn that a node registered for Message outputs returned something else."""
    warnings.warn(
        f"Node '{node.name}' is registered for Message -> Message outputs but returned "
        f"{type(result).__name__}. Return a penguiflow.types.Message to preserve headers, "
        "trace_id, and meta.",
        RuntimeWarning,
        stacklevel=2,
    )


class Router:
    """Sends results onward: to successors, back to a controller node, or to the Rookery."""

    __slots__ = ("enqueuer", "fallback", "traces")

    def __init__(self, *, fallback: Floe[Any], enqueuer: Enqueuer, traces: TraceRegistry) -> None:
        self.fallback = (fallback,)
        """Where a delivery goes from a node with no Rookery floe: the first Rookery floe,
        else the Rookery's buffer (spec 7.8)."""
        self.enqueuer = enqueuer
        self.traces = traces

    async def route(self, node: Node, ctx: Context, incoming: Any, result: Any) -> None:
        """Route ``result`` of ``node`` for the item ``incoming``.

        Raises:
            KeyError: a controller hop needs a self-edge the node does not have.
        """
        if isinstance(result, Message) and is_control(result.payload):
            payload = result.payload
            if isinstance(payload, WM):
                await self._hop(node, ctx, incoming, result, payload)
            else:
                await self.deliver(ctx, result)
            return
        await ctx.emit(result)

    async def _hop(self, node: Node, ctx: Context, incoming: Any, result: Message, wm: WM) -> None:
        if result.deadline_s is not None and time.time() > result.deadline_s:
            await self.deliver(ctx, _final(result, DEADLINE_EXCEEDED_TEXT))
            return
        if wm.budget_tokens is not None and wm.tokens_used >= wm.budget_tokens:
            await self.deliver(ctx, _final(result, TOKEN_BUDGET_EXCEEDED_TEXT))
            return
        next_hops = wm.hops
        previous = incoming.payload if isinstance(incoming, Message) else None
        if isinstance(previous, WM) and wm.hops <= previous.hops:
            # The node did not count the hop itself; the runtime does.
            next_hops = previous.hops + 1
        if wm.budget_hops is not None and next_hops >= wm.budget_hops:
            await self.deliver(ctx, _final(result, BUDGET_EXCEEDED_TEXT))
            return
        prepared = result.model_copy(update={"payload": wm.model_copy(update={"hops": next_hops})})
        if wm.budget_hops is None and wm.budget_tokens is None:
            # Unbounded loops stream their progress to the caller.
            await self.deliver(ctx, prepared.model_copy(deep=True))
        await ctx.emit(prepared, to=[node])

    async def deliver(self, ctx: Context, item: Any) -> None:
        """Deliver ``item`` to the Rookery.

        It goes on ``ctx``'s Rookery floe, else the first Rookery floe, else into the Rookery
        buffer; counted and published like any enqueue (spec 7.8).
        """
        floe = ctx._outgoing.get(ROOKERY)
        floes = self.fallback if floe is None else (floe,)
        if not self.enqueuer.try_put(floes, item):
            await self.enqueuer.put(floes, item)
        if isinstance(item, Message) and is_control(item.payload) and isinstance(item.payload, WM):
            record = self.traces.records.get(item.trace_id)
            if record is not None:
                record.wm_hops = item.payload.hops


def _final(result: Message, text: str) -> Message:
    return result.model_copy(update={"payload": FinalAnswer(text=text)})
