"""Building ``FlowEvent``s and dispatching them: log, then state store, then middlewares.

An event is built only when something would observe it; with no middleware, no store and its
log level disabled, emitting costs the ``wants`` check alone.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Final

from ..metrics import _NO_EXTRA, FlowEvent, _new_event
from ..node import Node
from .constants import EVENT_LEVELS, logger

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..state import StateStore
    from .context import Context
    from .endpoints import Endpoint
    from .traces import TraceRegistry

__all__ = ["NO_EXTRA", "OBSERVED", "ONE_MIDDLEWARE", "QUIET", "EventSink", "middleware_failed"]

#: The ``extra`` of events that have none: immutable, so ``FlowEvent`` need not copy it.
NO_EXTRA: Final[Mapping[str, Any]] = _NO_EXTRA

# The per-level answers Logger.isEnabledFor keeps (CPython's logging since 3.7); None if a
# logging implementation has no such cache, and then the method is called.
_LEVEL_CACHE: dict[int, bool] | None = getattr(logger, "_cache", None)

ExcInfo = BaseException | None

# What ``EventSink.observers`` answers.
QUIET: Final = 0
"""Nothing observes INFO or DEBUG events: they need not be built."""
ONE_MIDDLEWARE: Final = 1
"""One middleware alone observes INFO and DEBUG events: no store, INFO logging off."""
OBSERVED: Final = 2
"""Several middlewares, a store or logging observe them."""


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

    def observers(self) -> int:
        """Tell who observes the events of a node's ordinary handling of an item.

        Those are ``node_start`` (DEBUG) and ``node_success`` (INFO). Called per item on the
        hot path: ``Logger.isEnabledFor`` answers from the logger's own cache, which logging
        clears on every level change, so reading that cache first saves the method call.

        Returns:
            ``QUIET`` (nothing: INFO logging is off, so is DEBUG), ``ONE_MIDDLEWARE`` (one
            middleware, no store, INFO logging off) or ``OBSERVED`` (anything else).
        """
        if self.store is not None:
            return OBSERVED
        enabled = _LEVEL_CACHE.get(logging.INFO) if _LEVEL_CACHE is not None else None
        if enabled is None:
            enabled = logger.isEnabledFor(logging.INFO)
        if enabled and not logger.disabled:
            return OBSERVED
        count = len(self.middlewares)
        return QUIET if not count else ONE_MIDDLEWARE if count == 1 else OBSERVED

    def build(
        self,
        event_type: str,
        ctx: Context,
        trace_id: str | None,
        *,
        attempt: int = 0,
        latency_ms: float | None = None,
        extra: Mapping[str, Any] | None = None,
        owner: Node | Endpoint | None = None,
    ) -> FlowEvent:
        """Build an event about ``owner`` (default: ``ctx``'s), reading the trace's live counts.

        Queue depths and the outgoing count come from ``ctx``.
        """
        if owner is None:
            owner = ctx._owner
        node_id = owner.node_id if isinstance(owner, Node) else owner.name
        if trace_id is None:
            pending: int | None = None
            inflight = 0
            cancelled = False
        else:
            record = self.traces.records.get(trace_id)
            pending = record.pending if record is not None else 0
            inflight = record.inflight if record is not None else 0
            flag = self.traces.flag_of(trace_id)  # raw: an unread flag is unset
            cancelled = flag is not None and flag.is_set()
        return _new_event(
            event_type,
            time.time(),
            owner.name,
            node_id,
            trace_id,
            attempt,
            latency_ms,
            ctx.queue_depth_in(),
            ctx.queue_depth_out(),
            len(ctx._outgoing),
            self.maxsize,
            pending,
            inflight,
            cancelled,
            NO_EXTRA if extra is None else extra,
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
        owner: Node | Endpoint | None = None,
    ) -> None:
        """Build an event, if anything observes it, and deliver it in order.

        The log first, then the store, then each middleware in registration order.

        A failing store or middleware is logged and skipped; the flow carries on.
        """
        if level is None:
            level = EVENT_LEVELS.get(event_type, logging.INFO)
        if not self.wants(level):
            return
        event = self.build(
            event_type,
            ctx,
            trace_id,
            attempt=attempt,
            latency_ms=latency_ms,
            extra=extra,
            owner=owner,
        )
        await self.deliver(event, level, exc)

    async def deliver(
        self, event: FlowEvent, level: int | None = None, exc: ExcInfo = None
    ) -> None:
        """Deliver a built event: to the log, then the store, then each middleware in order.

        ``level`` defaults to the event type's. A failing store or middleware is logged and
        skipped; the flow carries on.
        """
        if level is None:
            level = EVENT_LEVELS.get(event.event_type, logging.INFO)
        if logger.isEnabledFor(level):
            exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
            logger.log(level, event.event_type, extra=event.to_payload(), exc_info=exc_info)
        if self.store is not None:
            await self._save(event)
        for middleware in list(self.middlewares):
            try:
                await middleware(event)
            except Exception as error:
                middleware_failed(middleware, event, error)

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


def middleware_failed(middleware: Any, event: FlowEvent, error: Exception) -> None:
    logger.error(
        "middleware_error",
        exc_info=error,
        extra={
            "event": "middleware_error",
            "event_type": event.event_type,
            "node_name": event.node_name,
            "trace_id": event.trace_id,
            "middleware": repr(middleware),
            "exception": repr(error),
        },
    )
