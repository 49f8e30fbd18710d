"""Per-trace bookkeeping: pending counts, cancel flags, capacity waiters.

Invariant: a trace has a record exactly while it has something pending (an item queued on any
floe, in the Rookery buffer, or being processed). The record, its cancel flag, its WM-hops mark
and its stream counters are dropped the moment the count reaches zero, so nothing per trace
outlives the trace. All operations are O(1) dict work except ``cancel`` purges, which the
caller performs.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["TraceRecord", "TraceRegistry"]


@dataclass(slots=True)
class TraceRecord:
    """What the runtime knows of one live trace."""

    pending: int = 0
    """Items of the trace queued anywhere or being processed."""
    inflight: int = 0
    """Node invocations of the trace running now."""
    cancel_announced: bool = False
    """Whether ``trace_cancel_start`` went out for the current cancellation."""
    wm_hops: int | None = None
    """Hops of the last WM message delivered to the Rookery (for the emit dedupe rule)."""
    waiters: list[asyncio.Future[None]] | None = None
    """Capacity waiters (``emit_chunk``) keyed on this trace."""
    streams: list[tuple[dict[str, int], str]] | None = None
    """(counter map, stream id) pairs started under this trace, cleared when it ends."""
    on_end: list[Callable[[], None]] | None = None
    """Callbacks that drop state kept elsewhere for this trace (e.g. ``join_k`` buckets)."""


class TraceRegistry:
    """Counts what each trace has pending and owns the trace cancel flags.

    Attributes:
        records: Live traces.
        flags: The cancel flag of each live trace (the flow's ``_trace_events``); callers may
            insert an already-set ``asyncio.Event`` to mark a trace cancelled.
    """

    __slots__ = ("flags", "generation", "maxsize", "records")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.generation = 0
        """Bumped by ``clear``, so that waiters can tell a stop from a release."""
        self.records: dict[str, TraceRecord] = {}
        self.flags: dict[str, asyncio.Event] = {}

    def count(self, trace_id: str, items: int = 1) -> None:
        """Count ``items`` (>= 1) more pending items; the first count creates the record."""
        record = self.records.get(trace_id)
        if record is None:
            record = self.records[trace_id] = TraceRecord()
            if trace_id not in self.flags:
                self.flags[trace_id] = asyncio.Event()
        record.pending += items

    def finalize(self, trace_id: str) -> bool:
        """Count one pending item of ``trace_id`` as done.

        Returns:
            True if this ended a cancelled trace, so the caller must emit
            ``trace_cancel_finish``.
        """
        record = self.records.get(trace_id)
        if record is None:
            return False
        record.pending -= 1
        if record.pending > 0:
            if record.waiters and (self.maxsize <= 0 or record.pending <= self.maxsize):
                _wake(record)
            return False
        return self._forget(trace_id, record)

    def _forget(self, trace_id: str, record: TraceRecord) -> bool:
        del self.records[trace_id]
        flag = self.flags.pop(trace_id, None)
        _release(record)
        return flag is not None and flag.is_set()

    def pending(self, trace_id: str) -> int:
        """Return the pending count of ``trace_id`` (0 if unknown)."""
        record = self.records.get(trace_id)
        return record.pending if record is not None else 0

    def inflight(self, trace_id: str) -> int:
        """Return the running invocations of ``trace_id`` (0 if unknown)."""
        record = self.records.get(trace_id)
        return record.inflight if record is not None else 0

    def is_cancelled(self, trace_id: str) -> bool:
        """Return whether the cancel flag of ``trace_id`` is set."""
        flag = self.flags.get(trace_id)
        return flag is not None and flag.is_set()

    def ensure_flag(self, trace_id: str) -> asyncio.Event:
        """Return the cancel flag of ``trace_id``, creating it if needed."""
        flag = self.flags.get(trace_id)
        if flag is None:
            flag = self.flags[trace_id] = asyncio.Event()
        return flag

    def track_stream(self, trace_id: str, counters: dict[str, int], stream_id: str) -> None:
        """Drop ``counters[stream_id]`` when ``trace_id`` ends (no-op for unknown traces)."""
        record = self.records.get(trace_id)
        if record is not None:
            if record.streams is None:
                record.streams = []
            record.streams.append((counters, stream_id))

    def on_end(self, trace_id: str, callback: Callable[[], None]) -> bool:
        """Call ``callback`` once when ``trace_id`` ends (or the flow stops).

        Returns:
            False, without registering, if the trace is not live.
        """
        record = self.records.get(trace_id)
        if record is None:
            return False
        if record.on_end is None:
            record.on_end = []
        record.on_end.append(callback)
        return True

    async def wait_capacity(self, key: str, offset: int) -> None:
        """Wait while ``max(pending(key) - offset, 0) >= maxsize``; never if unbounded.

        Cancellation leaves no waiter behind.

        Raises:
            RuntimeError: the flow stopped while waiting.
        """
        if self.maxsize <= 0:
            return
        generation = self.generation
        while True:
            if self.generation != generation:
                raise RuntimeError(
                    f"PenguiFlow stopped while a chunk of stream {key!r} waited for capacity"
                )
            record = self.records.get(key)
            if record is None or max(record.pending - offset, 0) < self.maxsize:
                return
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if record.waiters is None:
                record.waiters = []
            record.waiters.append(fut)
            try:
                await fut
            finally:
                if record.waiters and fut in record.waiters:
                    record.waiters.remove(fut)

    def clear(self) -> None:
        """Forget every trace and wake every capacity waiter (used by ``stop``)."""
        for record in self.records.values():
            _release(record)
        self.records.clear()
        self.flags.clear()
        self.generation += 1

    def __iter__(self) -> Iterator[str]:
        return iter(self.records)


def _release(record: TraceRecord) -> None:
    """Drop what a finished trace left elsewhere and wake its capacity waiters."""
    if record.streams:
        for counters, stream_id in record.streams:
            counters.pop(stream_id, None)
    if record.on_end:
        for callback in record.on_end:
            callback()
    if record.waiters:
        _wake(record)


def _wake(record: TraceRecord) -> None:
    waiters = record.waiters
    record.waiters = None
    if waiters:
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
