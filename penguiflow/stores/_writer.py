"""``BatchWriter``: the one task per store that commits queued writes in batches.

Savers put writes into a bounded buffer and return at once while there is room; the writer
task takes everything available (up to ``batch_size``) and commits it in one transaction
(group commit). When the buffer is full, ``put`` waits, which slows the flow down instead of
dropping writes or growing memory. A failed commit is logged and retried, with exponential
backoff, until it succeeds or ``close()``'s timeout runs out; the batch is never dropped
silently. While commits fail the writer says so: ``status`` is ``degraded`` from the first
failed commit, ``failing`` once they have failed for ``failing_after_s`` in a row, and ``ok``
again after a commit succeeds.

Design note: the buffer is a deque with FIFO waiting savers (as anyio's memory streams)
rather than an ``asyncio.Queue``, because Python 3.11's queue cannot wake the savers blocked
in ``put`` when the writer dies or the store is closed, and takes a batch one wakeup per item.
Writes count against the capacity until they are committed, so memory holds at most
``buffer_size`` writes however slow the database is.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Generic, Literal, TypeVar, final

from ._errors import (
    FlushTimeoutError,
    StoreBrokenError,
    StoreClosedError,
    StoreFailingError,
    WriteBufferFull,
    WritesAbandonedError,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence

    from ._errors import StoreError

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT_S",
    "DEFAULT_FAILING_AFTER_S",
    "Backoff",
    "BatchWriter",
    "WriterStatistics",
    "WriterStatus",
]

T = TypeVar("T")
logger = logging.getLogger("penguiflow.stores")

WRITE_FAILED: Final = "state_store_write_failed"
WRITE_RECOVERED: Final = "state_store_write_recovered"
WRITES_ABANDONED: Final = "state_store_writes_abandoned"
WRITER_STOPPED: Final = "state_store_writer_stopped"

_State = Literal["open", "closed", "broken"]
WriterStatus = Literal["ok", "degraded", "failing"]

DEFAULT_FAILING_AFTER_S: Final = 30.0
"""Seconds of consecutive failed commits after which ``status`` turns ``failing``."""
STALLED_AFTER_S: Final = 2.0
"""A commit unanswered this long makes the status ``degraded`` (see ``BatchWriter.status``)."""
DEFAULT_CLOSE_TIMEOUT_S: Final = 10.0
"""Seconds ``close()`` waits for the pending writes to commit before abandoning them."""


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff between commit attempts: ``initial_s * 2**n``, at most ``max_s``."""

    initial_s: float = 0.05
    """Seconds to wait after the first failure."""
    max_s: float = 5.0
    """The cap on any wait."""

    def __post_init__(self) -> None:
        if not 0 <= self.initial_s <= self.max_s:
            raise ValueError(
                f"Backoff needs 0 <= initial_s <= max_s, got {self.initial_s} and {self.max_s}"
            )

    def delay(self, failures: int) -> float:
        """Return the seconds to wait after ``failures`` consecutive failures (1 or more)."""
        return min(self.initial_s * 2.0 ** min(failures - 1, 64), self.max_s)


@dataclass(frozen=True, slots=True)
class WriterStatistics:
    """A snapshot of a writer's buffer and counters."""

    buffered: int
    """Writes accepted and not yet committed (queued, or in the batch being committed)."""
    buffer_size: int
    """The most writes ``buffered`` may reach; then savers wait."""
    waiting_savers: int
    """Savers waiting for room."""
    committed: int
    """Writes committed since the writer was made."""
    failures: int
    """Failed commit attempts since the writer was made."""


class _Buffer(Generic[T]):
    """A bounded FIFO with waiting producers and one consumer, closable and failable."""

    def __init__(self, name: str, capacity: int) -> None:
        self.name = name
        self.capacity = capacity
        self.items: deque[T] = deque()
        self.held = 0  # taken by the consumer, not yet released
        self.accepted = 0
        self.producers: deque[tuple[asyncio.Future[None], T]] = deque()
        self.consumer: asyncio.Future[None] | None = None
        self.state: _State = "open"

    def error(self) -> StoreError:
        if self.state == "broken":
            return StoreBrokenError(self.name)
        return StoreClosedError(self.name)

    def put_nowait(self, item: T) -> None:
        if self.state != "open":
            raise self.error()
        if self.producers or len(self.items) + self.held >= self.capacity:
            raise WriteBufferFull(self.name, self.capacity)
        self._accept(item)

    async def put(self, item: T) -> None:
        if self.state != "open":
            raise self.error()
        if not self.producers and len(self.items) + self.held < self.capacity:
            self._accept(item)
            return
        waiter = asyncio.get_running_loop().create_future()
        entry = (waiter, item)
        self.producers.append(entry)
        try:
            await waiter
        except asyncio.CancelledError:
            # Not admitted yet: withdraw the item, so it is neither lost silently nor
            # written after the caller was told it was cancelled.
            if entry in self.producers:
                self.producers.remove(entry)
            raise

    def _accept(self, item: T) -> None:
        self.items.append(item)
        self.accepted += 1
        consumer = self.consumer
        if consumer is not None and not consumer.done():
            consumer.set_result(None)

    async def take(self, limit: int) -> list[T]:
        items = self.items
        while not items:
            self.consumer = asyncio.get_running_loop().create_future()
            try:
                await self.consumer
            finally:
                self.consumer = None
        count = min(limit, len(items))
        self.held += count
        return [items.popleft() for _ in range(count)]

    def release(self, count: int) -> None:
        """The consumer is done with ``count`` taken items: admit waiting producers."""
        self.held -= count
        producers = self.producers
        while producers and len(self.items) + self.held < self.capacity:
            waiter, item = producers.popleft()
            if not waiter.done():  # a cancelled producer keeps its item
                self._accept(item)
                waiter.set_result(None)

    def shut(self, state: _State) -> None:
        """Refuse new items from now on; ``broken`` also fails the waiting producers."""
        self.state = state
        if state == "broken":
            self.fail_producers()

    def fail_producers(self) -> None:
        while self.producers:
            waiter, _ = self.producers.popleft()
            if not waiter.done():
                waiter.set_exception(self.error())


@final
class BatchWriter(Generic[T]):
    """Commits queued writes in batches from one task: bounded, ordered, retried.

    The writer task starts with ``start()`` (or the first ``put``) and ends in ``close()``;
    the store that makes the writer owns it. Writes are committed in the order they were
    accepted. ``failures`` counts failed commit attempts.

    Args:
        commit: Writes one batch in one transaction; raising means nothing was written.
        name: Names the store in logs and errors.
        batch_size: The most writes per commit.
        buffer_size: The most writes held (queued or being committed); then ``put`` waits.
        backoff: Waits between commit attempts.
        sleep: Waits ``backoff`` seconds; tests inject a fake clock's sleep.
        failing_after_s: Seconds of consecutive failed commits after which ``status`` is
            ``failing`` (measured on the event loop's clock).

    Raises:
        ValueError: ``batch_size`` < 1, ``buffer_size`` < ``batch_size`` or a negative
            ``failing_after_s``.
    """

    def __init__(
        self,
        commit: Callable[[Sequence[T]], Awaitable[None]],
        *,
        name: str,
        batch_size: int = 512,
        buffer_size: int = 8192,
        backoff: Backoff | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        failing_after_s: float = DEFAULT_FAILING_AFTER_S,
    ) -> None:
        if not 1 <= batch_size <= buffer_size:
            raise ValueError(
                f"{name}: need 1 <= batch_size <= buffer_size, got {batch_size} and {buffer_size}"
            )
        if not failing_after_s >= 0:
            raise ValueError(f"{name}: need failing_after_s >= 0, got {failing_after_s!r}")
        self._commit = commit
        self._name = name
        self._batch_size = batch_size
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._buffer: _Buffer[T] = _Buffer(name, buffer_size)
        self._flushers: deque[tuple[int, asyncio.Future[None]]] = deque()
        # Waiters of ``sync``: as flushers, but failed once the status is ``failing``.
        self._syncers: deque[tuple[int, asyncio.Future[None]]] = deque()
        self._committed = 0
        self._task: asyncio.Task[None] | None = None
        self._failing_after_s = failing_after_s
        self._loop: asyncio.AbstractEventLoop | None = None
        # The loop time of the first failed commit of the current run of failures.
        self._failing_since: float | None = None
        self.failures = 0
        """Failed commit attempts so far."""
        self._last_error: Exception | None = None
        # The loop time the commit attempt under way began; None between attempts.
        self._attempt_since: float | None = None

    @property
    def status(self) -> WriterStatus:
        """``ok``, ``degraded`` (commits are failing, or one is stalled) or ``failing``.

        ``failing`` once commits have failed for ``failing_after_s`` in a row (or one commit
        has gone unanswered that long), or when the writer task stopped on its own; back to
        ``ok`` when a commit succeeds. A commit unanswered for ``STALLED_AFTER_S`` counts as
        failing from when it began: a server that accepts but never answers shows at once,
        not only when the database driver's own timeout ends the attempt.
        """
        if self._buffer.state == "broken":
            return "failing"
        since = self._trouble_since()
        if since is None:
            return "ok"
        assert self._loop is not None  # set when the task started, before any attempt
        if self._loop.time() - since >= self._failing_after_s:
            return "failing"
        return "degraded"

    @property
    def last_error(self) -> Exception | None:
        """The error of the last failed commit while ``status`` is not ``ok``; else None.

        While a commit is stalled with no earlier failure, a ``TimeoutError`` saying so.
        """
        if self._last_error is not None:
            return self._last_error
        since = self._trouble_since()
        if since is None or self._loop is None:
            return None
        waited = self._loop.time() - since
        return TimeoutError(f"a commit has had no answer for {waited:.1f} s")

    def _trouble_since(self) -> float | None:
        """When the current run of failed (or stalled) commits began, on the loop's clock."""
        if self._failing_since is not None:
            return self._failing_since
        attempt = self._attempt_since
        if attempt is None or self._loop is None:
            return None
        if self._loop.time() - attempt < STALLED_AFTER_S:
            return None
        return attempt

    @property
    def pending(self) -> int:
        """Writes accepted or waiting for room that are not committed yet."""
        buffer = self._buffer
        return buffer.accepted - self._committed + len(buffer.producers)

    def statistics(self) -> WriterStatistics:
        """Return a snapshot of the buffer and the counters."""
        buffer = self._buffer
        return WriterStatistics(
            buffered=len(buffer.items) + buffer.held,
            buffer_size=buffer.capacity,
            waiting_savers=len(buffer.producers),
            committed=self._committed,
            failures=self.failures,
        )

    def start(self) -> None:
        """Start the writer task if it is not running; needs a running loop.

        Raises:
            StoreClosedError: the writer was closed.
        """
        if self._buffer.state != "open":
            raise self._buffer.error()
        if self._task is None:
            self._loop = asyncio.get_running_loop()
            self._task = self._loop.create_task(
                self._run(), name=f"penguiflow.stores writer: {self._name}"
            )
            self._task.add_done_callback(self._on_done)

    def put_nowait(self, item: T) -> None:
        """Accept ``item`` for writing, or raise instead of waiting for room.

        Raises:
            WriteBufferFull: no room, or savers are already waiting for room.
            StoreClosedError: the writer was closed.
            StoreBrokenError: the writer task stopped unexpectedly.
        """
        if self._task is None:
            self.start()
        self._buffer.put_nowait(item)

    async def put(self, item: T) -> None:
        """Accept ``item`` for writing, waiting (in FIFO order) while the buffer is full.

        If cancelled while waiting, the item is withdrawn and not written.

        Raises:
            StoreClosedError: the writer was closed.
            StoreBrokenError: the writer task stopped unexpectedly (also wakes waiters).
        """
        if self._task is None:
            self.start()
        await self._buffer.put(item)

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every write accepted before this call is committed.

        With ``timeout_s``, waits at most that long; the writes stay queued and the writer
        keeps retrying them. Cancelling the wait leaves the writes queued too.

        Raises:
            FlushTimeoutError: ``timeout_s`` passed first (``pending`` says how many writes
                were not committed then).
            StoreBrokenError: the writer task stopped before committing them.
            StoreClosedError: ``close()`` gave up and abandoned them.
        """
        waiter = self._waiter(self._flushers, fail_when_failing=False)
        if waiter is None:
            return
        if timeout_s is None:
            await waiter
            return
        try:
            await asyncio.wait_for(waiter, timeout_s)
        except TimeoutError:
            raise FlushTimeoutError(self._name, self.pending, timeout_s) from self.last_error

    async def sync(self) -> None:
        """Wait until every write accepted before this call is committed, unless failing.

        The group commit behind durable admission: the callers waiting here at one time are
        woken together by the commit of the batch that holds their writes. Unlike ``flush``
        this gives up once the status is ``failing`` (checked after each failed commit), so
        a caller is told its write is not durable instead of waiting for as long as the
        database is down. The writes stay queued either way.

        Raises:
            StoreFailingError: the status is, or becomes, ``failing`` first.
            StoreBrokenError: the writer task stopped before committing them.
            StoreClosedError: ``close()`` gave up and abandoned them.
        """
        waiter = self._waiter(self._syncers, fail_when_failing=True)
        if waiter is not None:
            await waiter

    def _waiter(
        self, line: deque[tuple[int, asyncio.Future[None]]], *, fail_when_failing: bool
    ) -> asyncio.Future[None] | None:
        """A future for the commit of everything accepted so far, queued on ``line``.

        None when all of it is committed already.
        """
        target = self._buffer.accepted
        if self._committed >= target:
            return None
        if self._buffer.state == "broken":
            raise self._buffer.error()
        if fail_when_failing and self.status == "failing":
            raise StoreFailingError(self._name, self.last_error)
        waiter = asyncio.get_running_loop().create_future()
        line.append((target, waiter))
        return waiter

    async def close(self, timeout_s: float | None = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Refuse new writes, commit everything accepted or waiting, then stop the task.

        Waits at most ``timeout_s`` seconds (None: as long as commits keep failing). If the
        time runs out, or the call is cancelled, it gives up: the writes still pending are
        logged as ``state_store_writes_abandoned`` with their count, waiting savers and
        flushers are failed with ``StoreClosedError``, and the task is stopped either way.
        Idempotent: a second call returns at once.

        Raises:
            WritesAbandonedError: ``timeout_s`` passed with writes still pending; its
                ``count`` says how many were lost.
        """
        buffer = self._buffer
        if buffer.state == "closed":
            return
        if buffer.state == "open":
            buffer.shut("closed")
        task = self._task
        if task is None:
            return
        abandoned = 0
        try:
            async with asyncio.timeout(timeout_s):
                while not task.done() and self.pending:
                    await self.flush()
        except asyncio.CancelledError:
            self._log_abandoned()
            raise
        except TimeoutError:
            abandoned = self._log_abandoned()
        finally:
            task.cancel()
            await asyncio.wait([task])
            buffer.fail_producers()
            self._fail_flushers(buffer.error())
        if abandoned:
            assert timeout_s is not None  # only the timeout gives up without a cancel
            raise WritesAbandonedError(self._name, abandoned, timeout_s) from self.last_error

    def _log_abandoned(self) -> int:
        count = self.pending
        logger.error(
            WRITES_ABANDONED,
            exc_info=self.last_error,
            extra={"event": WRITES_ABANDONED, "store": self._name, "count": count},
        )
        return count

    async def _run(self) -> None:
        buffer = self._buffer
        while True:
            batch = await buffer.take(self._batch_size)
            await self._commit_with_retry(batch)
            self._committed += len(batch)
            buffer.release(len(batch))
            self._wake_flushers()

    async def _commit_with_retry(self, batch: Sequence[T]) -> None:
        failures = 0
        loop = asyncio.get_running_loop()
        while True:
            self._attempt_since = loop.time()
            try:
                await self._commit(batch)
            except Exception as exc:
                # Retried until it succeeds: dropping the batch would lose events silently.
                if self._failing_since is None:
                    stalled = self._trouble_since()
                    self._failing_since = loop.time() if stalled is None else stalled
                self._attempt_since = None
                failures += 1
                self.failures += 1
                self._last_error = exc
                delay = self._backoff.delay(failures)
                logger.error(
                    WRITE_FAILED,
                    exc_info=exc,
                    extra={
                        "event": WRITE_FAILED,
                        "store": self._name,
                        "attempt": failures,
                        "batch_size": len(batch),
                        "retry_in_s": delay,
                        "exception": repr(exc),
                    },
                )
                if self.status == "failing":
                    self._fail_syncers(StoreFailingError(self._name, exc))
                await self._sleep(delay)
                continue
            self._attempt_since = None
            self._failing_since = None
            self._last_error = None
            if failures:
                logger.info(
                    WRITE_RECOVERED,
                    extra={"event": WRITE_RECOVERED, "store": self._name, "attempt": failures + 1},
                )
            return

    def _wake_flushers(self) -> None:
        for flushers in (self._flushers, self._syncers):
            while flushers and flushers[0][0] <= self._committed:
                _, waiter = flushers.popleft()
                if not waiter.done():
                    waiter.set_result(None)

    def _fail_flushers(self, error: Exception) -> None:
        while self._flushers:
            _, waiter = self._flushers.popleft()
            if not waiter.done():
                waiter.set_exception(error)
        self._fail_syncers(error)

    def _fail_syncers(self, error: Exception) -> None:
        while self._syncers:
            _, waiter = self._syncers.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() and self._buffer.state == "closed":
            return
        # The task ended on its own (a bug) or was cancelled by someone else: nothing
        # will commit the pending writes, so say how many and wake everyone waiting.
        error = None if task.cancelled() else task.exception()
        buffer = self._buffer
        pending = self.pending
        logger.error(
            WRITER_STOPPED,
            exc_info=error,
            extra={"event": WRITER_STOPPED, "store": self._name, "count": pending},
        )
        buffer.shut("broken")
        self._fail_flushers(buffer.error())
