"""Floes: the bounded FIFO edges between nodes, and the ready-signal their consumer waits on.

A ``Floe`` owns its state, as anyio's memory object stream does: its deque of items, its size
limit and two FIFO queues of waiters, one of producers waiting for room and one of consumers
waiting for an item. Nothing outside this module reads that state except through the methods
below, and the class is the seam where another transport (a Redis stream) plugs in.

Design note (fairness): a producer that finds the floe full queues up with its item. When a
consumer takes an item, the longest-waiting producer's item moves into the freed slot in the
same step, before any other task runs, and that producer is woken already done. So producers
are served in the order they arrived: a producer that comes later cannot slip into a freed
slot ahead of those already waiting, and none starves. It follows that producers wait only
while the floe is full. Consumers are woken in arrival order too; a woken consumer that finds
the item gone (taken by a consumer that did not wait) queues up again.

A context reading several floes must not spawn a task per floe to wait on them. Instead every
floe calls its consumer's ``ReadySignal`` when an item lands, and the consumer waits on that one
signal, then takes from whichever floe has an item.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from collections.abc import Callable, Collection

    from ..node import Node
    from .endpoints import Endpoint

__all__ = ["Floe", "FloeStatistics", "ReadySignal"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FloeStatistics:
    """A snapshot of a floe's state."""

    current_items: int
    """Items queued now."""
    max_items: int
    """The size limit; 0 means unbounded."""
    waiting_producers: int
    """Producers waiting for room (non-zero only while the floe is full)."""
    waiting_consumers: int
    """Consumers waiting for an item."""


class ReadySignal:
    """Wakes tasks waiting for an item on any of a set of floes.

    Each waiter names the floes it can take from (None: any). A push onto floe ``f`` wakes the
    longest-waiting task interested in ``f``; the woken task re-checks the floes. A waiter that
    is cancelled after being woken passes the wake-up on, so none is lost.
    """

    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[
            tuple[asyncio.Future[Floe[Any] | None], Collection[Floe[Any]] | None]
        ] = []

    def notify(self, floe: Floe[Any] | None = None) -> None:
        """Wake the longest waiting task that can take from ``floe`` (None: any waiter)."""
        waiters = self._waiters
        for index, (fut, interest) in enumerate(waiters):
            if fut.done():
                continue
            if floe is None or interest is None or floe in interest:
                del waiters[index]
                fut.set_result(floe)
                return

    async def wait(self, interest: Collection[Floe[Any]] | None) -> None:
        """Wait until an item may be available on one of ``interest`` (None: any floe).

        On cancel: a wake-up already delivered to this waiter goes to the next waiter that
        can take from the floe that caused it, then ``CancelledError`` propagates.
        """
        fut: asyncio.Future[Floe[Any] | None] = asyncio.get_running_loop().create_future()
        entry = (fut, interest)
        self._waiters.append(entry)
        try:
            await fut
        except BaseException:
            if fut.done() and not fut.cancelled():
                self.notify(fut.result())
            else:
                fut.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(entry)
            raise


class _Producer:
    """A producer waiting for room: its future, its item, and what to call once it is in."""

    __slots__ = ("entered", "future", "item", "key")

    def __init__(
        self,
        future: asyncio.Future[None],
        item: Any,
        entered: Callable[..., object] | None,
        key: str | None,
    ) -> None:
        self.future = future
        self.item = item
        self.entered = entered
        self.key = key

    def enter(self) -> None:
        """Call ``entered`` (see ``Floe.push``)."""
        entered = self.entered
        if entered is not None:
            if self.key is None:
                entered()
            else:
                entered(self.key)


class Floe(Generic[T]):
    """A bounded FIFO edge from ``source`` to ``target``.

    The engine uses ``try_push``/``push`` and ``pop_nowait``/``pop``. For the contract, which
    describes ``floe.queue`` as an ``asyncio.Queue``, ``queue`` is the floe itself and the
    floe answers ``asyncio.Queue``'s own calls (``put``, ``put_nowait``, ``get``,
    ``get_nowait``, ``qsize``, ``maxsize``, ``empty``, ``full``).

    Attributes:
        source: The producing node or endpoint (None for a floe outside a graph).
        target: The consuming node or endpoint (None for a floe outside a graph).
        items: The queued items, oldest first. Read it for depths; never change it.
        listener: Called after every push, and when a producer starts waiting (see
            ``ReadySignal``, ``Results``); set through ``listen``.
        loop: The loop of the flow running on the floe, set by the flow for its run (None:
            the running loop is asked when a waiter needs a future).
    """

    __slots__ = (
        "_consumers",
        "_failure",
        "_failures",
        "_limit",
        "_producers",
        "_resuming",
        "items",
        "listener",
        "loop",
        "source",
        "target",
    )

    def __init__(
        self, source: Node | Endpoint | None, target: Node | Endpoint | None, *, maxsize: int
    ) -> None:
        self.source = source
        self.target = target
        self.items: deque[T] = deque()
        # A limit of 0 stands for "unbounded" in the one comparison that uses it: a floe has
        # room while ``len(items) < limit or not limit``.
        self._limit = max(maxsize, 0)
        # Both lines of waiters start as an empty tuple and become deques when someone first
        # waits: most floes (a caller's inbox, say) never see a producer wait.
        self._producers: deque[_Producer] | tuple[()] = ()
        # Producers whose item moved in but who have not resumed yet. While there are any,
        # a free slot is theirs to refill first: a push that did not wait in line is refused,
        # so the first producer to resume cannot take every slot the others freed.
        self._resuming = 0
        self._consumers: deque[asyncio.Future[None]] | tuple[()] = ()
        # Bumped by fail_consumers, so that a consumer woken but not yet resumed fails too.
        self._failures = 0
        self._failure: BaseException | None = None
        self.listener: Callable[[], None] | None = None
        # Asking asyncio for the running loop costs a system call (a fork check) in CPython
        # 3.11, once per waiting producer and consumer: the flow hands its loop over instead.
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- the engine's interface -----------------------------------------------------------------

    @property
    def maxsize(self) -> int:
        """The size limit; 0 means unbounded."""
        return self._limit

    def has_room(self) -> bool:
        """Return whether a push would not wait (a free slot that no producer in line owns)."""
        return (len(self.items) < self._limit or not self._limit) and not self._resuming

    def try_push(self, item: T) -> bool:
        """Append ``item`` if there is room; return whether it did. Never waits."""
        items = self.items
        if len(items) >= self._limit > 0 or self._resuming:
            return False
        items.append(item)
        listener = self.listener
        if listener is not None:
            listener()
        if self._consumers:
            self._wake_consumer()
        return True

    async def push(
        self, item: T, entered: Callable[..., object] | None = None, key: str | None = None
    ) -> None:
        """Append ``item``, waiting in line for room while the floe is full.

        ``entered(key)`` (``entered()`` without a key) is called in the very step in which the
        item enters the floe (before any consumer can take it), for bookkeeping that must not
        lag behind: a trace's count. (A key rather than a partial or a tuple of arguments: a
        waiting producer then holds no object of its own besides its future, its place in
        line and its coroutine.)

        On cancel: an item that has not entered is withdrawn, and ``CancelledError``
        propagates; one that entered stays (it is delivered), and ``CancelledError`` still
        propagates.
        """
        producer = self.line_up(item, entered, key)
        if producer is None:
            return
        try:
            await producer.future
        except BaseException:
            self.withdraw(producer)
            raise
        self.resumed()

    # ``push`` in three steps, for a caller that waits in its own coroutine rather than in
    # ``push``'s (``PenguiFlow.emit``): ``line_up``; if it returned a place, ``await
    # place.future``, then ``resumed()``, or ``withdraw(place)`` on any exception.

    def line_up(
        self, item: T, entered: Callable[..., object] | None = None, key: str | None = None
    ) -> _Producer | None:
        """Append ``item`` now if there is room (None), else queue it and return its place."""
        if self.try_push(item):
            if entered is not None:
                if key is None:
                    entered()
                else:
                    entered(key)
            return None
        future: asyncio.Future[None] = (self.loop or asyncio.get_running_loop()).create_future()
        producer = _Producer(future, item, entered, key)
        producers = self._producers
        if not isinstance(producers, deque):
            producers = self._producers = deque()
        producers.append(producer)
        listener = self.listener
        if listener is not None:
            listener()  # a consumer may want to know who waits (see ``divert_waiting``)
        return producer

    def withdraw(self, producer: _Producer) -> None:
        """The producer in ``producer``'s place stopped waiting (cancelled, or failed).

        An item that entered already stays (delivered); one that has not is taken out of line.
        """
        future = producer.future
        if future.done() and not future.cancelled() and future.exception() is None:
            self.resumed()  # admitted, then cancelled: the item stays delivered
            return
        future.cancel()
        producers = self._producers
        if isinstance(producers, deque):
            with contextlib.suppress(ValueError):
                producers.remove(producer)

    def resumed(self) -> None:
        """An admitted producer resumed; once all have, the line refills the free slots."""
        self._resuming -= 1
        if not self._resuming and self._producers:
            self._admit_producers()

    def pop_nowait(self) -> T:
        """Take the oldest item without waiting.

        Raises:
            asyncio.QueueEmpty: the floe is empty.
        """
        items = self.items
        if not items:
            raise asyncio.QueueEmpty
        item = items.popleft()
        if self._producers:
            self._admit_producers()
        return item

    async def pop(self) -> T:
        """Take the oldest item, waiting in line for one.

        Cancellation-safe: an item is either returned or stays queued.

        Raises:
            BaseException: what ``fail_consumers`` was given while this call waited.
        """
        failures = self._failures
        while not self.items:
            if self._failures != failures and self._failure is not None:
                raise self._failure
            future: asyncio.Future[None] = (self.loop or asyncio.get_running_loop()).create_future()
            consumers = self._consumers
            if not isinstance(consumers, deque):
                consumers = self._consumers = deque()
            consumers.append(future)
            try:
                await future
            except BaseException:
                future.cancel()
                with contextlib.suppress(ValueError):
                    consumers.remove(future)
                if self.items and future.done() and not future.cancelled():
                    self._wake_consumer()  # pass on the wake-up this consumer received
                raise
        return self.pop_nowait()

    def remove_where(self, predicate: Callable[[T], bool]) -> list[T]:
        """Remove and return every queued item for which ``predicate`` is true.

        The rest keep their order; waiting producers move into the freed slots, in order.
        """
        removed = [item for item in self.items if predicate(item)]
        if removed:
            kept = [item for item in self.items if not predicate(item)]
            self.items.clear()  # in place: readers hold the deque for depth reads
            self.items.extend(kept)
            self._admit_producers()
        return removed

    def divert_waiting(self, predicate: Callable[[T], bool]) -> list[T]:
        """Take the items of waiting producers for which ``predicate`` is true, and return them.

        Each such producer is served as if its item had entered and been taken at once (its
        ``entered`` runs, its ``push`` returns); the others keep their place in line.
        """
        taken: list[T] = []
        kept: deque[_Producer] = deque()
        for producer in self._producers:
            if producer.future.done() or not predicate(producer.item):
                kept.append(producer)
                continue
            self._resuming += 1
            producer.enter()
            producer.future.set_result(None)
            taken.append(producer.item)
        if taken:
            self._producers = kept
        return taken

    def clear(self) -> list[T]:
        """Remove and return every queued item; waiting producers then move in, in order."""
        removed = list(self.items)
        self.items.clear()
        self._admit_producers()
        return removed

    def put_back(self, items: list[T]) -> None:
        """Append items taken from elsewhere in this flow, even past the size limit.

        For items already counted and accepted once (results moved between a caller's inbox
        and the shared results floe), which must not be refused or wait: the floe may then
        hold more than its limit until consumers catch up; producers wait meanwhile.
        """
        if items:
            self.items.extend(items)
            for _ in items:
                self._wake_consumer()

    def fail_producers(self, exc: BaseException) -> None:
        """Make every producer waiting in ``push`` raise ``exc``; their items never enter."""
        producers, self._producers = self._producers, ()
        for producer in producers:
            if not producer.future.done():
                producer.future.set_exception(exc)

    def fail_consumers(self, exc: BaseException) -> None:
        """Make every consumer waiting in ``pop`` raise ``exc``.

        That includes a consumer already woken by a push but not yet resumed, if it finds the
        floe empty when it does.
        """
        self._failures += 1
        self._failure = exc
        consumers, self._consumers = self._consumers, ()
        for future in consumers:
            if not future.done():
                future.set_exception(exc)

    def listen(self, signal: ReadySignal | None) -> None:
        """Have every push onto this floe wake ``signal``'s waiters (None: stop notifying)."""
        self.listener = None if signal is None else functools.partial(signal.notify, self)

    def statistics(self) -> FloeStatistics:
        """Return a snapshot of the floe's state."""
        return FloeStatistics(
            current_items=len(self.items),
            max_items=self._limit,
            waiting_producers=sum(1 for p in self._producers if not p.future.done()),
            waiting_consumers=sum(1 for f in self._consumers if not f.done()),
        )

    def _admit_producers(self) -> None:
        """Move waiting producers' items into free slots, oldest producer first."""
        producers, items, limit = self._producers, self.items, self._limit
        while producers and (len(items) < limit or not limit):
            producer = producers.popleft()
            if producer.future.done():
                continue  # cancelled while waiting
            self._resuming += 1
            items.append(producer.item)
            if producer.entered is not None:
                producer.enter()
            producer.future.set_result(None)
            listener = self.listener
            if listener is not None:
                listener()
            if self._consumers:
                self._wake_consumer()

    def _wake_consumer(self) -> None:
        consumers = self._consumers
        while consumers:
            future = consumers.popleft()
            if not future.done():
                future.set_result(None)
                return

    # -- asyncio.Queue's calls, for the contract's ``floe.queue`` ---------------------------------

    @property
    def queue(self) -> Floe[T]:
        """The floe itself, answering ``asyncio.Queue``'s calls (the contract's ``.queue``)."""
        return self

    def qsize(self) -> int:
        """Return the number of queued items."""
        return len(self.items)

    def empty(self) -> bool:
        """Return whether no item is queued."""
        return not self.items

    def full(self) -> bool:
        """Return whether a push would wait."""
        return not self.has_room()

    def put_nowait(self, item: T) -> None:
        """Push without waiting; pushed items are not counted against any trace.

        Raises:
            asyncio.QueueFull: the floe is full.
        """
        if not self.try_push(item):
            raise asyncio.QueueFull

    async def put(self, item: T) -> None:
        """Push, waiting for room; see ``push``."""
        await self.push(item)

    def get_nowait(self) -> T:
        """Take the oldest item; see ``pop_nowait``."""
        return self.pop_nowait()

    async def get(self) -> T:
        """Take the oldest item, waiting for one; see ``pop``."""
        return await self.pop()

    def __repr__(self) -> str:
        src = getattr(self.source, "name", None)
        dst = getattr(self.target, "name", None)
        return f"<Floe {src}->{dst} {len(self.items)}/{self._limit}>"
