"""Building ``FlowEvent``s and dispatching them: log, then state store, then middlewares.

An event is built only when something would observe it; with no middleware, no store and its
log level disabled, emitting costs the ``wants`` check alone.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..metrics import FlowEvent
from ..node import Node
from .constants import EVENT_LEVELS, logger

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..state import StateStore
    from .context import Context
    from .traces import TraceRegistry

__all__ = ["EventSink"]

# The per-level answers Logger.isEnabledFor keeps (CPython's logging since 3.7); None if a
# logging implementation has no such cache, and then the method is called.
_LEVEL_CACHE: dict[int, bool] | None = getattr(logger, "_cache", None)

ExcInfo = BaseException | None


class EventSink:
    """Turns runtime happenings into ``FlowEvent``s for a flow's observers."""

    __slots__ = ("maxsize", "middlewares", "store", "traces")

    def __init__(
        self,
        *,
        traces: TraceRegistry,
        middlewares: list[Any],
        store: StateStore | None,
        maxsize: int,
    ) -> None:
        self.traces = traces
        # The flow's own list: read fresh for every event, so appends by anyone take effect.
        self.middlewares = middlewares
        self.store = store
        self.maxsize = maxsize

    def wants(self, level: int) -> bool:
        """Return whether an event at ``level`` would be observed by anything."""
        return bool(self.middlewares) or self.store is not None or logger.isEnabledFor(level)

    def quiet(self) -> bool:
        """Return whether no event at all (INFO or below included) would be observed.

        Called per item on the hot path. ``Logger.isEnabledFor`` answers from the logger's
        own cache, which logging clears on every level change; reading that cache first
        saves the method call (INFO off implies DEBUG off).
        """
        if self.middlewares or self.store is not None:
            return False
        enabled = _LEVEL_CACHE.get(logging.INFO) if _LEVEL_CACHE is not None else None
        if enabled is None:
            enabled = logger.isEnabledFor(logging.INFO)
        return logger.disabled or not enabled

    def build(
        self,
        event_type: str,
        ctx: Context,
        trace_id: str | None,
        *,
        attempt: int = 0,
        latency_ms: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> FlowEvent:
        """Build an event about ``ctx``'s owner, reading the trace's live counts."""
        owner = ctx.owner
        node_id = owner.node_id if isinstance(owner, Node) else owner.name
        traces = self.traces
        if trace_id is None:
            pending: int | None = None
            inflight = 0
            cancelled = False
        else:
            pending = traces.pending(trace_id)
            inflight = traces.inflight(trace_id)
            cancelled = traces.is_cancelled(trace_id)
        return FlowEvent(
            event_type=event_type,
            ts=time.time(),
            node_name=owner.name,
            node_id=node_id,
            trace_id=trace_id,
            attempt=attempt,
            latency_ms=latency_ms,
            queue_depth_in=ctx.queue_depth_in(),
            queue_depth_out=ctx.queue_depth_out(),
            outgoing_edges=ctx.outgoing_count(),
            queue_maxsize=self.maxsize,
            trace_pending=pending,
            trace_inflight=inflight,
            trace_cancelled=cancelled,
            extra=extra if extra is not None else {},
        )

    async def emit(
        self,
        event_type: str,
        ctx: Context,
        trace_id: str | None,
        *,
        attempt: int = 0,
        latency_ms: float | None = None,
        extra: Mapping[str, Any] | None = None,
        exc: ExcInfo = None,
        level: int | None = None,
    ) -> None:
        """Build and dispatch an event if anything observes it."""
        if level is None:
            level = EVENT_LEVELS.get(event_type, logging.INFO)
        if not self.wants(level):
            return
        event = self.build(
            event_type, ctx, trace_id, attempt=attempt, latency_ms=latency_ms, extra=extra
        )
        await self.dispatch(event, level, exc)

    async def dispatch(self, event: FlowEvent, level: int, exc: ExcInfo = None) -> None:
        """Deliver ``event`` to the log, the store, then each middleware in order.

        A failing store or middleware is logged and skipped; the flow carries on.
        """
        if logger.isEnabledFor(level):
            exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
            logger.log(level, event.event_type, extra=event.to_payload(), exc_info=exc_info)
        if self.store is not None:
            await self._save(event)
        for middleware in list(self.middlewares):
            try:
                await middleware(event)
            except Exception as error:
                logger.exception(
                    "middleware_error",
                    extra={
                        "event": "middleware_error",
                        "event_type": event.event_type,
                        "node_name": event.node_name,
                        "trace_id": event.trace_id,
                        "middleware": repr(middleware),
                        "exception": repr(error),
                    },
                )

    async def _save(self, event: FlowEvent) -> None:
        from ..state import StoredEvent

        assert self.store is not None
        try:
            await self.store.save_event(StoredEvent.from_flow_event(event))
        except Exception as error:
            logger.exception(
                "state_store_save_failed",
                extra={
                    "event": "state_store_save_failed",
                    "trace_id": event.trace_id,
                    "kind": event.event_type,
                    "exception": repr(error),
                },
            )
