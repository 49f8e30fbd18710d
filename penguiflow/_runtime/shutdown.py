"""What ``stop()`` does after its tasks are gone: discard what is still queued, and say so."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .constants import FLOE_DRAINED
from .endpoints import ROOKERY

if TYPE_CHECKING:
    from .flow import PenguiFlow

__all__ = ["drain"]


async def drain(flow: PenguiFlow, leftovers: list[Any]) -> None:
    """Empty every floe and the Rookery buffer.

    One ``floe_drained`` event per non-empty floe (at its target) counts what was dropped;
    ``leftovers`` (items the roundtrip queues still held) and the buffer are counted in one
    more at the Rookery.
    """
    rookery = flow._contexts[ROOKERY]
    if rookery._buffer:
        leftovers.extend(rookery._buffer)
        rookery._buffer.clear()
    for floe in flow._floes:
        dropped = floe.queue.clear()
        if dropped:
            assert floe.target is not None
            await flow._events.emit(
                FLOE_DRAINED,
                flow._contexts[floe.target],
                None,
                extra={"dropped": len(dropped), "source": getattr(floe.source, "name", None)},
            )
    if leftovers:
        await flow._events.emit(
            FLOE_DRAINED, rookery, None, extra={"dropped": len(leftovers), "source": None}
        )
