"""What flows report: the event kinds, their log levels, and ``FlowEvent`` itself.

Both the engine (``penguiflow._runtime``) and the public faces (``metrics``, ``middlewares``,
``testkit``, ``observe``) import from here, so neither reaches into the other. Event names,
levels and the record's fields are fixed by the public contract.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

__all__ = [
    "CIRCUIT_CLOSED",
    "CIRCUIT_HALF_OPEN",
    "CIRCUIT_OPEN",
    "DEADLINE_SKIP",
    "EVENT_LEVELS",
    "FLOE_DRAINED",
    "NODE_CANCELLED",
    "NODE_ERROR",
    "NODE_FAILED",
    "NODE_RETRY",
    "NODE_START",
    "NODE_SUCCESS",
    "NODE_TIMEOUT",
    "NODE_TRACE_CANCELLED",
    "NO_EXTRA",
    "RESULTS_DROPPED",
    "STANDARD_PAYLOAD_FIELDS",
    "TRACE_CANCEL_DROP",
    "TRACE_CANCEL_FINISH",
    "TRACE_CANCEL_START",
    "WORKER_RESTARTED",
    "EventDraft",
    "FlowEvent",
    "new_event",
]

# Event kinds, as the contract names them.
NODE_START: Final = "node_start"
NODE_SUCCESS: Final = "node_success"
NODE_ERROR: Final = "node_error"
NODE_TIMEOUT: Final = "node_timeout"
NODE_RETRY: Final = "node_retry"
NODE_FAILED: Final = "node_failed"
NODE_CANCELLED: Final = "node_cancelled"
NODE_TRACE_CANCELLED: Final = "node_trace_cancelled"
DEADLINE_SKIP: Final = "deadline_skip"
TRACE_CANCEL_DROP: Final = "trace_cancel_drop"
TRACE_CANCEL_START: Final = "trace_cancel_start"
TRACE_CANCEL_FINISH: Final = "trace_cancel_finish"
# Beyond the contract: items discarded because the flow stopped with them still queued, and a
# worker restarted after a runtime fault.
FLOE_DRAINED: Final = "floe_drained"
WORKER_RESTARTED: Final = "worker_restarted"
# Results of a caller that went away, dropped (see ``_runtime.results``).
RESULTS_DROPPED: Final = "results_dropped"
# Circuit breaker transitions (opt-in per node).
CIRCUIT_OPEN: Final = "circuit_open"
CIRCUIT_HALF_OPEN: Final = "circuit_half_open"
CIRCUIT_CLOSED: Final = "circuit_closed"

EVENT_LEVELS: Final[Mapping[str, int]] = MappingProxyType(
    {
        NODE_START: logging.DEBUG,
        NODE_SUCCESS: logging.INFO,
        NODE_ERROR: logging.ERROR,
        NODE_TIMEOUT: logging.WARNING,
        NODE_RETRY: logging.INFO,
        NODE_FAILED: logging.ERROR,
        NODE_CANCELLED: logging.DEBUG,
        NODE_TRACE_CANCELLED: logging.INFO,
        DEADLINE_SKIP: logging.INFO,
        TRACE_CANCEL_DROP: logging.INFO,
        TRACE_CANCEL_START: logging.INFO,
        TRACE_CANCEL_FINISH: logging.INFO,
        FLOE_DRAINED: logging.WARNING,
        WORKER_RESTARTED: logging.ERROR,
        RESULTS_DROPPED: logging.WARNING,
        CIRCUIT_OPEN: logging.WARNING,
        CIRCUIT_HALF_OPEN: logging.INFO,
        CIRCUIT_CLOSED: logging.INFO,
    }
)
"""The level each kind is logged at on ``penguiflow.core``; other kinds log at INFO."""

NO_EXTRA: Final[Mapping[str, Any]] = MappingProxyType({})
"""An immutable empty ``extra``; events built with it skip the defensive copy."""


STANDARD_PAYLOAD_FIELDS: Final = frozenset(
    {
        "ts",
        "event",
        "node_name",
        "node_id",
        "trace_id",
        "latency_ms",
        "q_depth_in",
        "q_depth_out",
        "q_depth_total",
        "outgoing",
        "queue_maxsize",
        "attempt",
        "trace_inflight",
        "trace_cancelled",
        "trace_pending",
    }
)
"""The keys ``FlowEvent.to_payload`` fills from its own fields; the others come from ``extra``."""


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """Something that happened in a flow: a node attempt, a retry, a cancellation...

    Built only when something observes it (an enabled log level, a middleware, a state store).
    """

    event_type: str
    """What happened, e.g. ``node_start`` or ``trace_cancel_start``."""
    ts: float
    """Wall-clock time (epoch seconds)."""
    node_name: str | None
    """The node's or endpoint's name."""
    node_id: str | None
    """The node's id, or the endpoint's name."""
    trace_id: str | None
    """The trace concerned, if any."""
    attempt: int
    """The attempt number, from 0."""
    latency_ms: float | None
    """Elapsed time of the attempt, where it applies."""
    queue_depth_in: int
    """Items waiting on the node's incoming floes."""
    queue_depth_out: int
    """Items waiting on the node's outgoing floes."""
    outgoing_edges: int
    """Number of outgoing floes."""
    queue_maxsize: int
    """The flow's floe capacity."""
    trace_pending: int | None
    """Items of the trace still pending, or None when the event has no trace."""
    trace_inflight: int
    """Invocations of the trace running now."""
    trace_cancelled: bool
    """Whether the trace is cancelled."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Event-specific facts, read-only."""

    def __post_init__(self) -> None:
        # Frozen: a copy behind a read-only proxy, so no caller can mutate what observers see.
        # The runtime's shared empty proxy for events without extras is immutable already.
        if self.extra is not NO_EXTRA:
            object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @property
    def error_payload(self) -> Mapping[str, Any] | None:
        """The ``flow_error`` entry of ``extra`` as a read-only copy, if it is a mapping."""
        payload = self.extra.get("flow_error")
        if isinstance(payload, Mapping):
            return MappingProxyType(dict(payload))
        return None

    @property
    def queue_depth(self) -> int:
        """Incoming plus outgoing depth."""
        return self.queue_depth_in + self.queue_depth_out

    def to_payload(self) -> dict[str, Any]:
        """Return a fresh dict for logs and stores; ``extra`` is merged last."""
        payload: dict[str, Any] = {
            "ts": self.ts,
            "event": self.event_type,
            "node_name": self.node_name,
            "node_id": self.node_id,
            "trace_id": self.trace_id,
            "latency_ms": self.latency_ms,
            "q_depth_in": self.queue_depth_in,
            "q_depth_out": self.queue_depth_out,
            "q_depth_total": self.queue_depth,
            "outgoing": self.outgoing_edges,
            "queue_maxsize": self.queue_maxsize,
            "attempt": self.attempt,
            "trace_inflight": self.trace_inflight,
            "trace_cancelled": self.trace_cancelled,
        }
        if self.trace_pending is not None:
            payload["trace_pending"] = self.trace_pending
        payload.update(self.extra)
        return payload

    def metric_samples(self) -> dict[str, float]:
        """Return the numeric facts of the event as floats."""
        samples = {
            "queue_depth_in": float(self.queue_depth_in),
            "queue_depth_out": float(self.queue_depth_out),
            "queue_depth_total": float(self.queue_depth),
            "attempt": float(self.attempt),
            "trace_inflight": float(self.trace_inflight),
            "trace_cancelled": 1.0 if self.trace_cancelled else 0.0,
        }
        if self.trace_pending is not None:
            samples["trace_pending"] = float(self.trace_pending)
        if self.latency_ms is not None:
            samples["latency_ms"] = float(self.latency_ms)
        override = self.extra.get("latency_ms")
        if override is not None:
            with contextlib.suppress(TypeError, ValueError):
                samples["latency_ms"] = float(override)
        return samples

    def tag_values(self) -> dict[str, str]:
        """Return the event's labels as strings, for metric tags."""
        tags = {"event_type": self.event_type}
        for key in ("node_name", "node_id", "trace_id"):
            value = getattr(self, key)
            if value is not None:
                tags[key] = str(value)
        for key, value in self.extra.items():
            if isinstance(value, str | int | float | bool):
                tags[key] = str(value)
        return tags


class EventDraft(FlowEvent):
    """A ``FlowEvent`` being filled in, for the one place that builds events on a hot path.

    It adds no slots and takes ``object``'s own ``__init__``, ``__setattr__`` and
    ``__delattr__``, so that it is made without arguments, filled with plain slot stores (each
    field by name), and retyped cheaply with ``__class__ = FlowEvent``: CPython then compares
    the two classes' layouts, not their slot names. A frozen dataclass's constructor sets each
    field through ``object.__setattr__``, about 1.2 us for FlowEvent's 15 fields; a draft costs
    about a sixth of that. The retyped draft is a genuine, frozen ``FlowEvent``, equal to the
    one the constructor builds from the same values. Its ``extra`` must be ``NO_EXTRA`` or a
    read-only copy (``MappingProxyType(dict(extra))``), as ``__post_init__`` would make it.
    """

    __slots__ = ()
    __init__ = object.__init__
    __setattr__ = object.__setattr__
    __delattr__ = object.__delattr__


def new_event(
    *,
    event_type: str,
    ts: float,
    node_name: str | None,
    node_id: str | None,
    trace_id: str | None,
    attempt: int,
    latency_ms: float | None,
    queue_depth_in: int,
    queue_depth_out: int,
    outgoing_edges: int,
    queue_maxsize: int,
    trace_pending: int | None,
    trace_inflight: int,
    trace_cancelled: bool,
    extra: Mapping[str, Any] = NO_EXTRA,
) -> FlowEvent:
    """Build a ``FlowEvent`` through a draft, as the engine does, from named fields."""
    draft = EventDraft()
    draft.event_type = event_type
    draft.ts = ts
    draft.node_name = node_name
    draft.node_id = node_id
    draft.trace_id = trace_id
    draft.attempt = attempt
    draft.latency_ms = latency_ms
    draft.queue_depth_in = queue_depth_in
    draft.queue_depth_out = queue_depth_out
    draft.outgoing_edges = outgoing_edges
    draft.queue_maxsize = queue_maxsize
    draft.trace_pending = trace_pending
    draft.trace_inflight = trace_inflight
    draft.trace_cancelled = trace_cancelled
    draft.extra = extra if extra is NO_EXTRA else MappingProxyType(dict(extra))
    draft.__class__ = FlowEvent
    event: FlowEvent = draft
    return event
