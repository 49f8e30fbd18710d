"""The ``MessageBus`` protocol: where a flow mirrors every enqueue, for outside observers.

A flow built with ``message_bus=`` publishes a ``BusEnvelope`` for each item it puts on a
floe (ingress and Rookery included). ``emit`` awaits the publish before enqueueing; a failure
is logged as ``message_bus_publish_failed`` and the flow carries on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["BusEnvelope", "MessageBus"]


@dataclass(slots=True)
class BusEnvelope:
    """One enqueue, as published on the bus."""

    edge: str
    """``"<source>-><target>"``, with ``*`` for a missing end."""
    source: str | None
    """The producing node's name (or id), ``"OpenSea"`` or ``"Rookery"``."""
    target: str | None
    """The receiving node's name (or id), ``"OpenSea"`` or ``"Rookery"``."""
    trace_id: str | None
    """The item's trace, or None."""
    # The item itself: user data of any shape.
    payload: Any
    """The enqueued item, not copied."""
    headers: Mapping[str, Any] | None
    """``headers.model_dump()`` for a ``Message``, else None."""
    meta: Mapping[str, Any] | None
    """A copy of ``meta`` for a ``Message``, else None."""


class MessageBus(Protocol):
    """A sink for envelopes; implement ``publish`` structurally or by subclassing."""

    async def publish(self, envelope: BusEnvelope) -> None:
        """Publish one envelope.

        The flow waits for this before enqueueing when called from ``emit``; if the flow
        stops meanwhile the call is cancelled.

        Raises:
            Exception: anything; the flow logs ``message_bus_publish_failed`` and carries on.
        """
        raise NotImplementedError
