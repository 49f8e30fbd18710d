"""Optional observers of a flow: Prometheus metrics and OpenTelemetry spans.

Both are middlewares, so they cost nothing unless added to a flow. Their dependencies are
optional extras and this package imports none of them: the names below load their module on
first access, and that module says which extra to install if its dependency is missing.

<<<<<<< HEAD
- ``PrometheusMetrics``, ``serve_metrics``, ``MetricsServer``: ``pip install
  'penguiflow-runtime[prometheus]'`` (``prometheus-client``).
- ``OpenTelemetryTracing``: ``pip install 'penguiflow-runtime[otel]'`` (``opentelemetry-api``).
=======
- ``PrometheusMetrics``, ``serve_metrics``, ``MetricsServer``, and for a distributed
  worker ``WorkerCollector`` and ``serve_worker_metrics``: ``pip install
  'penguiflow-runtime[prometheus]'`` (``prometheus-client``).
- ``OpenTelemetryTracing``: ``pip install 'penguiflow-runtime[otel]'`` (``opentelemetry-api``).
>>>>>>> redobs
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._server import MetricsServer as MetricsServer
    from ._server import serve_metrics as serve_metrics
    from ._worker_metrics import WorkerCollector as WorkerCollector
    from ._worker_metrics import serve_worker_metrics as serve_worker_metrics
    from .prometheus import PrometheusMetrics as PrometheusMetrics
    from .tracing import OpenTelemetryTracing as OpenTelemetryTracing

__all__ = [
    "MetricsServer",
    "OpenTelemetryTracing",
    "PrometheusMetrics",
    "WorkerCollector",
    "serve_metrics",
    "serve_worker_metrics",
]

_HOMES = {
    "MetricsServer": "prometheus",
    "PrometheusMetrics": "prometheus",
    "serve_metrics": "prometheus",
    "OpenTelemetryTracing": "tracing",
    "WorkerCollector": "_worker_metrics",
    "serve_worker_metrics": "_worker_metrics",
}


def __getattr__(name: str) -> object:
    """Import the module that defines ``name`` on first access (PEP 562).

    Raises:
        AttributeError: ``name`` is not one of this package's exports.
        ImportError: the optional dependency of its module is not installed.
    """
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value: object = getattr(importlib.import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value
