"""Middlewares: async observers of every ``FlowEvent`` a flow emits, and a logging one.

A middleware is any ``async def (event) -> None``. The runtime awaits each one in registration
order for every event; a middleware that raises is logged as ``middleware_error`` by the runtime
and the flow carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol, TypeAlias

from ._events import NODE_ERROR, NODE_START, NODE_SUCCESS
from .metrics import FlowEvent

__all__ = ["Middleware", "FlowEvent", "log_flow_events", "LatencyCallback"]  # noqa: RUF022 - order fixed by the spec

#: Called as ``callback(event_type, latency_ms, event)`` for ``node_success`` and
#: ``node_error`` events that carry a latency.
LatencyCallback: TypeAlias = Callable[[str, float, FlowEvent], None]

_DEFAULT_LOGGER_NAME = "penguiflow.flow"
_CALLBACK_ERROR = "log_flow_events_latency_callback_error"


class Middleware(Protocol):
    """An async observer of flow events; any ``async def (event) -> None`` qualifies."""

    async def __call__(self, event: FlowEvent) -> None:
        """Observe one event.

        The runtime awaits this inline, so a slow middleware slows the flow down. If it is
        cancelled (the flow stops) the cancellation propagates.

        Raises:
            Exception: anything; the runtime logs it as ``middleware_error`` and carries on.
        """


def log_flow_events(
    logger: logging.Logger | None = None,
    *,
    start_level: int = logging.INFO,
    success_level: int = logging.INFO,
    error_level: int = logging.ERROR,
    latency_callback: LatencyCallback | None = None,
) -> Middleware:
    """Build a middleware that logs node starts, successes and errors.

    Only ``node_start``, ``node_success`` and ``node_error`` are handled; every other event
    (``node_retry``, ``node_failed``, cancellations...) is ignored. Each handled event is logged
    as ``logger.log(level, event_type, extra=event.to_payload())``; a ``node_error`` carrying a
    ``flow_error`` also gets ``extra["error_payload"]``.

    Args:
        logger: Where to log; defaults to the ``penguiflow.flow`` logger.
        start_level: Level for ``node_start``.
        success_level: Level for ``node_success``.
        error_level: Level for ``node_error``.
        latency_callback: Called with ``(event_type, latency_ms, event)`` for successes and
            errors that carry a latency. If it raises, the failure is logged with
            ``logger.exception("log_flow_events_latency_callback_error", ...)`` and swallowed.

    Returns:
        The middleware, ready for ``PenguiFlow(middlewares=[...])`` or ``add_middleware``.
    """
    log = logger if logger is not None else logging.getLogger(_DEFAULT_LOGGER_NAME)
    levels = {
        NODE_START: start_level,
        NODE_SUCCESS: success_level,
        NODE_ERROR: error_level,
    }

    async def _log_flow_event(event: FlowEvent) -> None:
        level = levels.get(event.event_type)
        if level is None:
            return
        payload = event.to_payload()
        if event.event_type == NODE_ERROR:
            error_payload = event.error_payload
            if error_payload is not None:
                payload["error_payload"] = dict(error_payload)
        log.log(level, event.event_type, extra=payload)
        if latency_callback is None or event.event_type == NODE_START or event.latency_ms is None:
            return
        try:
            latency_callback(event.event_type, float(event.latency_ms), event)
        except Exception:
            log.exception(
                _CALLBACK_ERROR,
                extra={
                    "event": _CALLBACK_ERROR,
                    "node_name": event.node_name,
                    "node_id": event.node_id,
                    "trace_id": event.trace_id,
                },
            )

    return _log_flow_event
