"""Prometheus metrics of a distributed worker, and ``/metrics`` + ``/healthz`` to serve them.

``WorkerCollector`` reads ``worker.health()`` when the registry is scraped, so it costs the
worker nothing between scrapes; its node calls are counted by a ``PrometheusMetrics`` among
the flow's middlewares, as in process. ``serve_worker_metrics`` puts both behind
``serve_metrics``, with the worker's health at ``/healthz``.

Labels are node names and health statuses only: never a URL, so never a credential.

Requires the ``prometheus`` extra: ``pip install 'penguiflow-runtime[prometheus]'``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final, final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

from ._server import serve_metrics
from .prometheus import PrometheusMetrics

if TYPE_CHECKING:
    from collections.abc import Iterator

    from prometheus_client.core import Metric

    from ..distributed.worker import Worker
    from ._server import MetricsServer

__all__ = ["WorkerCollector", "serve_worker_metrics"]

_STATUSES: Final = ("ok", "degraded", "failing")

_ENTRY_COUNTERS: Final = {
    "consumed": "Entries read from the node's streams",
    "acked": "Entries committed: outputs published and the input acknowledged",
    "fenced": "Commits refused because another worker had taken the entry over",
    "failed": "Entries left unfinished by a fault outside the node, for a take-over",
    "dead_lettered": "Entries moved to the node's dead-letter stream",
    "taken_over": "Entries taken over from workers presumed dead",
}
"""``NodeLoad`` counters exposed as ``worker_entries_<name>_total{node}``."""


@final
class WorkerCollector:
    """Collects a distributed worker's metrics from its ``health()`` snapshot.

    Metric names start with ``namespace``:

    - ``worker_running``: 1 while the worker serves;
    - ``worker_health{status}``: 1 for the current status (``ok``, ``degraded``, ``failing``);
    - ``worker_redis_connected``: 1 while its connection to Redis works;
    - ``worker_redis_reconnects_total``: times the connection came back after being lost;
    - ``worker_heartbeat_timestamp_seconds``: when its last heartbeat was written;
    - ``worker_concurrency{node}``, ``worker_in_flight{node}`` (node calls running) and
      ``worker_entries_held{node}`` (entries it owns: running, read ahead, waiting);
    - ``worker_entries_<what>_total{node}`` for ``consumed``, ``acked``, ``fenced``,
      ``failed``, ``dead_lettered`` and ``taken_over`` entries.

    Add it to a registry with ``registry.register(WorkerCollector(worker))``; a scrape from
    any thread is safe (``health()`` reads counters only).
    """

    def __init__(self, worker: Worker, namespace: str = "penguiflow") -> None:
        self._worker = worker
        self._prefix = f"{namespace}_worker_" if namespace else "worker_"

    def describe(self) -> list[Metric]:
        """Return the metric families without samples (so registering reads no health)."""
        return list(self._families().values())

    def collect(self) -> Iterator[Metric]:
        """Yield the metrics of a fresh health snapshot."""
        health = self._worker.health()
        families = self._families()
        families["running"].add_metric([], 1.0 if health.running else 0.0)
        for status in _STATUSES:
            families["health"].add_metric([status], 1.0 if health.status == status else 0.0)
        families["connected"].add_metric([], 1.0 if health.redis.connected else 0.0)
        families["reconnects"].add_metric([], float(health.redis.reconnects))
        if health.heartbeat_at is not None:
            families["heartbeat"].add_metric([], health.heartbeat_at)
        for node in health.nodes:
            labels = [node.name]
            families["concurrency"].add_metric(labels, float(node.concurrency))
            families["in_flight"].add_metric(labels, float(node.in_flight))
            families["held"].add_metric(labels, float(node.held))
            for what in _ENTRY_COUNTERS:
                families[what].add_metric(labels, float(getattr(node, what)))
        yield from families.values()

    def _families(self) -> dict[str, GaugeMetricFamily | CounterMetricFamily]:
        p = self._prefix
        node = ("node",)
        families: dict[str, GaugeMetricFamily | CounterMetricFamily] = {
            "running": GaugeMetricFamily(f"{p}running", "1 while the worker serves"),
            "health": GaugeMetricFamily(
                f"{p}health", "1 for the worker's current health status", labels=("status",)
            ),
            "connected": GaugeMetricFamily(
                f"{p}redis_connected", "1 while the connection to Redis works"
            ),
            "reconnects": CounterMetricFamily(
                f"{p}redis_reconnects", "Times the connection to Redis came back after a loss"
            ),
            "heartbeat": GaugeMetricFamily(
                f"{p}heartbeat_timestamp_seconds", "When the last heartbeat was written"
            ),
            "concurrency": GaugeMetricFamily(
                f"{p}concurrency", "Entries run at once, per node", labels=node
            ),
            "in_flight": GaugeMetricFamily(f"{p}in_flight", "Node calls running", labels=node),
            "held": GaugeMetricFamily(
                f"{p}entries_held", "Entries owned: running, read ahead or waiting", labels=node
            ),
        }
        for what, documentation in _ENTRY_COUNTERS.items():
            families[what] = CounterMetricFamily(f"{p}entries_{what}", documentation, labels=node)
        return families


async def serve_worker_metrics(
    worker: Worker,
    metrics: PrometheusMetrics | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 9464,
    namespace: str = "penguiflow",
) -> MetricsServer:
    """Serve a worker's ``GET /metrics`` and ``GET /healthz`` until the server is closed.

    ``/metrics`` has the node counters of ``metrics`` and a ``WorkerCollector``'s metrics;
    ``/healthz`` is ``worker.health()`` as JSON (503 when failing). Without ``metrics``, a
    new ``PrometheusMetrics`` (its own registry) is added to the flow's middlewares: call
    this before ``worker.run`` so that it sees the first node call. A ``metrics`` given
    should be among the flow's middlewares already; its registry gets the collector.

    Raises:
        OSError: the address cannot be resolved or bound.
        ValueError: the registry of ``metrics`` has a worker collector of this namespace.
    """
    if metrics is None:
        metrics = PrometheusMetrics(namespace=namespace)
        worker.flow.add_middleware(metrics)
    metrics.registry.register(WorkerCollector(worker, namespace))
    return await serve_metrics(worker, metrics, host=host, port=port)
