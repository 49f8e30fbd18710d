"""OpenTelemetry spans for a flow: one span per node attempt, nested across subflows.

Design note (parenting): the runtime awaits middlewares inside the worker task that runs the
node, so at ``node_start`` the new span's context is attached to that task's current OTel
context, and detached at the attempt's end. A subflow started by the node
(``ctx.call_playbook``) creates its workers inside the invocation, and a new task copies the
current contextvars, so the subflow's spans find the calling node's span as their parent.

A detach token belongs to the context it was attached in: it is used only by the task that
attached it. An attempt that ends in another task just ends its span; its token is kept and
detached the next time the attaching task delivers an event, so that task's next span does
not nest under the ended one.

Requires the ``otel`` extra: ``pip install 'penguiflow-runtime[otel]'``.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, final

try:
    from opentelemetry import context as otel_context
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "penguiflow.observe.tracing needs opentelemetry-api: pip install 'penguiflow-runtime[otel]'"
    ) from exc

from .. import _events as events

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context as OtelContext
    from opentelemetry.trace import Span, Tracer

    from ..metrics import FlowEvent

__all__ = ["OpenTelemetryTracing"]

SPAN_PREFIX: Final = "penguiflow.node "
"""Spans are named ``f"penguiflow.node {node_name}"``."""

_ATTEMPT_ENDS: Final = {
    events.NODE_SUCCESS: "success",
    events.NODE_ERROR: "error",
    events.NODE_TIMEOUT: "timeout",
}
"""Events that end the span of their very attempt, and the outcome they record."""

_LATE_ENDS: Final = {
    events.NODE_TRACE_CANCELLED: "cancelled",
    events.NODE_FAILED: "error",
}
"""Events that end a span still open for their trace and node, whatever its attempt (a trace
cancel is reported with attempt 0; a final failure normally finds its span already ended)."""


@final
class _OpenSpan:
    """A started span, and where its context was attached."""

    __slots__ = ("attempt", "span", "task", "token")

    def __init__(
        self, span: Span, attempt: int, task: asyncio.Task[object] | None, token: Token[OtelContext]
    ) -> None:
        self.span = span
        self.attempt = attempt
        self.task = task
        self.token = token


@final
class OpenTelemetryTracing:
    """A middleware that records one OpenTelemetry span per node attempt.

    Spans start at ``node_start`` and end at ``node_success``, ``node_error`` or
    ``node_timeout``; a span still open when its trace is cancelled (``node_trace_cancelled``),
    its message fails for good (``node_failed``) or its worker stops (``node_cancelled``) ends
    then. Each span is named ``penguiflow.node <name>`` and carries ``penguiflow.trace_id``
    (when the message has one), ``penguiflow.node``, ``penguiflow.node_id``,
    ``penguiflow.attempt`` and ``penguiflow.outcome`` (``success``, ``error``, ``timeout`` or
    ``cancelled``). Failed attempts get an ERROR status and an ``exception`` event with the
    exception's text.

    A span's parent is the current span where the flow was started: the calling node's span
    for a subflow run by ``ctx.call_playbook`` (add the same middleware to the subflow), or
    whatever span was current around ``flow.run()``. Messages emitted from elsewhere do not
    carry a span with them.

    Call ``close()`` when done (after ``flow.stop()``) to end any span left open.
    """

    __slots__ = ("_open", "_stale", "_tracer")

    def __init__(self, tracer: Tracer | None = None) -> None:
        self._tracer = tracer if tracer is not None else trace.get_tracer("penguiflow")
        self._open: dict[tuple[str | None, str | None], list[_OpenSpan]] = {}
        # Tokens of spans ended by another task than the one that attached them, by task.
        self._stale: dict[asyncio.Task[object], list[Token[OtelContext]]] = {}

    @property
    def open_spans(self) -> int:
        """How many spans are started and not yet ended."""
        return sum(len(spans) for spans in self._open.values())

    async def __call__(self, event: FlowEvent) -> None:
        """Start or end the span ``event`` concerns; other events are ignored."""
        if self._stale:
            self._detach_stale()
        kind = event.event_type
        if kind == events.NODE_START:
            self._start(event)
            return
        outcome = _ATTEMPT_ENDS.get(kind)
        if outcome is not None:
            self._end(event, outcome, exact=True)
            return
        outcome = _LATE_ENDS.get(kind)
        if outcome is not None:
            self._end(event, outcome, exact=False)
        elif kind == events.NODE_CANCELLED:
            self._end_stopped(event)

    def close(self) -> None:
        """End every span still open, newest first; they get no outcome."""
        current = asyncio.current_task()
        spans = [opened for spans in self._open.values() for opened in spans]
        self._open.clear()
        for opened in reversed(spans):
            self._finish(opened, current)
        self._detach_stale()
        self._stale.clear()

    def _start(self, event: FlowEvent) -> None:
        attributes: dict[str, str | int] = {
            "penguiflow.node": event.node_name or "",
            "penguiflow.node_id": event.node_id or "",
            "penguiflow.attempt": event.attempt,
        }
        if event.trace_id is not None:
            attributes["penguiflow.trace_id"] = event.trace_id
        span = self._tracer.start_span(
            SPAN_PREFIX + (event.node_name or ""),
            attributes=attributes,
            start_time=_ns(event.ts),
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        opened = _OpenSpan(span, event.attempt, asyncio.current_task(), token)
        self._open.setdefault((event.trace_id, event.node_name), []).append(opened)

    def _end(self, event: FlowEvent, outcome: str, *, exact: bool) -> None:
        """End the span of ``event``'s trace and node (and attempt, if ``exact``).

        Several may match when a node runs concurrent invocations: the one started by this
        task wins, else the oldest.
        """
        key = (event.trace_id, event.node_name)
        spans = self._open.get(key)
        if not spans:
            return
        current = asyncio.current_task()
        matching = [s for s in spans if not exact or s.attempt == event.attempt]
        if not matching:
            return
        opened = next((s for s in matching if s.task is current), matching[0])
        spans.remove(opened)
        if not spans:
            del self._open[key]
        span = opened.span
        span.set_attribute("penguiflow.outcome", outcome)
        if outcome in ("error", "timeout"):
            text = str(event.extra.get("exception", outcome))
            span.set_status(Status(StatusCode.ERROR, text))
            span.add_event("exception", {"exception.message": text}, timestamp=_ns(event.ts))
        self._finish(opened, current, end_time=_ns(event.ts))

    def _end_stopped(self, event: FlowEvent) -> None:
        """A worker stopped (``node_cancelled``): end the spans its own task left open."""
        current = asyncio.current_task()
        for key in [key for key in self._open if key[1] == event.node_name]:
            spans = self._open[key]
            for opened in [s for s in spans if s.task is current]:
                spans.remove(opened)
                opened.span.set_attribute("penguiflow.outcome", "cancelled")
                self._finish(opened, current, end_time=_ns(event.ts))
            if not spans:
                del self._open[key]

    def _finish(
        self, opened: _OpenSpan, current: asyncio.Task[object] | None, end_time: int | None = None
    ) -> None:
        """End the span; detach its context now if this task attached it, else later."""
        owner = opened.task
        if owner is current:
            otel_context.detach(opened.token)
        elif owner is not None and not owner.done():
            self._stale.setdefault(owner, []).append(opened.token)
        opened.span.end(end_time=end_time)

    def _detach_stale(self) -> None:
        """Detach, newest first, the tokens this task left behind; forget finished tasks."""
        current = asyncio.current_task()
        tokens = self._stale.pop(current, None) if current is not None else None
        for token in reversed(tokens or ()):
            otel_context.detach(token)
        for task in [task for task in self._stale if task.done()]:
            del self._stale[task]


def _ns(ts: float) -> int:
    """Epoch seconds to the epoch nanoseconds OpenTelemetry wants."""
    return int(ts * 1e9)
