"""How ``run`` and ``recover`` report: JSON lines on stdout, notes and progress on stderr.

Each item a trace delivers is one line on stdout, ``{"line": N, "trace_id": T, "payload":
P}`` (``line`` only from ``run``: the input line the trace came from), ``P`` being a
``Message``'s payload, or the item itself when the flow delivers something else. A failure
is ``{"line": N, "trace_id": T, "error": E}``, ``E`` being the ``FlowError``'s
``to_payload()``: delivered to the Rookery (``emit_errors_to_rookery=True``) or, when it was
not, taken from the ``node_failed`` event (for a cancelled trace: ``TRACE_CANCELLED``).
Notes (bad input lines, the summary) go to stderr, and so does a progress line, redrawn in
place, when stderr is a terminal.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, TextIO

from pydantic_core import to_json

from .._events import NODE_FAILED, TRACE_CANCEL_START
from ..errors import FlowError, FlowErrorCode, TraceCancelled
from ..types import Message

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from ..metrics import FlowEvent

__all__ = ["Failures", "Reporter", "Tally", "is_terminal"]

_REDRAW_S: Final = 0.1
_CLEAR: Final = "\r\x1b[K"


@dataclass(slots=True)
class Tally:
    """What a command has done so far."""

    traces: int = 0
    """Traces that ended."""
    failed: int = 0
    """Of those, the ones that failed (a node failed for good, or the trace could not run)."""
    invalid: int = 0
    """Input lines that were not fed to the flow."""


@dataclass(slots=True)
class Failures:
    """A middleware that keeps the failures of each trace.

    A failure is the ``FlowError`` of a ``node_failed`` event, or a ``TRACE_CANCELLED``
    error for a ``trace_cancel_start``. It also notes every trace it hears of (``seen``),
    and sets the flag ``watch`` gave for a trace when it fails (untraced runs wait on the
    flag of None).
    """

    by_trace: dict[str | None, list[dict[str, Any]]] = field(default_factory=dict)
    seen: set[str] = field(default_factory=set)
    _flags: dict[str | None, asyncio.Event] = field(default_factory=dict)

    async def __call__(self, event: FlowEvent) -> None:
        trace_id = event.trace_id
        if trace_id is not None:
            self.seen.add(trace_id)
        kind = event.event_type
        if kind == NODE_FAILED:
            error = event.extra.get("flow_error")
            if not isinstance(error, dict):
                error = {"code": "NODE_FAILED", "message": str(event.extra.get("exception"))}
        elif kind == TRACE_CANCEL_START:
            cancelled = TraceCancelled(str(trace_id))
            error = {"code": FlowErrorCode.TRACE_CANCELLED.value, "message": str(cancelled)}
        else:
            return
        self.by_trace.setdefault(trace_id, []).append(error)
        flag = self._flags.get(trace_id)
        if flag is not None:
            flag.set()

    def watch(self, trace_id: str | None) -> asyncio.Event:
        """A flag set when a node of ``trace_id`` fails (from now on, until ``take``)."""
        flag = self._flags[trace_id] = asyncio.Event()
        if self.by_trace.get(trace_id):
            flag.set()
        return flag

    def take(self, trace_id: str | None) -> list[dict[str, Any]]:
        """Return and forget the failures of ``trace_id`` (and its flag)."""
        self._flags.pop(trace_id, None)
        return self.by_trace.pop(trace_id, [])


class Reporter:
    """Writes results and errors to ``out``, notes and the progress line to ``err``.

    Args:
        progress: Whether to draw the progress line (when ``err`` is a terminal).
        clock: Monotonic seconds, for the rate and for redrawing at most every 0.1 s.
    """

    def __init__(
        self,
        out: TextIO,
        err: TextIO,
        *,
        progress: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tally = Tally()
        self._out = out
        self._err = err
        self._progress = progress
        self._clock = clock
        self._started = clock()
        self._drawn_at: float | None = None
        # Whether results and the progress line share a terminal: then each result is
        # written on a cleared line, and the progress line drawn again under it.
        self._shared = progress and is_terminal(out)

    def result(self, line: int | None, trace_id: str | None, item: Any) -> bool:
        """Write one item a trace delivered; return whether it was a ``FlowError``."""
        if isinstance(item, FlowError):
            self.error(line, trace_id, item.to_payload())
            return True
        payload = item.payload if isinstance(item, Message) else item
        self._write(line, trace_id, "payload", payload)
        return False

    def error(self, line: int | None, trace_id: str | None, error: Mapping[str, Any]) -> None:
        """Write one failure of a trace."""
        self._write(line, trace_id, "error", dict(error))

    def ended(self, *, failed: bool) -> None:
        """Count a trace that ended."""
        self.tally.traces += 1
        self.tally.failed += failed
        self._draw()

    def invalid(self, line: int, reason: str) -> None:
        """Say on stderr why an input line was not fed to the flow, and count it."""
        self.tally.invalid += 1
        self.note(f"input line {line}: {reason}")

    def note(self, text: str) -> None:
        """Write ``penguiflow: text`` on stderr (under the progress line, if drawn)."""
        self._err.write(f"{_CLEAR if self._drawn_at is not None else ''}penguiflow: {text}\n")
        self._err.flush()
        if self._drawn_at is not None:
            self._draw(force=True)

    def close(self) -> None:
        """Draw the final progress line, and end it."""
        if self._progress:
            self._draw(force=True)
            self._err.write("\n")
            self._err.flush()

    def _write(self, line: int | None, trace_id: str | None, key: str, value: Any) -> None:
        record: dict[str, Any] = {} if line is None else {"line": line}
        record["trace_id"] = trace_id
        record[key] = value
        if self._shared and self._drawn_at is not None:
            self._err.write(_CLEAR)
            self._err.flush()
        self._out.write(to_json(record, fallback=repr).decode() + "\n")
        self._out.flush()
        if self._shared and self._drawn_at is not None:
            self._draw(force=True)

    def _draw(self, *, force: bool = False) -> None:
        if not self._progress:
            return
        now = self._clock()
        if not force and self._drawn_at is not None and now - self._drawn_at < _REDRAW_S:
            return
        self._drawn_at = now
        tally = self.tally
        rate = tally.traces / max(now - self._started, 1e-9)
        self._err.write(
            f"{_CLEAR}{tally.traces} traces  {tally.failed} failed  "
            f"{tally.invalid} invalid lines  {rate:.1f}/s"
        )
        self._err.flush()


def is_terminal(stream: TextIO) -> bool:
    """Whether ``stream`` is a terminal (False for a stream that cannot tell)."""
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
