"""Floes: the bounded FIFO edges between nodes, and the ready-signal their consumer waits on.

A context reading several floes must not spawn a task per floe to wait on them. Instead every
floe's queue calls its consumer's ``ReadySignal`` when an item lands, and the consumer waits on
that one signal, then takes from whichever queue has an item.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from ..node import Node
    from .endpoints import Endpoint

__all__ = ["Floe", "FloeQueue", "ReadySignal"]


class ReadySignal:
    """Wakes tasks waiting for an item on any of a set of floes.

    Each waiter names the floes it can take from (None: any). A put on floe ``f`` wakes the
    longest-waiting task interested in ``f``; the woken task re-checks the queues. A waiter that
    is cancelled after being woken passes the wake-up on, so none is lost.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[tuple[asyncio.Future[None], Collection[Floe] | None]] = []

    def notify(self, floe: Floe | None = None) -> None:
        """Wake the longest waiting task that can take from ``floe`` (None: any waiter)."""
        waiters = self._waiters
        for index, (fut, interest) in enumerate(waiters):
            if fut.done():
                continue
            if floe is None or interest is None or floe in interest:
                del waiters[index]
                fut.set_result(None)
                return

    async def wait(self, interest: Collection[Floe] | None) -> None:
        """Wait until an item may be available on one of ``interest`` (None: any floe).

        On cancel: a wake-up already delivered to this waiter goes to the next one, then
        ``CancelledError`` propagates.
        """
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (fut, interest)
        self._waiters.append(entry)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.notify()
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
            raise


class FloeQueue(asyncio.Queue[Any]):
    """An ``asyncio.Queue`` that also tells its consumer's ``ReadySignal`` about each put."""

    # asyncio.Queue internals this subclass relies on (stable since Python 3.8).
    _queue: deque[Any]
    _putters: deque[asyncio.Future[None]]
    _getters: deque[asyncio.Future[None]]
    _unfinished_tasks: int
    _finished: asyncio.Event
    _wakeup_next: Callable[[deque[asyncio.Future[None]]], None]
    _maxsize: int

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.listener: Callable[[], None] | None = None

    # The two methods below do what asyncio.Queue's do (``put()``/``get()`` call them too),
    # minus a few method calls, since they run for every message at every hop; ``put_nowait``
    # also notifies the consumer's ready-signal.

    def put_nowait(self, item: Any) -> None:
        """Put ``item`` without blocking.

        Raises:
            asyncio.QueueFull: the queue is full.
        """
        if 0 < self._maxsize <= len(self._queue):
            raise asyncio.QueueFull
        self.push(item)

    def has_room(self) -> bool:
        """Return whether a put would not wait."""
        return not 0 < self._maxsize <= len(self._queue)

    def push(self, item: Any) -> None:
        """Append ``item``, waking a getter; the caller has checked ``has_room``."""
        self._queue.append(item)
        listener = self.listener
        if listener is not None:
            listener()
        if not self._unfinished_tasks:
            self._finished.clear()
        self._unfinished_tasks += 1
        if self._getters:
            self._wakeup_next(self._getters)

    def get_nowait(self) -> Any:
        """Take the oldest item without blocking.

        Raises:
            asyncio.QueueEmpty: the queue is empty.
        """
        queue = self._queue
        if not queue:
            raise asyncio.QueueEmpty
        item = queue.popleft()
        if self._putters:
            self._wakeup_next(self._putters)
        return item

    def remove_where(self, predicate: Callable[[Any], bool]) -> list[Any]:
        """Remove and return every queued item for which ``predicate`` is true.

        The rest keep their order, and as many blocked putters are woken as slots were freed.
        """
        kept: deque[Any] = deque()
        removed: list[Any] = []
        for item in self._queue:
            (removed if predicate(item) else kept).append(item)
        if removed:
            # In place: consumers may hold the deque (Context caches it for depth reads).
            self._queue.clear()
            self._queue.extend(kept)
            # Keep task_done()/join() bookkeeping consistent with what is left.
            self._unfinished_tasks = max(0, self._unfinished_tasks - len(removed))
            if self._unfinished_tasks == 0:
                self._finished.set()
            for _ in removed:
                self._wakeup_next(self._putters)
        return removed

    def clear(self) -> list[Any]:
        """Remove and return every queued item."""
        return self.remove_where(lambda _item: True)

    def fail_getters(self, exc: BaseException) -> None:
        """Make every task blocked in ``get()`` raise ``exc``."""
        for getter in list(self._getters):
            if not getter.done():
                getter.set_exception(exc)


class Floe:
    """A bounded FIFO edge from ``source`` to ``target``.

    Attributes:
        source: The producing node or endpoint.
        target: The consuming node or endpoint.
        queue: The ``asyncio.Queue`` holding items in transit; ``maxsize <= 0`` is unbounded.
    """

    __slots__ = ("queue", "source", "target")

    def __init__(
        self, source: Node | Endpoint | None, target: Node | Endpoint | None, *, maxsize: int
    ) -> None:
        self.source = source
        self.target = target
        self.queue: FloeQueue = FloeQueue(maxsize)

    def listen(self, signal: ReadySignal | None) -> None:
        """Have every put on this floe wake ``signal``'s waiters (None: stop notifying)."""
        self.queue.listener = None if signal is None else functools.partial(signal.notify, self)

    def __repr__(self) -> str:
        src = getattr(self.source, "name", None)
        dst = getattr(self.target, "name", None)
        return f"<Floe {src}->{dst} {self.queue.qsize()}/{self.queue.maxsize}>"
