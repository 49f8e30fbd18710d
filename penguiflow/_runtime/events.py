"""Building ``FlowEvent``s and dispatching them: log, then state store, then middlewares.

An event is built only when something would observe it; with no middleware, no store and its
log level disabled, emitting costs the ``wants`` check alone. Every event about a node or an
endpoint is built by that owner's ``EventTemplate``, which holds what all its events share;
the worker's loop and ``EventSink.emit`` use the same template.
"""

from __future__ import annotations

import enum
import logging
import time
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Final

from .._events import (
    EVENT_LEVELS,
    NO_EXTRA,
    NODE_START,
    NODE_SUCCESS,
    EventDraft,
    FlowEvent,
)
from ..node import Node
from .constants import logger

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..state import StateStore
    from .context import Context
    from .endpoints import Endpoint
    from .traces import TraceRecord, TraceRegistry

__all__ = ["EventSink", "EventTemplate", "Observers", "middleware_failed"]

# The per-level answers Logger.isEnabledFor keeps (CPython's logging since 3.7); None if a
# logging implementation has no such cache, and then the method is called.
_LEVEL_CACHE: dict[int, bool] | None = getattr(logger, "_cache", None)

ExcInfo = BaseException | None

# An event's log message: its type, then the node, trace and attempt, so that a plain
# ``logging.basicConfig()`` line says which node and trace it is about (the record's
# ``event``, ``node_name``, ``trace_id``... attributes carry the same facts for formatters).
_LOG_LINE: Final = "%s node=%s trace=%s attempt=%s"


class Observers(enum.IntEnum):
    """Who observes the events of a node's ordinary handling of an item (``observers``)."""

    NONE = 0
    """Nothing observes INFO or DEBUG events: they need not be built."""
    ONE_MIDDLEWARE = 1
    """One middleware alone observes them: no store, INFO logging off."""
    SEVERAL = 2
    """Several middlewares, a store or logging observe them."""


_NONE: Final = Observers.NONE
_ONE: Final = Observers.ONE_MIDDLEWARE
_SEVERAL: Final = Observers.SEVERAL


class EventTemplate:
    """What every event about one node or endpoint shares; builds them.

    Depths and the outgoing count are read from the owner's context at build time, the trace
    counts from the trace's record.
    """

    __slots__ = ("ctx", "maxsize", "name", "node_id", "traces")

    def __init__(
        self, owner: Node | Endpoint, ctx: Context, traces: TraceRegistry, maxsize: int
    ) -> None:
        self.ctx = ctx
        self.traces = traces
        self.maxsize = maxsize
        self.name = owner.name
        self.node_id = owner.node_id if isinstance(owner, Node) else owner.name

    def build(
        self,
        event_type: str,
        trace_id: str | None,
        record: TraceRecord | None,
        attempt: int = 0,
        latency_ms: float | None = None,
        extra: Mapping[str, Any] = NO_EXTRA,
    ) -> FlowEvent:
        """Build an event; ``record`` is the live record of ``trace_id``, None if it has none.

        ``extra`` must be ``NO_EXTRA`` or a mapping this call may copy.
        """
        # The context's deques are read directly (once per event, on the hot path of an
        # observed flow): one floe each way is the common case, and its length is the depth.
        ctx = self.ctx
        ins, outs = ctx._in_deques, ctx._out_deques
        draft = EventDraft()
        draft.event_type = event_type
        draft.ts = time.time()
        draft.node_name = self.name
        draft.node_id = self.node_id
        draft.trace_id = trace_id
        draft.attempt = attempt
        draft.latency_ms = latency_ms
        draft.queue_depth_in = len(ins[0]) if len(ins) == 1 else sum(map(len, ins))
        draft.queue_depth_out = len(outs[0]) if len(outs) == 1 else sum(map(len, outs))
        draft.outgoing_edges = len(outs)
        draft.queue_maxsize = self.maxsize
        if trace_id is None:
            draft.trace_pending = None
            draft.trace_inflight = 0
            draft.trace_cancelled = False
        else:
            traces = self.traces
            draft.trace_pending = record.pending if record is not None else 0
            draft.trace_inflight = record.inflight if record is not None else 0
            flag = traces.flag_of(trace_id) if traces.flags.holds_events else None
            draft.trace_cancelled = flag is not None and flag.is_set()
        draft.extra = extra if extra is NO_EXTRA else MappingProxyType(dict(extra))
        draft.__class__ = FlowEvent
        event: FlowEvent = draft
        return event


class EventSink:
    """Turns runtime happenings into ``FlowEvent``s for a flow's observers."""

    __slots__ = ("hot_saved", "kinds", "maxsize", "middlewares", "saving", "templates", "traces")

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
        # A store keeps the event kinds it names in ``event_kinds`` (penguiflow's stores do;
        # None, or no such attribute: all of them). ``saving`` is the store when it keeps
        # any, so that a store keeping none costs nothing per event.
        kinds: frozenset[str] | None = getattr(store, "event_kinds", None)
        self.kinds = kinds
        self.saving = store if store is not None and kinds != frozenset() else None
        # Whether the store keeps the events of a node's ordinary handling of an item.
        self.hot_saved = self.saving is not None and (
            kinds is None or bool(kinds & {NODE_START, NODE_SUCCESS})
        )
        self.maxsize = maxsize
        self.templates: dict[tuple[Node | Endpoint, Context], EventTemplate] = {}

    def template(self, owner: Node | Endpoint, ctx: Context) -> EventTemplate:
        """Return the template of events about ``owner`` read from ``ctx``.

        Templates of the flow's own contexts are kept (see ``keep``); others (a context a
        caller made for ``record_remote_event``) are built for the one event.
        """
        found = self.templates.get((owner, ctx))
        if found is None:
            return EventTemplate(owner, ctx, self.traces, self.maxsize)
        return found

    def keep(self, owner: Node | Endpoint, ctx: Context) -> EventTemplate:
        """Build and keep the template of one of the flow's own contexts."""
        found = self.templates[owner, ctx] = EventTemplate(owner, ctx, self.traces, self.maxsize)
        return found

    def wants(self, level: int) -> bool:
        """Return whether an event at ``level`` would be observed by anything."""
        return bool(self.middlewares) or self.saving is not None or logger.isEnabledFor(level)

    def observers(self) -> Observers:
        """Tell who observes ``node_start`` (DEBUG) and ``node_success`` (INFO) events.

        Called per item on the hot path: ``Logger.isEnabledFor`` answers from the logger's own
        cache, which logging clears on every level change, so reading that cache first saves
        the method call.
        """
        if self.hot_saved:
            return _SEVERAL
        enabled = _LEVEL_CACHE.get(logging.INFO) if _LEVEL_CACHE is not None else None
        if enabled is None:
            enabled = logger.isEnabledFor(logging.INFO)
        if enabled and not logger.disabled:
            return _SEVERAL
        count = len(self.middlewares)
        return _NONE if not count else _ONE if count == 1 else _SEVERAL

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
        """Build an event about ``owner`` (default: ``ctx``'s), if anything observes it.

        Then deliver it: the log first, then the store, then each middleware in order. A
        failing store or middleware is logged and skipped; the flow carries on.
        """
        if level is None:
            level = EVENT_LEVELS.get(event_type, logging.INFO)
        if not self.wants(level):
            return
        template = self.template(owner if owner is not None else ctx.owner, ctx)
        record = self.traces.records.get(trace_id) if trace_id is not None else None
        event = template.build(
            event_type,
            trace_id,
            record,
            attempt,
            latency_ms,
            NO_EXTRA if extra is None else extra,
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
            logger.log(
                level,
                _LOG_LINE,
                event.event_type,
                event.node_name,
                event.trace_id,
                event.attempt,
                extra=event.to_payload(),
                exc_info=exc_info,
            )
        if self.saving is not None and (self.kinds is None or event.event_type in self.kinds):
            await self._save(event)
        for middleware in list(self.middlewares):
            try:
                await middleware(event)
            except Exception as error:
                middleware_failed(middleware, event, error)

    async def _save(self, event: FlowEvent) -> None:
        from ..state import StoredEvent

        assert self.saving is not None
        try:
            await self.saving.save_event(StoredEvent.from_flow_event(event))
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
    """Log a middleware's failure; the flow carries on."""
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
