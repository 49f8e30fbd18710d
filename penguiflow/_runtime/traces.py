"""Per-trace bookkeeping: pending counts, cancel flags, capacity waiters.

The pending-count invariant, which every enqueue and every finished item keeps:

    ``records[T].pending`` == items of trace T queued on any floe or in the Rookery buffer
                              + items of T that a worker has taken and not yet released.

- An item is counted (``count``) in the very step in which it enters a floe or the buffer,
  never later: a consumer could otherwise take and release it first, end the trace early and
  leave a record behind. ``Enqueuer`` is the one place that pushes and counts; a producer
  that waits for room is counted by the floe when its item moves in (``Floe.push``'s
  ``entered``).
- An item leaves the count (``release``) when a worker has finished with it (whatever the
  outcome, and only after its outputs were counted, so that a trace cannot end while a node
  of it still routes), when ``fetch`` hands it out, or when ``cancel`` purges it.
- A trace has a record exactly while its count is above zero: the record, its cancel flag,
  its WM-hops mark and its stream counters are dropped the moment the count reaches zero, so
  nothing per trace outlives the trace. All of it is O(1) dict work.

Every live trace has a cancel flag (an ``asyncio.Event``) in ``flags``, the dict the flow
exposes as ``_trace_events``; but the Event object is made only when someone reads it (see
``TraceFlags``), so that a trace nobody cancels or watches costs no Event.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["TraceEnd", "TraceFlags", "TraceRecord", "TraceRegistry"]

#: How a trace ended, as reported by ``TraceRegistry.release``.
TraceEnd = Literal["finished", "cancelled", "failed"]

SPARE_RECORDS: Final = 1024
"""Records of ended traces kept for reuse (about 100 bytes each): a floe's burst and more."""


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
    failed: bool = False
    """Whether a message of the trace failed for good (its end status is then ``failed``)."""


class TraceRegistry:
    """Counts what each trace has pending and owns the trace cancel flags.

    Attributes:
        records: Live traces.
        flags: The cancel flag of each live trace (the flow's ``_trace_events``); callers may
            insert an already-set ``asyncio.Event`` to mark a trace cancelled.
    """

    __slots__ = (
        "_add_flag",
        "_spare",
        "flag_of",
        "flags",
        "generation",
        "journaled",
        "maxsize",
        "records",
    )

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.generation = 0
        """Bumped by ``clear``, so that waiters can tell a stop from a release."""
        self.records: dict[str, TraceRecord] = {}
        self.journaled = False
        """Whether a trace journal wants every trace's end (see ``release``)."""
        self.flags = TraceFlags()
        # Raw reads of ``flags`` (no placeholder turned into an Event): dict's own get, bound
        # once, since the hot path asks for every item. None means not cancelled.
        self.flag_of: Callable[[str], asyncio.Event | None] = dict.get.__get__(self.flags)
        self._add_flag: Callable[[str, None], None] = dict.__setitem__.__get__(self.flags)
        # Records of ended traces, reset, for the next traces to start (see ``_forget``).
        self._spare: list[TraceRecord] = []

    def count(self, trace_id: str, items: int = 1) -> None:
        """Count ``items`` (>= 1) more pending items; the first count creates the record."""
        record = self.records.get(trace_id)
        if record is None:
            spare = self._spare
            record = self.records[trace_id] = spare.pop() if spare else TraceRecord()
            if trace_id not in self.flags:
                self._add_flag(trace_id, None)  # an unread flag (see TraceFlags)
        record.pending += items

    def release(self, trace_id: str) -> TraceEnd | None:
        """Count one pending item of ``trace_id`` as done (see the invariant above).

        Returns:
            None, unless this ended the trace and someone must hear of it: ``"cancelled"``
            (the caller emits ``trace_cancel_finish``), or, with a journal attached,
            ``"finished"`` or ``"failed"`` too (the caller records the end).
        """
        record = self.records.get(trace_id)
        if record is None:
            return None
        record.pending -= 1
        if record.pending > 0:
            if record.waiters and (self.maxsize <= 0 or record.pending <= self.maxsize):
                _wake(record)
            return None
        return self._forget(trace_id, record)

    def _forget(self, trace_id: str, record: TraceRecord) -> TraceEnd | None:
        """Drop the record of an ended trace and keep it, reset, for a trace to come.

        Design note (reuse): a server starts traces in bursts of a floe's size, and a fresh
        record for each is one more object for the garbage collector to count and walk while
        the trace is in flight. Nothing holds a record past its trace's end (whoever holds one
        holds a pending item of the trace, which keeps it alive), so a spare one can serve the
        next trace; at most ``SPARE_RECORDS`` are kept, and ``clear`` drops them.
        """
        del self.records[trace_id]
        flag = dict.pop(self.flags, trace_id, None)
        if record.streams or record.on_end or record.waiters:
            _drop_leftovers(record)
        if flag is not None and flag.is_set():
            end: TraceEnd | None = "cancelled"
        elif self.journaled:
            end = "failed" if record.failed else "finished"
        else:
            end = None
        spare = self._spare
        if len(spare) < SPARE_RECORDS:
            # Every field back to its default (pending already is 0, and so is inflight: a
            # running invocation holds a pending item). The lists were let go above.
            record.pending = record.inflight = 0
            record.cancel_announced = record.failed = False
            record.wm_hops = record.waiters = record.streams = record.on_end = None
            spare.append(record)
        return end

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
        if not self.flags.holds_events:
            return False  # no flag was ever made, so none is set
        flag = self.flag_of(trace_id)
        return flag is not None and flag.is_set()

    def ensure_flag(self, trace_id: str) -> asyncio.Event:
        """Return the cancel flag of ``trace_id``, creating it if needed."""
        flag: asyncio.Event | None = self.flags.get(trace_id)  # makes a live trace's flag
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

    async def wait_capacity(self, key: str, offset: int, deadline_s: float | None = None) -> None:
        """Wait while ``max(pending(key) - offset, 0) >= maxsize``; never if unbounded.

        ``deadline_s`` (wall-clock epoch seconds, a message's ``deadline_s``) bounds the wait:
        a stream nobody reads gives up then, instead of holding its worker for good.
        Cancellation leaves no waiter behind.

        Raises:
            RuntimeError: the flow stopped while waiting.
            TimeoutError: ``deadline_s`` passed while waiting.
        """
        if self.maxsize <= 0:
            return
        if deadline_s is None:
            await self._wait_capacity(key, offset)
            return
        try:
            async with asyncio.timeout(max(deadline_s - time.time(), 0.0)):
                await self._wait_capacity(key, offset)
        except TimeoutError:
            raise TimeoutError(
                f"stream {key!r}: no room for another chunk before the message's deadline "
                f"(nobody fetched the {self.maxsize} already pending)"
            ) from None

    async def _wait_capacity(self, key: str, offset: int) -> None:
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
            _drop_leftovers(record)
        self.records.clear()
        self._spare.clear()
        self.flags.clear()
        self.generation += 1


class TraceFlags(dict[str, "asyncio.Event | None"]):
    """The cancel flags of a flow (its ``_trace_events``): a dict with one entry per live trace.

    The runtime adds a trace's entry on its first enqueue as ``None``, a placeholder that the
    reading methods (``[]``, ``get``, ``setdefault``, ``pop``, ``values``, ``items``...)
    replace with a fresh ``asyncio.Event`` on first read, so no Event is made for traces that
    nobody cancels or watches. The runtime itself reads raw values (``dict.get``): a
    placeholder means "not cancelled". Callers may insert their own Event, e.g. an
    already-set one to mark a trace cancelled before its first message arrives.
    """

    __slots__ = ("holds_events",)

    def __init__(self) -> None:
        super().__init__()
        self.holds_events = False
        """Whether an Event was stored since the last ``clear``. While False, every entry is
        a placeholder, so no trace is cancelled: the hot path then skips the flag lookup."""

    def _made(self, trace_id: str) -> asyncio.Event:
        flag = asyncio.Event()
        self.holds_events = True
        dict.__setitem__(self, trace_id, flag)
        return flag

    # Every way a caller can store an Event marks the dict as holding one.
    def __setitem__(self, trace_id: str, flag: asyncio.Event | None) -> None:
        if flag is not None:
            self.holds_events = True
        dict.__setitem__(self, trace_id, flag)

    def update(self, *args: Any, **kwargs: Any) -> None:
        self.holds_events = True
        dict.update(self, *args, **kwargs)

    def __ior__(self, other: Any) -> TraceFlags:  # type: ignore[override,misc]
        self.update(other)
        return self

    def clear(self) -> None:
        dict.clear(self)
        self.holds_events = False

    def __getitem__(self, trace_id: str) -> asyncio.Event:
        flag = dict.__getitem__(self, trace_id)
        return flag if flag is not None else self._made(trace_id)

    def get(self, trace_id: str, default: Any = None) -> Any:
        flag = dict.get(self, trace_id, _ABSENT)
        if flag is _ABSENT:
            return default
        return flag if flag is not None else self._made(trace_id)

    def setdefault(self, trace_id: str, default: Any = None) -> Any:
        if trace_id in self:
            return self[trace_id]
        self[trace_id] = default
        return default

    def pop(self, trace_id: str, *default: Any) -> Any:
        flag = dict.pop(self, trace_id, *default)
        return flag if flag is not None else asyncio.Event()

    def popitem(self) -> tuple[str, asyncio.Event]:
        trace_id, flag = dict.popitem(self)
        return trace_id, flag if flag is not None else asyncio.Event()

    def _make_all(self) -> None:
        for trace_id in [t for t, flag in dict.items(self) if flag is None]:
            self._made(trace_id)

    def values(self) -> Any:
        self._make_all()
        return dict.values(self)

    def items(self) -> Any:
        self._make_all()
        return dict.items(self)

    def copy(self) -> dict[str, asyncio.Event]:  # type: ignore[override]
        self._make_all()
        return dict(dict.items(self))  # type: ignore[arg-type]

    def __repr__(self) -> str:
        # Placeholders show as unset flags; reading the dict for display makes no Event.
        shown = ", ".join(
            f"{trace_id!r}: {flag if flag is not None else '<unset>'}"
            for trace_id, flag in dict.items(self)
        )
        return f"{{{shown}}}"


_ABSENT: Any = object()


def _drop_leftovers(record: TraceRecord) -> None:
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
