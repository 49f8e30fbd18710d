"""What ``stop()`` does after its tasks are gone: discard what is still queued, and say so."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._events import FLOE_DRAINED

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..node import Node
    from .context import Context
    from .endpoints import Endpoint
    from .events import EventSink
    from .floe import Floe

__all__ = ["drain"]


async def drain(
    floes: Sequence[Floe[Any]],
    contexts: Mapping[Node | Endpoint, Context],
    rookery: Context,
    buffer: Floe[Any],
    sink: EventSink,
    leftovers: list[Any],
) -> None:
    """Empty every floe and the Rookery buffer.

    One ``floe_drained`` event per non-empty floe (at its target) counts what was dropped;
    ``leftovers`` (items the roundtrip queues still held) and the Rookery's ``buffer`` are
    counted in one more at the ``rookery``.
    """
    leftovers.extend(buffer.clear())
    for floe in floes:
        dropped = floe.clear()
        if dropped:
            assert floe.target is not None
            await sink.emit(
                FLOE_DRAINED,
                contexts[floe.target],
                None,
                extra={"dropped": len(dropped), "source": getattr(floe.source, "name", None)},
            )
    if leftovers:
        await sink.emit(
            FLOE_DRAINED, rookery, None, extra={"dropped": len(leftovers), "source": None}
        )
