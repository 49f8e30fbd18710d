"""Delivery of results to callers once trace-scoped fetching is on (``fetch(trace_id=...)``).

Until the first trace-scoped call, ``fetch()`` reads the Rookery's floes directly. The first
``emit(trace_id=...)`` or ``fetch(trace_id=...)`` turns ``Results`` on: from then on, every
item that lands on a Rookery floe (or in the Rookery buffer) is taken out in the same step,
by the floe's listener, and sorted: into the inbox of its trace when that trace is
subscribed, else into the shared floe that plain ``fetch()`` reads. There is no dispatcher
task: sorting costs a function call per result, and a caller's result is ready for it in the
step it is produced.

Design note (bounds): a subscribed trace has a caller that will fetch its results, so its
inbox takes them as they come, up to ``capacity``; past it, that trace's results wait on the
Rookery floe (others' pass them) and its producer waits. Results nobody has subscribed to
(for plain ``fetch()``) and those of abandoned callers are *held* up to ``capacity`` (the
Rookery floes' combined size); past it, they stay on the Rookery floes, which then fill, and
producers wait: a flow whose results nobody fetches slows down to a stop instead of growing.
Live roundtrips are bounded too: ``emit(trace_id=...)`` waits while ``roundtrip_limit``
traces are subscribed.

Design note (callers that go away): a trace is subscribed from ``emit(trace_id=T)`` until
its ``fetch(trace_id=T)`` returns (then what is left goes to the shared floe, as the
contract says). If instead the last waiting ``fetch(trace_id=T)`` is cancelled (an HTTP
handler that timed out), T is *abandoned*: its roundtrip lock is released, and its results
are kept in its inbox for ``ABANDONED_TTL_S`` seconds, for a caller that fetches again; a
new ``emit`` or ``fetch`` of T adopts them. After that, or as soon as held results press
against ``capacity`` while other results wait, the abandoned inbox is dropped: its results
are released with a ``results_dropped`` event. So a caller that goes away never holds up
another.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from .._events import RESULTS_DROPPED
from ..errors import TraceCancelled
from ..types import Message
from .enqueue import Tagged, trace_of
from .floe import Floe
from .inbox import Inbox

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from .context import Context
    from .enqueue import Enqueuer
    from .events import EventSink
    from .lifecycle import TraceLifecycle
    from .tasks import TaskOwner

__all__ = ["ABANDONED_TTL_S", "Inbox", "KeyedLocks", "Results"]

ABANDONED_TTL_S: Final = 30.0
"""Seconds an abandoned caller's results are kept for it (unless capacity is needed)."""
ROUNDTRIP_LIMIT_FACTOR: Final = 16
"""Live roundtrips allowed per unit of ``capacity`` (at least ``MIN_ROUNDTRIP_LIMIT``)."""
MIN_ROUNDTRIP_LIMIT: Final = 1024


class KeyedLocks:
    """FIFO locks keyed by trace id; a key exists only while held.

    ``acquire`` returns a token; only the matching token releases, so a late release by a
    finished roundtrip cannot free a lock that a newer roundtrip holds. An uncontended lock
    costs one dict entry (the token); a line of waiters is made only when someone waits.
    """

    __slots__ = ("_held", "_waiting")

    def __init__(self) -> None:
        self._held: dict[str, object] = {}
        self._waiting: dict[str, list[asyncio.Future[object]]] = {}

    def try_acquire(self, key: str) -> object | None:
        """Take the lock of ``key`` if it is free: its token, else None (then ``acquire``)."""
        if key in self._held:
            return None
        token = self._held[key] = object()
        return token

    async def acquire(self, key: str) -> object:
        """Wait for the lock of ``key``; cancellation leaves no claim behind."""
        token = self.try_acquire(key)
        if token is not None:
            return token
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        waiters = self._waiting.setdefault(key, [])
        waiters.append(fut)
        try:
            return await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release(key, fut.result())
            else:
                with contextlib.suppress(ValueError):
                    waiters.remove(fut)
                if not waiters and self._waiting.get(key) is waiters:
                    del self._waiting[key]
            raise

    def release(self, key: str, token: object) -> None:
        """Release ``key`` if ``token`` holds it, handing it to the next waiter."""
        if self._held.get(key) is not token:
            return
        waiters = self._waiting.get(key) if self._waiting else None
        while waiters:
            fut = waiters.pop(0)
            if not fut.done():
                new_token = self._held[key] = object()
                if not waiters:
                    del self._waiting[key]
                fut.set_result(new_token)
                return
        if waiters is not None:
            del self._waiting[key]
        del self._held[key]

    def release_all(self) -> None:
        """Hand every lock to each of its waiters and forget them all (used by ``stop``)."""
        for waiters in self._waiting.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(object())
        self._held.clear()
        self._waiting.clear()

    def __len__(self) -> int:
        return len(self._held)


class Results:
    """Sorts Rookery items for trace-scoped fetching; see the module's design notes.

    Args:
        sources: The Rookery's floes and its buffer: where results land.
        capacity: How many results may be held out of them (0: unbounded).
        current_trace: The trace the calling worker serves (for tagging trace-less items).
    """

    __slots__ = (
        "_abandoned",
        "_admission",
        "_listeners",
        "_sorting",
        "active",
        "capacity",
        "current_trace",
        "dropped",
        "enqueuer",
        "held",
        "inboxes",
        "lifecycle",
        "locks",
        "loop",
        "owner",
        "rookery",
        "roundtrip_limit",
        "shared",
        "sink",
        "sources",
    )

    def __init__(
        self,
        *,
        rookery: Context,
        sources: Sequence[Floe[Any]],
        capacity: int,
        current_trace: Callable[[], str | None],
        enqueuer: Enqueuer,
        sink: EventSink,
        lifecycle: TraceLifecycle,
        owner: TaskOwner,
    ) -> None:
        self.rookery = rookery
        self.sources = tuple(sources)
        self.capacity = capacity
        # Which trace the calling code is working for: asked only when an item needs a tag,
        # so that the hot path keeps no per-item "current trace" state.
        self.current_trace = current_trace
        self.enqueuer = enqueuer
        self.sink = sink
        self.lifecycle = lifecycle
        self.owner = owner
        self.active = False
        self.inboxes: dict[str, Inbox] = {}
        self.shared: Floe[Any] = Floe(None, None, maxsize=0)
        self.locks = KeyedLocks()
        self.held = 0
        """Results held for nobody in particular: in the shared floe and abandoned inboxes."""
        self.roundtrip_limit = (
            max(MIN_ROUNDTRIP_LIMIT, ROUNDTRIP_LIMIT_FACTOR * capacity) if capacity else 0
        )
        """How many traces may be subscribed at once (0: unbounded)."""
        self._admission: deque[asyncio.Future[None]] = deque()
        """``emit(trace_id=...)`` calls waiting, in order, for a trace to be unsubscribed."""
        self.dropped = 0
        """Results of abandoned callers dropped since the flow started."""
        self._abandoned: dict[str, Inbox] = {}  # oldest abandonment first
        self._listeners: list[Callable[[], None] | None] = []
        self._sorting = False
        self.loop: asyncio.AbstractEventLoop | None = None
        """The flow's loop while it runs (set by the flow): where fetches' futures are made."""

    # -- switching on and off --------------------------------------------------------------

    def start(self) -> None:
        """Turn trace-scoped delivery on (once): sort what the Rookery holds, then each result."""
        if self.active:
            return
        self.active = True
        self.enqueuer.tagger = self.tag
        self._listeners = [floe.listener for floe in self.sources]
        for floe in self.sources:
            floe.listener = self._sort
        self._sort()

    def close(self) -> list[Any]:
        """Stop: fail waiting fetches, release every lock, return the results still held."""
        stopped = RuntimeError("PenguiFlow stopped while a fetch was waiting")
        leftovers = self.shared.clear()
        self.shared.fail_consumers(stopped)
        for trace_id, inbox in self.inboxes.items():
            leftovers.extend(inbox.clear())
            inbox.fail(
                RuntimeError(f"PenguiFlow stopped while fetch(trace_id={trace_id!r}) waited")
            )
            if inbox.expiry is not None:
                inbox.expiry.cancel()
        self.inboxes.clear()
        self._abandoned.clear()
        for future in self._admission:
            if not future.done():
                future.set_exception(RuntimeError("PenguiFlow stopped while emit waited"))
        self._admission.clear()
        self.locks.release_all()
        if self.active:
            for floe, listener in zip(self.sources, self._listeners, strict=True):
                floe.listener = listener
        self.active = False
        self.enqueuer.tagger = None
        self.held = 0
        return leftovers

    # -- sorting -------------------------------------------------------------------------------

    def tag(self, item: Any) -> Tagged | None:
        """Tag a trace-less Rookery item with the current trace, if that trace is subscribed."""
        trace_id = self.current_trace()
        if trace_id is not None and trace_id in self.inboxes:
            return Tagged(item, trace_id)
        return None

    def _sort(self) -> None:
        """Move results from the Rookery into inboxes and the shared floe, while there is room.

        Called by the Rookery floes after every push, and whenever room is freed. Taking an
        item admits a producer waiting on that floe, whose push calls this again: the flag
        keeps that inner call from nesting, and this loop picks its item up.
        """
        if self._sorting:
            return
        self._sorting = True
        try:
            moved = True
            while moved:
                moved = False
                for floe in self.sources:
                    items = floe.items
                    while items and self._take_from(floe, items[0]):
                        pass
                    if items:
                        # Held back behind a result for nobody: a live caller's results
                        # further down the floe, or still waiting for room on it, come out
                        # all the same.
                        live = floe.remove_where(self._is_live)
                        live.extend(floe.divert_waiting(self._is_live))
                        for item in live:
                            self._place(item)
                        moved = moved or bool(live)
        finally:
            self._sorting = False

    def _take_from(self, floe: Floe[Any], head: Any) -> bool:
        """Move ``head`` (the floe's oldest item) out if it may go now; tell whether it did."""
        trace_id = head.trace_id if type(head) is Message else trace_of(head)
        inbox = self.inboxes.get(trace_id) if trace_id is not None else None
        capacity = self.capacity
        if inbox is not None and inbox.expiry is None:  # a live caller's, up to its bound
            if capacity and inbox.size >= capacity:
                return False
            inbox.push(floe.pop_nowait())
            return True
        if capacity and self.held >= capacity and not self._evict():
            return False
        self._place(floe.pop_nowait())
        return True

    def _is_live(self, item: Any) -> bool:
        """Whether ``item`` is for a caller that has not gone away and has room for it."""
        trace_id = trace_of(item)
        inbox = self.inboxes.get(trace_id) if trace_id is not None else None
        if inbox is None or inbox.expiry is not None:
            return False
        capacity = self.capacity
        return not capacity or inbox.size < capacity

    def _place(self, item: Any) -> None:
        trace_id = trace_of(item)
        inbox = self.inboxes.get(trace_id) if trace_id is not None else None
        if inbox is None:
            self.shared.try_push(item)  # unbounded: ``held`` bounds it
            self.held += 1
        else:
            inbox.push(item)
            if inbox.expiry is not None:
                self.held += 1

    def _took(self, held: bool) -> None:
        """A result was fetched; if it was held, one more may come out of the Rookery."""
        if held:
            self.held -= 1
            if self.active:
                self._sort()

    # -- callers -------------------------------------------------------------------------------

    def subscribe(self, trace_id: str) -> Inbox:
        """Return the inbox of ``trace_id``, creating it (or adopting an abandoned one).

        A new inbox claims the trace's results already waiting in the shared floe (results
        that arrived before anyone subscribed), so a late ``fetch(trace_id=...)`` finds them.
        """
        inbox = self.inboxes.get(trace_id)
        if inbox is None:
            inbox = self.inboxes[trace_id] = Inbox()
            if self.shared.items:
                claimed = self.shared.remove_where(lambda i: trace_of(i) == trace_id)
                inbox.put_back(claimed)
                self.held -= len(claimed)
        elif inbox.expiry is not None:
            inbox.expiry.cancel()
            inbox.expiry = None
            del self._abandoned[trace_id]
            self.held -= inbox.qsize()
        return inbox

    def must_wait(self) -> bool:
        """Whether a new subscription must wait in ``admit`` (cheap, for the common case)."""
        limit = self.roundtrip_limit
        return bool(limit) and (len(self.inboxes) >= limit or bool(self._admission))

    def try_turn(self, trace_id: str) -> object | None:
        """The roundtrip lock of ``trace_id``, if a roundtrip of it may start without waiting.

        None: wait for admission (``admit``) and for the lock (``KeyedLocks.acquire``).
        """
        if trace_id not in self.inboxes and self.must_wait():
            return None
        return self.locks.try_acquire(trace_id)

    async def admit(self) -> None:
        """Wait, in line, while ``roundtrip_limit`` traces are subscribed.

        Cancellation leaves no place behind; a wake-up this call received goes to the next.
        """
        limit = self.roundtrip_limit
        while limit and len(self.inboxes) >= limit:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._admission.append(future)
            try:
                await future
            except BaseException:
                if future.done() and not future.cancelled():
                    self._admit_next()
                else:
                    future.cancel()
                    with contextlib.suppress(ValueError):
                        self._admission.remove(future)
                raise

    def _admit_next(self) -> None:
        while self._admission:
            future = self._admission.popleft()
            if not future.done():
                future.set_result(None)
                return

    def unsubscribe(self, trace_id: str) -> None:
        """Drop the inbox of ``trace_id``; what is left in it goes to the shared floe."""
        inbox = self.inboxes.get(trace_id)
        if inbox is not None:
            self._unsubscribe(trace_id, inbox)

    def _unsubscribe(self, trace_id: str, inbox: Inbox) -> None:
        """``unsubscribe`` for the caller that has the inbox of ``trace_id`` in hand."""
        self._forget(trace_id, inbox)
        if inbox.size:
            leftovers = inbox.clear()
            self.shared.put_back(leftovers)
            self.held += len(leftovers)
        if inbox.token is not None:
            self.locks.release(trace_id, inbox.token)

    # A trace-scoped fetch is ``enter``, a wait on the inbox while it is empty (in
    # ``PenguiFlow.fetch`` itself, so that a waiting caller holds one coroutine, not two), then
    # ``leave`` with the result or ``left`` with the error.

    def enter(self, trace_id: str) -> Inbox:
        """Start a fetch of ``trace_id``: its inbox (subscribed if needed), counted as fetched."""
        inbox = self.inboxes.get(trace_id)
        if inbox is None or inbox.expiry is not None:
            inbox = self.subscribe(trace_id)  # else subscribed already, by emit
        if not self.active:
            self.start()
        inbox.fetchers += 1
        return inbox

    def leave(self, trace_id: str, inbox: Inbox) -> Any:
        """End a fetch of ``trace_id`` that found a result in ``inbox``: take it.

        The last fetch of the trace unsubscribes it (spec 7.11).
        """
        item = inbox.take_nowait()
        inbox.fetchers -= 1
        if inbox.fetchers == 0 and self.inboxes.get(trace_id) is inbox:
            self._unsubscribe(trace_id, inbox)
        if self.capacity:
            for floe in self.sources:
                if floe.items:
                    self._sort()  # the inbox may have been full, holding results back
                    break
        return item

    def left(self, trace_id: str, inbox: Inbox, error: BaseException) -> None:
        """End a fetch of ``trace_id`` that raised ``error`` while it waited.

        Cancelled, as the last fetch of the trace: the trace is abandoned (see the module's
        design note), unless it has ended with its inbox empty (nothing more can come for it:
        a result is counted in its trace until fetched); failed otherwise (the trace was
        cancelled, the flow stopped): it is unsubscribed.
        """
        inbox.fetchers -= 1
        if inbox.fetchers == 0 and self.inboxes.get(trace_id) is inbox:
            live = inbox.size or trace_id in self.lifecycle.traces.records
            if isinstance(error, asyncio.CancelledError) and live:
                self._abandon(trace_id, inbox)
            else:
                self._unsubscribe(trace_id, inbox)

    async def take_any(self) -> Any:
        """The next result of a trace nobody subscribed (plain ``fetch()``)."""
        item = await self.shared.pop()
        self._took(held=True)
        return item

    def cancel(self, trace_id: str) -> list[Any]:
        """Purge ``trace_id``'s results; fail its waiting fetch; release its lock.

        Returns the purged items for the caller to release.
        """
        purged = self.shared.remove_where(lambda item: trace_of(item) == trace_id)
        self.held -= len(purged)
        inbox = self.inboxes.get(trace_id)
        if inbox is not None:
            mine = inbox.clear()
            if inbox.expiry is not None:
                self.held -= len(mine)
            purged.extend(mine)
            if inbox.token is not None:
                self.locks.release(trace_id, inbox.token)
                inbox.token = None
            if inbox.fetchers:
                inbox.fail(TraceCancelled(trace_id))
            else:
                self._forget(trace_id, inbox)
        if self.active:
            self._sort()
        return purged

    # -- callers that went away ----------------------------------------------------------------

    def _abandon(self, trace_id: str, inbox: Inbox) -> None:
        if inbox.token is not None:
            self.locks.release(trace_id, inbox.token)
            inbox.token = None
        loop = asyncio.get_running_loop()
        inbox.expiry = loop.call_later(ABANDONED_TTL_S, self._expire, trace_id, inbox)
        self._abandoned[trace_id] = inbox
        self.held += inbox.qsize()

    def _expire(self, trace_id: str, inbox: Inbox) -> None:
        if self.inboxes.get(trace_id) is inbox and inbox.expiry is not None:
            self._drop(trace_id, inbox, "abandoned")
            self._sort()

    def _evict(self) -> bool:
        """Drop the oldest abandoned inbox to make room; False if there is none."""
        for trace_id, inbox in self._abandoned.items():
            self._drop(trace_id, inbox, "capacity")
            return True
        return False

    def _drop(self, trace_id: str, inbox: Inbox, reason: str) -> None:
        items = inbox.clear()
        self._forget(trace_id, inbox)
        self.held -= len(items)
        self.dropped += len(items)
        self.owner.spawn(self._report(trace_id, items, reason), name="penguiflow:results-dropped")

    def _forget(self, trace_id: str, inbox: Inbox) -> None:
        if inbox.expiry is not None:  # abandoned: listed in ``_abandoned`` exactly then
            inbox.expiry.cancel()
            inbox.expiry = None
            del self._abandoned[trace_id]
        del self.inboxes[trace_id]
        if self._admission:
            self._admit_next()  # one more trace may be subscribed

    async def _report(self, trace_id: str, items: list[Any], reason: str) -> None:
        """Say what was dropped, then release it (which may end the trace)."""
        await self.sink.emit(
            RESULTS_DROPPED,
            self.rookery,
            trace_id,
            extra={"dropped": len(items), "reason": reason},
        )
        for item in items:
            await self.lifecycle.release(trace_of(item))
