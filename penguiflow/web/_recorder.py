"""What the page learns from a flow's events: per-node counts and, without a store, recent traces.

``Recorder`` is a middleware. Per event it does a dict lookup and an increment or two; with
``keep_traces`` it also appends the event to its trace's log. Both are bounded: at most
``max_traces`` traces (the one touched least recently is forgotten first) of at most
``max_events`` events each (the oldest are dropped, and counted).

``RateMeter`` turns the success counts into rates, from samples taken when a snapshot is read
(never per event).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, final

from .. import _events as events

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ..metrics import FlowEvent

__all__ = ["DEFAULT_MAX_EVENTS", "DEFAULT_MAX_TRACES", "NodeCounts", "RateMeter", "Recorder"]

DEFAULT_MAX_TRACES: Final = 200
"""Traces kept in memory without a store."""
DEFAULT_MAX_EVENTS: Final = 500
"""Events kept per trace in memory without a store."""
RATE_WINDOW_S: Final = 5.0
"""Rates are averaged over (about) this many seconds of samples."""

_ERRORS: Final = frozenset({events.NODE_ERROR, events.NODE_TIMEOUT})


@dataclass(slots=True)
class NodeCounts:
    """One node's event counts since the recorder was added."""

    succeeded: int = 0
    """Attempts that succeeded (``node_success``)."""
    errors: int = 0
    """Attempts that raised or timed out (``node_error``, ``node_timeout``)."""
    failed: int = 0
    """Messages whose retries ran out (``node_failed``)."""
    retries: int = 0
    """Retries scheduled (``node_retry``)."""
    cancelled: int = 0
    """Invocations stopped by a trace cancel (``node_trace_cancelled``)."""


@dataclass(slots=True)
class TraceLog:
    """One trace as the recorder saw it in the events."""

    trace_id: str
    """The trace."""
    first_ts: float
    """When its first recorded event happened (epoch seconds)."""
    last_ts: float
    """When its last recorded event happened (epoch seconds)."""
    failed: bool = False
    """Whether a message of it failed for good (``node_failed``)."""
    cancelled: bool = False
    """Whether it was cancelled (``trace_cancel_start``)."""
    events: deque[FlowEvent] = field(default_factory=deque)
    """Its latest events, oldest first."""
    dropped: int = 0
    """Older events dropped to keep within the bound."""


@final
class Recorder:
    """A middleware that counts node outcomes and, with ``keep_traces``, logs recent traces.

    Raises:
        ValueError: ``max_traces`` or ``max_events`` is not an int >= 1.
    """

    __slots__ = ("counts", "keep_traces", "max_events", "max_traces", "traces")

    def __init__(
        self,
        *,
        keep_traces: bool,
        max_traces: int = DEFAULT_MAX_TRACES,
        max_events: int = DEFAULT_MAX_EVENTS,
    ) -> None:
        for name, value in (("max_traces", max_traces), ("max_events", max_events)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.keep_traces = keep_traces
        """Whether traces are logged (no store to read them from)."""
        self.max_traces = max_traces
        """The most traces kept."""
        self.max_events = max_events
        """The most events kept per trace."""
        self.counts: dict[str, NodeCounts] = {}
        """Counts per node name."""
        self.traces: OrderedDict[str, TraceLog] = OrderedDict()
        """Logged traces, least recently touched first."""

    async def __call__(self, event: FlowEvent) -> None:
        """Count ``event`` and log it with its trace."""
        self.record(event)

    def record(self, event: FlowEvent) -> None:
        """Count ``event`` and log it with its trace (the synchronous body of ``__call__``)."""
        kind = event.event_type
        counter = _COUNTERS.get(kind)
        if counter is not None:
            name = event.node_name or ""
            counts = self.counts.get(name)
            if counts is None:
                counts = self.counts[name] = NodeCounts()
            counter(counts)
        trace_id = event.trace_id
        if self.keep_traces and trace_id is not None:
            self._log(trace_id, event)

    def _log(self, trace_id: str, event: FlowEvent) -> None:
        traces = self.traces
        log = traces.get(trace_id)
        if log is None:
            log = traces[trace_id] = TraceLog(trace_id, event.ts, event.ts)
            if len(traces) > self.max_traces:
                traces.popitem(last=False)
        else:
            traces.move_to_end(trace_id)
        log.last_ts = event.ts
        if len(log.events) >= self.max_events:
            log.events.popleft()
            log.dropped += 1
        log.events.append(event)
        kind = event.event_type
        if kind == events.NODE_FAILED:
            log.failed = True
        elif kind == events.TRACE_CANCEL_START:
            log.cancelled = True

    def successes(self) -> dict[str, int]:
        """Successful attempts per node so far."""
        return {name: counts.succeeded for name, counts in self.counts.items()}


def _succeeded(counts: NodeCounts) -> None:
    counts.succeeded += 1


def _errored(counts: NodeCounts) -> None:
    counts.errors += 1


def _failed(counts: NodeCounts) -> None:
    counts.failed += 1


def _retried(counts: NodeCounts) -> None:
    counts.retries += 1


def _cancelled(counts: NodeCounts) -> None:
    counts.cancelled += 1


_COUNTERS: Final[Mapping[str, Callable[[NodeCounts], None]]] = {
    events.NODE_SUCCESS: _succeeded,
    **dict.fromkeys(_ERRORS, _errored),
    events.NODE_FAILED: _failed,
    events.NODE_RETRY: _retried,
    events.NODE_TRACE_CANCELLED: _cancelled,
}


@final
class RateMeter:
    """Successes per second per node, over the samples of the last ``RATE_WINDOW_S``.

    Each ``rates`` call adds a sample; the rate is the growth since the oldest sample still in
    the window (0 until there are two samples).
    """

    __slots__ = ("_clock", "_samples")

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._samples: deque[tuple[float, dict[str, int]]] = deque()

    def rates(self, totals: dict[str, int]) -> dict[str, float]:
        """Record ``totals`` (successes per node) now; return each node's rate per second."""
        now = self._clock()
        samples = self._samples
        # Keep one sample at or beyond the window's start, so the rate spans the whole window.
        while len(samples) > 1 and now - samples[1][0] >= RATE_WINDOW_S:
            samples.popleft()
        samples.append((now, totals))
        first_at, first = samples[0]
        elapsed = now - first_at
        if elapsed <= 0:
            return dict.fromkeys(totals, 0.0)
        return {name: (total - first.get(name, 0)) / elapsed for name, total in totals.items()}
