"""``FlowEvent``: the one record every observer of a flow receives (defined in ``_events``)."""

from ._events import FlowEvent as FlowEvent

__all__ = ["FlowEvent"]
