"""Trace-scoped emit/fetch: subscriptions, the Rookery dispatcher and roundtrip locks.

Until the first trace-scoped call, ``fetch()`` reads the Rookery directly. The first
``emit(trace_id=...)`` or ``fetch(trace_id=...)`` starts the dispatcher: one task that routes
each Rookery item to the inbox of its trace if that trace is subscribed, else to a shared
queue that plain ``fetch()`` then reads. A trace's roundtrip lock is taken by
``emit(trace_id=T)`` and released when ``fetch(trace_id=T)`` returns, when T is cancelled or
when the flow stops, so that two roundtrips of one trace cannot take each other's results.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import TraceCancelled
from .enqueue import Tagged, trace_of
from .floe import Floe

if TYPE_CHECKING:
    from collections.abc import Callable

    from .context import Context
    from .enqueue import Enqueuer
    from .tasks import TaskOwner

__all__ = ["KeyedLocks", "Roundtrip"]


class KeyedLocks:
    """FIFO locks keyed by trace id; a key exists only while held.

    ``acquire`` returns a token; only the matching token releases, so a late release by a
    finished roundtrip cannot free a lock that a newer roundtrip holds.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held: dict[str, tuple[object, list[asyncio.Future[object]]]] = {}

    async def acquire(self, key: str) -> object:
        """Wait for the lock of ``key``; cancellation leaves no claim behind."""
        held = self._held.get(key)
        if held is None:
            token = object()
            self._held[key] = (token, [])
            return token
        fut: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        held[1].append(fut)
        try:
            return await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.release(key, fut.result())
            else:
                with contextlib.suppress(ValueError):
                    held[1].remove(fut)
            raise

    def release(self, key: str, token: object) -> None:
        """Release ``key`` if ``token`` holds it, handing it to the next waiter."""
        held = self._held.get(key)
        if held is None or held[0] is not token:
            return
        waiters = held[1]
        while waiters:
            fut = waiters.pop(0)
            if not fut.done():
                new_token = object()
                self._held[key] = (new_token, waiters)
                fut.set_result(new_token)
                return
        del self._held[key]

    def release_all(self) -> None:
        """Hand every lock to each of its waiters and forget them all (used by ``stop``)."""
        for _token, waiters in self._held.values():
            for fut in waiters:
                if not fut.done():
                    fut.set_result(object())
        self._held.clear()

    def __len__(self) -> int:
        return len(self._held)


@dataclass(slots=True)
class Inbox:
    """Results routed to one subscribed trace."""

    queue: Floe[Any]
    fetchers: int = 0
    token: object | None = None


class Roundtrip:
    """Subscriptions and the dispatcher of trace-scoped fetching."""

    __slots__ = (
        "active",
        "current_trace",
        "dispatcher",
        "enqueuer",
        "inboxes",
        "locks",
        "rookery",
        "shared",
    )

    def __init__(
        self,
        rookery: Context,
        shared_size: int,
        current_trace: Callable[[], str | None],
        enqueuer: Enqueuer,
    ) -> None:
        self.rookery = rookery
        # Told to tag trace-less Rookery-bound items while trace-scoped fetching is on.
        self.enqueuer = enqueuer
        # Which trace the calling code is working for: asked only when an item needs a tag,
        # so that the hot path keeps no per-item "current trace" state.
        self.current_trace = current_trace
        self.active = False
        self.dispatcher: asyncio.Task[None] | None = None
        self.inboxes: dict[str, Inbox] = {}
        self.shared: Floe[Any] = Floe(None, None, maxsize=shared_size)
        self.locks = KeyedLocks()

    def tag(self, item: Any) -> Tagged | None:
        """Tag a trace-less Rookery item with the current trace, if that trace is subscribed."""
        trace_id = self.current_trace()
        if trace_id is not None and trace_id in self.inboxes:
            return Tagged(item, trace_id)
        return None

    def subscribe(self, trace_id: str) -> Inbox:
        """Return the inbox of ``trace_id``, creating it.

        A new inbox claims the trace's items already waiting in the shared queue (results
        that arrived before anyone subscribed), so a late ``fetch(trace_id=...)`` finds them.
        """
        inbox = self.inboxes.get(trace_id)
        if inbox is None:
            inbox = self.inboxes[trace_id] = Inbox(Floe(None, None, maxsize=0))
            if self.shared.items:
                claimed = self.shared.remove_where(lambda item: trace_of(item) == trace_id)
                inbox.queue.put_back(claimed)
        return inbox

    def unsubscribe(self, trace_id: str) -> None:
        """Drop the inbox of ``trace_id``; what is left in it goes to the shared queue."""
        inbox = self.inboxes.pop(trace_id, None)
        if inbox is not None:
            self.shared.put_back(inbox.queue.clear())
            if inbox.token is not None:
                self.locks.release(trace_id, inbox.token)

    def start(self, owner: TaskOwner) -> None:
        """Start the dispatcher once."""
        self.active = True
        self.enqueuer.tagger = self.tag
        if self.dispatcher is None or self.dispatcher.done():
            self.dispatcher = owner.spawn(self._dispatch(), name="penguiflow:dispatcher")

    async def _dispatch(self) -> None:
        # The shared queue is bounded: when nobody drains it, the dispatcher waits, and with it
        # the Rookery floes fill and backpressure reaches the nodes.
        while True:
            item = await self.rookery._next()
            trace_id = trace_of(item)
            inbox = self.inboxes.get(trace_id) if trace_id is not None else None
            if inbox is not None:
                inbox.queue.try_push(item)  # unbounded
            else:
                await self.shared.push(item)

    def cancel(self, trace_id: str) -> list[Any]:
        """Purge ``trace_id`` from the dispatcher queues.

        Also fails its waiting fetch and releases its lock. Returns the purged items for the
        caller to release.
        """
        purged = self.shared.remove_where(lambda item: trace_of(item) == trace_id)
        inbox = self.inboxes.get(trace_id)
        if inbox is not None:
            purged.extend(inbox.queue.clear())
            if inbox.token is not None:
                self.locks.release(trace_id, inbox.token)
                inbox.token = None
            if inbox.fetchers:
                inbox.queue.fail_consumers(TraceCancelled(trace_id))
            else:
                del self.inboxes[trace_id]
        return purged

    def close(self) -> list[Any]:
        """Stop routing: fail waiting fetches, release every lock, return undelivered items."""
        stopped = RuntimeError("PenguiFlow stopped while a fetch was waiting")
        leftovers = self.shared.clear()
        self.shared.fail_consumers(stopped)
        for trace_id, inbox in self.inboxes.items():
            leftovers.extend(inbox.queue.clear())
            inbox.queue.fail_consumers(
                RuntimeError(f"PenguiFlow stopped while fetch(trace_id={trace_id!r}) waited")
            )
        self.inboxes.clear()
        self.locks.release_all()
        self.active = False
        self.enqueuer.tagger = None
        self.dispatcher = None
        return leftovers
