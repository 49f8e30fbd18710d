"""``Inbox``: the results of one subscribed trace, and the ``fetch(trace_id=...)`` calls waiting.

An inbox behaves as an unbounded floe with no producers (``Results`` bounds it): items come
out oldest first, waiters are woken in arrival order, a woken waiter takes its item when it
resumes (so an item is either returned or still queued), and ``fail`` makes every waiter
raise, including one woken but not yet resumed that finds the inbox empty.

Design note (cost): a server makes an inbox per request, and what it allocates while its
caller waits is what the garbage collector walks, again and again (and enough of it, in one
burst of results, sets a collection off). So a roundtrip's inbox is one object: its one
result and its one waiter are kept as they are, and a queue of results, or a line of
waiters, is made only when a second one comes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

__all__ = ["Inbox"]


class Inbox:
    """Results of one subscribed trace (oldest first), and who waits for them.

    Attributes:
        size: How many results are queued (read it; only the methods change it).
        fetchers: ``fetch(trace_id=...)`` calls waiting on it.
        token: The roundtrip lock held by the ``emit(trace_id=...)`` that subscribed it.
        expiry: Set while abandoned: when its results are dropped.
        failures: How many times ``fail`` was called: a fetch reads it before it waits.
    """

    __slots__ = (
        "_failure",
        "_head",
        "_rest",
        "_waiters",
        "expiry",
        "failures",
        "fetchers",
        "size",
        "token",
    )

    def __init__(self) -> None:
        self.size = 0
        self.fetchers = 0
        self.token: object | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.failures = 0
        self._failure: BaseException | None = None
        # The oldest result, then the others in a queue made when a second one waits: a
        # roundtrip's one result needs no queue.
        self._head: Any = None
        self._rest: deque[Any] | tuple[()] = ()
        # None, the one waiting future, or (once a second comes) a line of them, oldest first.
        self._waiters: asyncio.Future[None] | deque[asyncio.Future[None]] | None = None

    def qsize(self) -> int:
        """Return the number of queued results."""
        return self.size

    def push(self, item: Any) -> None:
        """Queue ``item`` and wake the longest-waiting fetch."""
        if self.size:
            rest = self._rest
            if not isinstance(rest, deque):
                rest = self._rest = deque()
            rest.append(item)
        else:
            self._head = item
        self.size += 1
        waiters = self._waiters
        if waiters is None:
            return
        if isinstance(waiters, deque):
            self._wake()
        else:  # a roundtrip's one waiter, woken here rather than through another call
            self._waiters = None
            if not waiters.done():
                waiters.set_result(None)

    def put_back(self, items: list[Any]) -> None:
        """Queue results taken from elsewhere (the shared floe), waking a fetch for each."""
        for item in items:
            self.push(item)

    def clear(self) -> list[Any]:
        """Remove and return every queued result, oldest first."""
        if not self.size:
            return []
        removed = [self._head, *self._rest]
        self._head = None
        self._rest = ()
        self.size = 0
        return removed

    def take_nowait(self) -> Any:
        """Take the oldest result (the caller checked ``size``)."""
        item = self._head
        rest = self._rest
        self._head = rest.popleft() if rest else None
        self.size -= 1
        return item

    def waiter(
        self, failures: int, loop: asyncio.AbstractEventLoop | None = None
    ) -> asyncio.Future[None]:
        """Queue up for the next result: a future set when one may be there.

        ``loop`` is the running loop, when the caller knows it (asking asyncio costs a system
        call in CPython 3.11).

        Raises:
            BaseException: what ``fail`` was given since the fetch read ``failures``.
        """
        if self.failures != failures and self._failure is not None:
            raise self._failure
        future: asyncio.Future[None] = (loop or asyncio.get_running_loop()).create_future()
        waiters = self._waiters
        if waiters is None:
            self._waiters = future
        elif isinstance(waiters, deque):
            waiters.append(future)
        else:
            self._waiters = deque((waiters, future))
        return future

    def withdraw(self, future: asyncio.Future[None]) -> None:
        """A waiter stopped waiting (cancelled, or failed): leave no place behind.

        A wake-up it received goes to the next waiter when a result is queued.
        """
        woken = future.done() and not future.cancelled()
        future.cancel()
        waiters = self._waiters
        if waiters is future:
            self._waiters = None
        elif isinstance(waiters, deque) and future in waiters:
            waiters.remove(future)
        if woken and self.size:
            self._wake()

    def fail(self, exc: BaseException) -> None:
        """Make every waiting fetch raise ``exc``.

        That includes a fetch already woken but not yet resumed, if it finds the inbox empty.
        """
        self.failures += 1
        self._failure = exc
        waiters, self._waiters = self._waiters, None
        if isinstance(waiters, deque):
            for future in waiters:
                if not future.done():
                    future.set_exception(exc)
        elif waiters is not None and not waiters.done():
            waiters.set_exception(exc)

    def _wake(self) -> None:
        waiters = self._waiters
        if isinstance(waiters, deque):
            while waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(None)
                    return
        elif waiters is not None:
            self._waiters = None
            if not waiters.done():
                waiters.set_result(None)
