"""What ``stop()`` does after its tasks are gone: discard what is still queued, and say so.

Results already at the Rookery are kept for the next run (as upstream): only the floes into
nodes are emptied.
"""

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
    sink: EventSink,
) -> None:
    """Empty every floe into a node, saying how many items each one dropped.

    One ``floe_drained`` event per non-empty floe, at its target. A put still waiting for
    room (an ``emit`` from outside the flow) raises ``RuntimeError``; its item never enters.
    """
    stopped = RuntimeError("PenguiFlow stopped while a put waited for room")
    for floe in floes:
        floe.fail_producers(stopped)  # first, so that clearing lets none of them in
        dropped = floe.clear()
        if dropped:
            assert floe.target is not None
            await sink.emit(
                FLOE_DRAINED,
                contexts[floe.target],
                None,
                extra={"dropped": len(dropped), "source": getattr(floe.source, "name", None)},
            )
