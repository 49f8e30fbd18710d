"""Putting items on floes: the one place that pushes and counts (see the invariant in ``traces``).

Every enqueue of a flow (ingress, between nodes, to the Rookery, into the Rookery buffer) goes
through ``Enqueuer``, so that a trace's pending count is exactly what it has in transit:

- ``try_put``: the primitive. All floes or none, at once, without waiting; one count per floe.
  It declines (returns False, nothing done) when a floe is full, a bus is set or the item may
  need a Rookery tag, and the caller then takes ``put``.
- ``put``: the waiting path, floe by floe: tag, publish, push (waiting in line for room), and
  count in the step the item enters.
- ``put_nowait``: floe by floe without waiting, for ``emit_nowait``.

The worker's loop keeps one inlined copy of ``try_put`` for its commonest hop (one outgoing
floe, a Message of the item's own trace), marked there.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from ..node import Node
from ..types import Message
from .constants import logger
from .endpoints import ROOKERY, Endpoint

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ..bus import MessageBus
    from .floe import Floe
    from .tasks import TaskOwner
    from .traces import TraceRegistry

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
    """Return the trace an in-transit item is counted under (only string ids count)."""
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
    """Puts items on floes and counts them against their trace.

    Args:
        traces: Where items are counted.
        tag: Returns the tagged form of a trace-less Rookery-bound item, or None when it
            needs no tag; None while no trace-scoped fetch is active (see ``results``).
        owner: Owns the publish tasks that ``put_nowait`` schedules.
        bus: Where every enqueue is mirrored, if set.
    """

    __slots__ = ("bus", "count", "owner", "tagger", "traces")

    def __init__(
        self,
        *,
        traces: TraceRegistry,
        owner: TaskOwner,
        bus: MessageBus | None,
    ) -> None:
        self.traces = traces
        self.count = traces.count
        """``traces.count``, bound once: a producer that waits for room holds it, and a bound
        method made per put would be one more object per waiting producer."""
        self.owner = owner
        self.bus = bus
        self.tagger: Callable[[Any], Tagged | None] | None = None
        """Set while trace-scoped fetching is on: tags trace-less Rookery-bound items."""

    def try_put(self, floes: Sequence[Floe[Any]], item: Any) -> bool:
        """Push ``item`` onto every floe at once if all have room; else do nothing.

        Returns:
            Whether it did. False when a floe is full or named twice, a bus is set, or the
            item has no trace id while trace-scoped fetching is on (it may need a tag).
        """
        if self.bus is not None:
            return False
        for floe in floes:
            if not floe.has_room():
                return False
        if len(floes) > 1 and len(set(floes)) < len(floes):
            return False  # the same floe twice (``to=[b, b]``): one room check is not enough
        trace_id = getattr(item, "trace_id", None)
        if trace_id is None and self.tagger is not None:
            return False
        for floe in floes:
            floe.try_push(item)
        if floes and isinstance(trace_id, str):
            self.traces.count(trace_id, len(floes))
        return True

    def put(self, floes: Sequence[Floe[Any]], item: Any) -> Awaitable[None]:
        """Put ``item`` on each floe in turn, waiting in line for room where needed.

        With a bus, each enqueue is published first. Cancelled while waiting: floes already
        served keep the item (counted), the rest do not get it. Returns what to await: for
        one floe and no bus (an emit waiting at a full ingress floe), the floe's own push,
        so that a waiting producer holds one coroutine less.
        """
        if len(floes) == 1 and self.bus is None:
            floe = floes[0]
            trace_id = getattr(item, "trace_id", None)
            if isinstance(trace_id, str):  # a traced item needs no tag (see ``_prepare``)
                return floe.push(item, self.count, trace_id)
            entry, trace_id = self._prepare(floe, item)
            if trace_id is None:
                return floe.push(entry)
            return floe.push(entry, self.count, trace_id)
        return self._put_each(floes, item)

    async def _put_each(self, floes: Sequence[Floe[Any]], item: Any) -> None:
        for floe in floes:
            entry, trace_id = self._prepare(floe, item)
            if self.bus is not None:
                await self._publish(floe, entry)
            if trace_id is None:
                await floe.push(entry)
            else:
                await floe.push(entry, self.count, trace_id)

    def put_nowait(self, floes: Sequence[Floe[Any]], item: Any) -> None:
        """Put ``item`` on each floe in turn without waiting; a bus publish is scheduled.

        Raises:
            asyncio.QueueFull: a floe is full; floes served before it keep the item.
        """
        for floe in floes:
            if not floe.has_room():
                raise asyncio.QueueFull
            entry, trace_id = self._prepare(floe, item)
            if self.bus is not None:
                self.owner.spawn_publish(self._publish(floe, entry))
            floe.try_push(entry)
            if trace_id is not None:
                self.traces.count(trace_id)

    def _prepare(self, floe: Floe[Any], item: Any) -> tuple[Any, str | None]:
        """Tag a trace-less Rookery-bound item if needed; return it and its trace."""
        trace_id = getattr(item, "trace_id", None)
        if trace_id is None and self.tagger is not None and floe.target is ROOKERY:
            tagged = self.tagger(item)
            if tagged is not None:
                return tagged, tagged.trace_id
        return item, trace_id if isinstance(trace_id, str) else None

    async def _publish(self, floe: Floe[Any], item: Any) -> None:
        from ..bus import BusEnvelope

        assert self.bus is not None
        payload = item.item if isinstance(item, Tagged) else item
        src, dst = label_of(floe.source), label_of(floe.target)
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
