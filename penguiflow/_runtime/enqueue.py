"""Putting items on floes: trace accounting, Rookery tagging and bus mirroring in one place.

Every enqueue anywhere in a flow (ingress, between nodes, to the Rookery, into the Rookery
buffer) goes through ``Enqueuer`` so that ``pending(trace)`` counts exactly what is in transit.
The fast path (``try_put``) is synchronous: no bus, room on the floe.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..node import Node
from ..types import Message
from .constants import logger
from .endpoints import ROOKERY, Endpoint

if TYPE_CHECKING:
    from ..bus import MessageBus
    from .context import Context
    from .floe import Floe
    from .roundtrip import Roundtrip
    from .tasks import TaskOwner
    from .traces import TraceRecord, TraceRegistry

__all__ = ["Enqueuer", "Tagged", "label_of", "trace_of"]


class Tagged:
    """A Rookery-bound item without a trace id, tagged with the trace that produced it.

    Only made while that trace has a trace-scoped fetch subscribed; ``PenguiFlow.fetch``
    unwraps it.
    """

    __slots__ = ("item", "trace_id")

    def __init__(self, item: Any, trace_id: str) -> None:
        self.item = item
        self.trace_id = trace_id


def trace_of(item: Any) -> str | None:
    """Return the trace an in-transit item is counted under."""
    trace_id = getattr(item, "trace_id", None)
    return trace_id if isinstance(trace_id, str) else None


def label_of(end: Node | Endpoint | None) -> str | None:
    """Return the bus label of a node (name or id) or endpoint."""
    if end is None:
        return None
    if isinstance(end, Node):
        return end.name or end.node_id
    return end.name


class Enqueuer:
    """Puts items on floes and counts them against their trace."""

    __slots__ = ("bus", "owner", "roundtrip", "traces")

    def __init__(
        self,
        *,
        traces: TraceRegistry,
        roundtrip: Roundtrip,
        owner: TaskOwner,
        bus: MessageBus | None,
    ) -> None:
        self.traces = traces
        self.roundtrip = roundtrip
        self.owner = owner
        self.bus = bus

    def _prepare(self, floe: Floe | None, item: Any) -> tuple[Any, str | None]:
        trace_id = getattr(item, "trace_id", None)
        if trace_id is None and self.roundtrip.active and (floe is None or floe.target is ROOKERY):
            tagged = self.roundtrip.tag(item)
            if tagged is not None:
                return tagged, tagged.trace_id
        return item, trace_id if isinstance(trace_id, str) else None

    def try_put(self, floe: Floe, item: Any) -> bool:
        """Enqueue without waiting if there is room and no bus; return whether it did."""
        queue = floe.queue
        if self.bus is not None or not queue.has_room():
            return False
        item, trace_id = self._prepare(floe, item)
        queue.push(item)
        if trace_id is not None:
            self.traces.count(trace_id)
        return True

    def put_all_nowait(
        self,
        floes: tuple[Floe, ...],
        item: Any,
        held: TraceRecord | None = None,
        keep: bool = False,
    ) -> bool:
        """Put ``item`` on every floe at once if all have room; else put nothing.

        The per-hop fast path: one room check per floe, one trace count for all. Returns False
        (nothing done) when a floe is full, a bus is configured, or the item needs a Rookery
        tag; the caller then takes the waiting path.

        ``held`` is a handoff: the caller holds one pending count of ``item``'s trace (for the
        input it is processing) and gives it to ``item``. Only ``len(floes) - 1`` more are
        counted, and the caller must not finalize its input. The caller guarantees that
        ``floes`` is not empty and that ``held`` is the record of ``item``'s trace. With
        ``keep``, the caller keeps its count: all ``len(floes)`` are counted on ``held``.
        """
        if self.bus is not None:
            return False
        for floe in floes:
            queue = floe.queue
            if 0 < queue._maxsize <= len(queue._queue):  # inlined has_room(): once per hop
                return False
        if held is not None:  # the caller vouches for the trace: no lookup, no tag needed
            for floe in floes:
                floe.queue.push(item)
            held.pending += len(floes) if keep else len(floes) - 1
            return True
        trace_id = getattr(item, "trace_id", None)
        if trace_id is None and self.roundtrip.active:
            return False
        for floe in floes:
            floe.queue.push(item)
        if floes and isinstance(trace_id, str):
            self.traces.count(trace_id, len(floes))
        return True

    async def put_all(self, floes: tuple[Floe, ...], item: Any) -> None:
        """Put ``item`` on each floe in turn, waiting for room where needed.

        The waiting path: callers try ``put_all_nowait`` first. Cancelled while waiting:
        floes already served keep the item, the rest do not get it.
        """
        for floe in floes:
            if not self.try_put(floe, item):
                await self.put(floe, item)

    async def put(self, floe: Floe, item: Any) -> None:
        """Enqueue, waiting for room; publish to the bus first when one is configured.

        Cancelled while waiting: the item is not enqueued and not counted.
        """
        item, trace_id = self._prepare(floe, item)
        if self.bus is not None:
            await self._publish(floe.source, floe.target, item)
        await floe.queue.put(item)
        if trace_id is not None:
            self.traces.count(trace_id)

    def put_nowait(self, floe: Floe, item: Any) -> None:
        """Enqueue without waiting; the bus publish is scheduled, and awaited by ``stop``.

        Raises:
            asyncio.QueueFull: the floe is full.
        """
        queue = floe.queue
        if queue.full():
            raise asyncio.QueueFull
        item, trace_id = self._prepare(floe, item)
        if self.bus is not None:
            self.owner.spawn_publish(self._publish(floe.source, floe.target, item))
        queue.put_nowait(item)
        if trace_id is not None:
            self.traces.count(trace_id)

    async def append_buffer(self, ctx: Context, item: Any) -> None:
        """Append to a context's buffer (the Rookery's when it has no floes), counted."""
        item, trace_id = self._prepare(None, item)
        if self.bus is not None:
            await self._publish(None, ctx.owner, item)
        ctx._buffer_append(item)
        if trace_id is not None:
            self.traces.count(trace_id)

    async def _publish(
        self, source: Node | Endpoint | None, target: Node | Endpoint | None, item: Any
    ) -> None:
        from ..bus import BusEnvelope

        assert self.bus is not None
        payload = item.item if isinstance(item, Tagged) else item
        src, dst = label_of(source), label_of(target)
        is_message = isinstance(payload, Message)
        envelope = BusEnvelope(
            edge=f"{src or '*'}->{dst or '*'}",
            source=src,
            target=dst,
            trace_id=trace_of(item),
            payload=payload,
            headers=payload.headers.model_dump() if is_message else None,
            meta=dict(payload.meta) if is_message else None,
        )
        try:
            await self.bus.publish(envelope)
        except Exception as error:
            logger.exception(
                "message_bus_publish_failed",
                extra={
                    "event": "message_bus_publish_failed",
                    "edge": envelope.edge,
                    "trace_id": envelope.trace_id,
                    "exception": repr(error),
                },
            )
