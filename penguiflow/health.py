"""A flow's health: a cheap, typed snapshot for liveness and readiness probes.

``PenguiFlow.health()`` builds one synchronously from the runtime's live state; nothing here
touches the hot path.

Overall status, by rule:

- ``failing``: the flow is not running, a node has no live worker, a node's circuit
  breaker is open, or the state store's ``status`` is ``failing`` (its commits have failed
  for ``failing_after_s`` in a row; new traces are refused);
- ``degraded``: not failing, but the state store's commits are failing (retried), a
  breaker is half-open, a worker had to be restarted after a
  runtime fault, a floe is full (backpressure is holding producers), the results nobody has
  fetched fill the room kept for them, or as many roundtrips are live as the flow allows
  (``emit(trace_id=...)`` waits);
- ``ok``: otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["BreakerState", "FloeHealth", "FlowHealth", "HealthStatus", "NodeError", "NodeHealth"]

HealthStatus = Literal["ok", "degraded", "failing"]
BreakerState = Literal["closed", "open", "half_open"]


@dataclass(frozen=True, slots=True)
class NodeError:
    """The last final failure of a node."""

    code: str
    """The ``FlowError`` code, e.g. ``NODE_EXCEPTION``."""
    message: str
    """The ``FlowError`` message."""
    trace_id: str | None
    """The trace whose message failed."""
    ts: float
    """When it failed (epoch seconds)."""


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """One node's workers, breaker and last error."""

    name: str
    """The node's name."""
    workers: int
    """Workers the node runs (its ``NodePolicy.concurrency``)."""
    workers_alive: int
    """Workers whose task is running now."""
    restarts: int
    """Times a worker resumed after a fault of the runtime itself."""
    breaker: BreakerState | None
    """The circuit breaker's state, or None without a breaker."""
    last_error: NodeError | None
    """The node's last final failure, if any."""
    in_flight: int = 0
    """Items the node's workers are handling now (taken and not yet finished), at most
    ``workers``."""


@dataclass(frozen=True, slots=True)
class FloeHealth:
    """One floe's depth and capacity."""

    source: str
    """The producing node's or endpoint's name."""
    target: str
    """The consuming node's or endpoint's name."""
    depth: int
    """Items queued now."""
    capacity: int
    """The floe's bound; 0 means unbounded."""


@dataclass(frozen=True, slots=True)
class FlowHealth:
    """A snapshot of a flow's health; ``status`` follows the module's rule."""

    status: HealthStatus
    """``ok``, ``degraded`` or ``failing``."""
    running: bool
    """Whether the flow is running."""
    traces_in_flight: int
    """Traces with something pending."""
    nodes: tuple[NodeHealth, ...]
    """Every node, in graph order."""
    floes: tuple[FloeHealth, ...]
    """Every floe, in graph order."""
    results_waiting: int = 0
    """Results held for no caller in particular: for plain ``fetch()``, or of callers that
    went away (once trace-scoped fetching is on)."""
    results_capacity: int = 0
    """How many such results are held before producers wait (0: unbounded)."""
    roundtrips: int = 0
    """Traces subscribed by ``emit(trace_id=...)`` or ``fetch(trace_id=...)`` right now."""
    roundtrip_limit: int = 0
    """How many may be at once before ``emit(trace_id=...)`` waits (0: unbounded)."""
    store_status: HealthStatus | None = None
    """The state store's own ``status``, or None when it has none (or there is no store)."""
    store: str | None = None
    """The state store's ``describe()``, followed by its last commit error while its status
    is not ``ok``; None without a store."""
