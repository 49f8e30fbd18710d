"""Prometheus metrics for a flow: event counters, node latencies and scrape-time gauges.

``PrometheusMetrics`` is a middleware. An event costs one dict lookup on its type and, for the
node events that count, an increment or two on children cached per node: no label resolution,
no string formatting. Gauges (floe depths, traces in flight, workers, breaker states) cost
nothing per event: a collector reads them from ``flow.health()`` when the registry is scraped.

``serve_metrics`` (from ``_server``) exposes the registry and ``flow.health()`` over HTTP.

Requires the ``prometheus`` extra: ``pip install 'penguiflow-runtime[prometheus]'``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, final

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "penguiflow.observe.prometheus needs prometheus-client: "
        "pip install 'penguiflow-runtime[prometheus]'"
    ) from exc

from .. import _events as events
from ..errors import FlowErrorCode
from ._health_collector import HealthCollector
from ._server import MetricsServer, serve_metrics

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..core import PenguiFlow
    from ..metrics import FlowEvent

__all__ = ["DEFAULT_LATENCY_BUCKETS", "MetricsServer", "PrometheusMetrics", "serve_metrics"]

DEFAULT_LATENCY_BUCKETS: Final[tuple[float, ...]] = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)
"""Latency buckets in seconds: from in-memory steps to multi-minute model or tool calls."""

_BREAKER_STATES: Final = {
    events.CIRCUIT_OPEN: "open",
    events.CIRCUIT_HALF_OPEN: "half_open",
    events.CIRCUIT_CLOSED: "closed",
}
"""Breaker transition event -> the state it enters (``health.BreakerState``)."""

_REJECTED: Final = FlowErrorCode.CIRCUIT_OPEN.value


@final
class _NodeSeries:
    """One node's hot-path metric children, resolved once so events skip ``labels()``."""

    __slots__ = (
        "cancelled",
        "error",
        "failed",
        "latency",
        "rejected",
        "retries",
        "success",
        "timeout",
        "timeouts",
    )

    def __init__(self, owner: PrometheusMetrics, node: str) -> None:
        outcomes = owner.invocations
        self.success = outcomes.labels(node, "success")
        self.error = outcomes.labels(node, "error")
        self.timeout = outcomes.labels(node, "timeout")
        self.failed = outcomes.labels(node, "failed")
        self.rejected = outcomes.labels(node, "rejected")
        self.cancelled = outcomes.labels(node, "cancelled")
        self.retries = owner.retries.labels(node)
        self.timeouts = owner.timeouts.labels(node)
        self.latency = owner.latency.labels(node)


@final
class PrometheusMetrics:
    """A middleware that counts a flow's events into ``prometheus_client`` metrics.

    Add it with ``flow.add_middleware(metrics)`` or ``create(..., middlewares=[metrics])``.
    Metric names start with ``namespace`` (``penguiflow_`` by default):

    - ``node_invocations_total{node, outcome}``: ``success``, ``error`` and ``timeout`` count
      attempts; ``failed`` counts messages whose retries ran out, ``rejected`` those an open
      circuit breaker turned away, ``cancelled`` invocations stopped by a trace cancel;
    - ``node_retries_total{node}``, ``node_timeouts_total{node}`` (attempts that timed out,
      the same number as ``outcome="timeout"``, for simple alert rules);
    - ``node_latency_seconds{node}``: histogram of attempt latency, successful or not;
    - ``trace_cancellations_total``, ``trace_cancel_drops_total{node}`` (items dropped
      because their trace was cancelled), ``deadline_skips_total{node}``;
    - ``breaker_transitions_total{node, state}``, ``worker_restarts_total{node}``,
      ``floe_drained_items_total{node}`` (items discarded by ``stop()``).

    With ``flow`` given, the registry also gets gauges read from ``flow.health()`` at scrape
    time (see ``HealthCollector``). Scraping from another thread is safe: the snapshot is
    taken on the flow's event loop.

    Each instance registers its metrics once, in ``registry``: by default a private
    ``CollectorRegistry`` (``metrics.registry``), so several instances never clash; pass
    ``prometheus_client.REGISTRY`` to join the process-wide one, which then holds one
    instance per namespace.

    Raises:
        ValueError: ``registry`` already has metrics of these names (same namespace).
    """

    __slots__ = (
        "_handlers",
        "_series",
        "breaker_transitions",
        "deadline_skips",
        "drained",
        "flow",
        "invocations",
        "latency",
        "registry",
        "retries",
        "timeouts",
        "trace_cancel_drops",
        "trace_cancellations",
        "worker_restarts",
    )

    def __init__(
        self,
        flow: PenguiFlow | None = None,
        *,
        registry: CollectorRegistry | None = None,
        namespace: str = "penguiflow",
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        """Where the metrics are registered; what ``serve_metrics`` exposes."""
        self.flow = flow
        """The flow whose health the gauges read, if any."""
        reg, ns = self.registry, namespace
        self.invocations = Counter(
            "node_invocations",
            "Node attempts (success, error, timeout) and final outcomes (failed, rejected, "
            "cancelled)",
            ("node", "outcome"),
            namespace=ns,
            registry=reg,
        )
        self.retries = Counter(
            "node_retries", "Retries scheduled", ("node",), namespace=ns, registry=reg
        )
        self.timeouts = Counter(
            "node_timeouts", "Attempts that timed out", ("node",), namespace=ns, registry=reg
        )
        self.latency = Histogram(
            "node_latency_seconds",
            "Latency of node attempts, successful or not",
            ("node",),
            namespace=ns,
            registry=reg,
            buckets=tuple(buckets),
        )
        self.trace_cancellations = Counter(
            "trace_cancellations", "Traces cancelled", namespace=ns, registry=reg
        )
        self.trace_cancel_drops = Counter(
            "trace_cancel_drops",
            "Items dropped because their trace was cancelled",
            ("node",),
            namespace=ns,
            registry=reg,
        )
        self.deadline_skips = Counter(
            "deadline_skips",
            "Messages past their deadline, answered without running the node",
            ("node",),
            namespace=ns,
            registry=reg,
        )
        self.breaker_transitions = Counter(
            "breaker_transitions",
            "Circuit breaker transitions, by the state entered",
            ("node", "state"),
            namespace=ns,
            registry=reg,
        )
        self.worker_restarts = Counter(
            "worker_restarts",
            "Workers resumed after a fault of the runtime",
            ("node",),
            namespace=ns,
            registry=reg,
        )
        self.drained = Counter(
            "floe_drained_items",
            "Items still queued when the flow stopped, discarded",
            ("node",),
            namespace=ns,
            registry=reg,
        )
        if flow is not None:
            reg.register(HealthCollector(flow, namespace))
        self._series: dict[str, _NodeSeries] = {}
        self._handlers: dict[str, Callable[[FlowEvent], None]] = {
            events.NODE_SUCCESS: self._on_success,
            events.NODE_ERROR: self._on_error,
            events.NODE_TIMEOUT: self._on_timeout,
            events.NODE_RETRY: self._on_retry,
            events.NODE_FAILED: self._on_failed,
            events.NODE_TRACE_CANCELLED: self._on_trace_cancelled,
            events.TRACE_CANCEL_START: self._on_cancel_start,
            events.TRACE_CANCEL_DROP: self._on_cancel_drop,
            events.DEADLINE_SKIP: self._on_deadline_skip,
            events.WORKER_RESTARTED: self._on_worker_restart,
            events.FLOE_DRAINED: self._on_drained,
            events.CIRCUIT_OPEN: self._on_breaker,
            events.CIRCUIT_HALF_OPEN: self._on_breaker,
            events.CIRCUIT_CLOSED: self._on_breaker,
        }

    async def __call__(self, event: FlowEvent) -> None:
        """Count ``event``; events that no metric counts (``node_start``...) are ignored."""
        handler = self._handlers.get(event.event_type)
        if handler is not None:
            handler(event)

    def _series_of(self, event: FlowEvent) -> _NodeSeries:
        node = event.node_name or ""
        series = self._series.get(node)
        if series is None:
            # First event of this node: every outcome series starts at 0, so rates and
            # ratios exist before the first failure does.
            series = self._series[node] = _NodeSeries(self, node)
        return series

    def _on_success(self, event: FlowEvent) -> None:
        series = self._series_of(event)
        series.success.inc()
        if event.latency_ms is not None:
            series.latency.observe(event.latency_ms / 1000.0)

    def _on_error(self, event: FlowEvent) -> None:
        series = self._series_of(event)
        series.error.inc()
        if event.latency_ms is not None:
            series.latency.observe(event.latency_ms / 1000.0)

    def _on_timeout(self, event: FlowEvent) -> None:
        series = self._series_of(event)
        series.timeout.inc()
        series.timeouts.inc()
        if event.latency_ms is not None:
            series.latency.observe(event.latency_ms / 1000.0)

    def _on_retry(self, event: FlowEvent) -> None:
        self._series_of(event).retries.inc()

    def _on_failed(self, event: FlowEvent) -> None:
        series = self._series_of(event)
        error = event.extra.get("flow_error")
        rejected = isinstance(error, Mapping) and error.get("code") == _REJECTED
        (series.rejected if rejected else series.failed).inc()

    def _on_trace_cancelled(self, event: FlowEvent) -> None:
        self._series_of(event).cancelled.inc()

    # Rare events: resolving the label child on the spot costs nothing that matters.

    def _on_cancel_start(self, event: FlowEvent) -> None:
        self.trace_cancellations.inc()

    def _on_cancel_drop(self, event: FlowEvent) -> None:
        self.trace_cancel_drops.labels(event.node_name or "").inc()

    def _on_deadline_skip(self, event: FlowEvent) -> None:
        self.deadline_skips.labels(event.node_name or "").inc()

    def _on_worker_restart(self, event: FlowEvent) -> None:
        self.worker_restarts.labels(event.node_name or "").inc()

    def _on_drained(self, event: FlowEvent) -> None:
        dropped = event.extra.get("dropped")
        if isinstance(dropped, int) and dropped > 0:
            self.drained.labels(event.node_name or "").inc(dropped)

    def _on_breaker(self, event: FlowEvent) -> None:
        state = _BREAKER_STATES[event.event_type]
        self.breaker_transitions.labels(event.node_name or "", state).inc()
