"""``StoreBase``: what every store shares — its writer, its lifecycle and its public methods.

A concrete store supplies a backend: how to open and release it, how to commit a batch of
writes in one transaction, and how to answer the four reads. Everything else (queueing
writes in order, backpressure, retries, read-your-writes, validation of arguments) is here,
so the three stores behave alike and one conformance suite checks them all.

It is over 500 lines because it is the stores' whole public surface (with the leases each
opening holds), documented once here rather than three times.
"""

from __future__ import annotations

import abc
import asyncio
import dataclasses
import logging
import math
import os
import socket
import uuid
from typing import TYPE_CHECKING, Final, Literal, TypeAlias

from ._codec import encode_json
from ._errors import StoreClosedError, StoreError, WriteBufferFull
from ._types import (
    END_STATUSES,
    TRACE_STATUSES,
    BindingQuery,
    BindingSave,
    BindingTerminal,
    LeaseRenew,
    StoredTrace,
    TraceEnd,
    TraceQuery,
    TraceStart,
    TraceStatus,
    WriteOp,
)
from ._writer import (
    DEFAULT_CLOSE_TIMEOUT_S,
    DEFAULT_FAILING_AFTER_S,
    Backoff,
    BatchWriter,
    WriterStatistics,
    WriterStatus,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence
    from types import TracebackType
    from typing import Self

    from ..state import RemoteBinding, StoredEvent

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT_S",
    "DEFAULT_FAILING_AFTER_S",
    "DEFAULT_LEASE_TTL_S",
    "DEFAULT_RETENTION_S",
    "Durability",
    "Lease",
    "StoreBase",
    "binding_key",
]

DEFAULT_RETENTION_S: Final = 7 * 24 * 3600.0
"""How long ``prune()`` keeps a finished trace after it ended, by default: 7 days, in seconds."""
DEFAULT_LEASE_TTL_S: Final = 10.0
"""How long a store's lease lasts without a heartbeat, by default (it beats every third)."""
_CLAIM_BATCH: Final = 1000
_END_LEASE_TIMEOUT_S: Final = 2.0
logger = logging.getLogger("penguiflow.stores")

Durability: TypeAlias = Literal["commit", "queued"]
"""When a journaled trace's start and end count as written: see ``StoreBase``."""


@dataclasses.dataclass(frozen=True, slots=True)
class Lease:
    """A store's claim, as one process, on the traces it runs (see ``StoreBase``)."""

    lease_id: str
    """Unique to this opening of the store."""
    owner: str
    """Names the process: ``owner_id`` if given, else ``host:pid``."""
    host: str
    """The host name of the process."""
    pid: int
    """The process id."""
    exclusive: bool
    """Whether ``owner`` was given: then at most one live store uses it, and opening ends
    the leases of the owner's earlier openings."""


def _event_kinds(name: str, events: str | Iterable[str]) -> frozenset[str] | None:
    if events == "all":
        return None
    if events == "none":
        return frozenset()
    if isinstance(events, str):
        raise ValueError(
            f"{name}: events must be 'all', 'none' or a collection of event kinds, got {events!r}"
        )
    kinds = frozenset(events)
    wrong = sorted(repr(kind) for kind in kinds if not isinstance(kind, str))
    if wrong:
        raise ValueError(f"{name}: events must be strings (event kinds), got {', '.join(wrong)}")
    return kinds


def binding_key(trace_id: str, context_id: str | None, task_id: str) -> str:
    """Return the key that identifies a remote binding: its trace, context and task."""
    return encode_json([trace_id, context_id, task_id])


class StoreBase(abc.ABC):
    """A state store whose writes go through one ``BatchWriter``.

    Every write (``save_event``, ``save_trace_start``, ``save_trace_end``,
    ``save_remote_binding``, ``mark_binding_terminal``) is queued and committed in call order
    by the store's writer task; it returns as soon as the write is queued, and waits while
    the buffer is full. Every read first waits for the writes queued before it (so a store
    reads its own writes), then asks the backend. While commits fail that wait is bounded: at
    most ``failing_after_s``, and none once ``status`` is ``failing``; then the read raises
    ``FlushTimeoutError`` (the writes stay queued).

    The store opens on ``start()``, ``async with``, or the first call; ``close()`` commits
    what is queued and releases the backend; a closed store refuses every call with
    ``StoreClosedError``.

    Subclass hook: ``_commit_batch(batch)`` is what the writer calls; a subclass may
    override it to delay or fail commits (the conformance tests do).

    Args:
        name: Names the store and where it keeps its data, in logs and errors.
        batch_size: The most writes committed in one transaction.
        buffer_size: The most writes held before savers wait.
        retry_initial_s: The wait after a first failed commit; it doubles on each failure.
        retry_max_s: The cap on the wait between commit attempts.
        failing_after_s: Seconds of failed commits in a row after which ``status`` is
            ``failing`` (and a flow refuses new traces).
        clock: The wall clock that stamps traces, bindings and leases (epoch seconds).
        durability: ``"commit"`` (the default): a flow's ``emit()`` returns once the trace's
            start is committed and ``fetch()`` hands out a trace's result once its end is;
            ``"queued"``: both return once the write is queued, which is faster, but a crash
            loses what was queued and not committed (at most ``batch_size`` writes, usually
            the last few milliseconds): acknowledged traces may be lost, fetched ones re-run.
        events: Which flow events to keep: ``"all"`` (the default), ``"none"`` (only the
            trace journal), or the event kinds to keep; the flow builds no event the store
            does not keep (unless a middleware or the log wants it).
        owner_id: Names this process in the store's leases. When given, it must be unique
            among live processes, and a restarted process that gives it again takes over
            its earlier traces at once; by default (``host:pid``) a dead process's traces
            are taken over once its lease expires.
        lease_ttl_s: How long the store's lease lasts without a heartbeat (it beats every
            third of it); ``recover()`` in another process takes over this one's traces
            only once it has expired.

    Raises:
        ValueError: inconsistent sizes or retry waits, an unknown ``durability``, ``events``
            that is not "all", "none" or strings, or a ``lease_ttl_s`` not finite and > 0.
    """

    def __init__(
        self,
        *,
        name: str,
        batch_size: int,
        buffer_size: int,
        retry_initial_s: float,
        retry_max_s: float,
        clock: Callable[[], float],
        failing_after_s: float = DEFAULT_FAILING_AFTER_S,
        durability: Durability = "commit",
        events: str | Iterable[str] = "all",
        owner_id: str | None = None,
        lease_ttl_s: float = DEFAULT_LEASE_TTL_S,
    ) -> None:
        if durability not in ("commit", "queued"):
            raise ValueError(f"{name}: durability must be 'commit' or 'queued', got {durability!r}")
        if not (isinstance(lease_ttl_s, (int, float)) and 0 < lease_ttl_s < math.inf):
            raise ValueError(f"{name}: lease_ttl_s must be finite and > 0, got {lease_ttl_s!r}")
        if owner_id is not None and (not isinstance(owner_id, str) or not owner_id):
            raise ValueError(f"{name}: owner_id must be a non-empty str, got {owner_id!r}")
        self.durability: Durability = durability
        """See the ``durability`` argument."""
        self.event_kinds: frozenset[str] | None = _event_kinds(name, events)
        """The event kinds the store keeps; None for all."""
        host, pid = socket.gethostname(), os.getpid()
        self.lease = Lease(
            uuid.uuid4().hex, owner_id or f"{host}:{pid}", host, pid, owner_id is not None
        )
        """This opening's lease: the traces it starts or takes over are its own."""
        self._lease_ttl_s = float(lease_ttl_s)
        self._heartbeat: asyncio.Task[None] | None = None
        self._writer: BatchWriter[WriteOp] = BatchWriter(
            self._commit_batch,
            name=name,
            batch_size=batch_size,
            buffer_size=buffer_size,
            backoff=Backoff(retry_initial_s, retry_max_s),
            failing_after_s=failing_after_s,
        )
        self._name = name
        self._clock = clock
        self._failing_after_s = failing_after_s
        self._phase: Literal["new", "started", "closed"] = "new"
        self._lock = asyncio.Lock()

    def describe(self) -> str:
        """Name the store and where it keeps its data, for logs and errors."""
        return self._name

    @property
    def opened(self) -> bool:
        """Whether the store is open: ``start()`` has returned and ``close()`` has not begun."""
        return self._phase == "started"

    @property
    def write_failures(self) -> int:
        """How many commit attempts have failed so far (each was logged and retried)."""
        return self._writer.failures

    @property
    def status(self) -> WriterStatus:
        """Whether writes are being committed: ``ok``, ``degraded`` or ``failing``.

        ``degraded`` from the first failed commit, ``failing`` once commits have failed for
        ``failing_after_s`` in a row (or the writer stopped on its own), ``ok`` again as soon
        as a commit succeeds. ``PenguiFlow.health()`` reports it, and a flow refuses new
        traces while it is ``failing``.
        """
        return self._writer.status

    @property
    def last_error(self) -> Exception | None:
        """The error of the last failed commit while ``status`` is not ``ok``; else None."""
        return self._writer.last_error

    @property
    def pending_writes(self) -> int:
        """Writes queued (or waiting for room) and not committed yet."""
        return self._writer.pending

    def statistics(self) -> WriterStatistics:
        """Return a snapshot of the writer's buffer and counters."""
        return self._writer.statistics()

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Open the backend (checking or creating its schema) and start the writer task.

        Does nothing if already started; concurrent calls open once.

        Raises:
            StoreClosedError: the store was closed.
            IncompatibleStoreError: the database is not a penguiflow store this code can use.
        """
        if self._phase == "started":
            return
        async with self._lock:
            if self._phase == "closed":
                raise StoreClosedError(self.describe())
            if self._phase == "new":
                await self._open()
                now = self._clock()
                try:
                    await self._register_lease(self.lease, now, now + self._lease_ttl_s)
                except BaseException:
                    await self._release()
                    raise
                self._writer.start()
                self._heartbeat = asyncio.get_running_loop().create_task(
                    self._beat(), name=f"penguiflow.stores heartbeat: {self._name}"
                )
                self._phase = "started"

    async def _beat(self) -> None:
        """Renew the lease every third of its time to live, through the writer (in order)."""
        lease, ttl = self.lease, self._lease_ttl_s
        while True:
            await asyncio.sleep(ttl / 3)
            if self._writer.status != "ok":
                # Commits are failing: a renewal could not commit either, and queued ones
                # would pile up behind the failing batch. The lease expires as it should.
                continue
            now = self._clock()
            try:
                await self._writer.put(LeaseRenew(lease.lease_id, lease.owner, now + ttl, now))
            except StoreError:
                return  # closed or broken: the lease expires by itself

    async def close(self, timeout_s: float | None = DEFAULT_CLOSE_TIMEOUT_S) -> None:
        """Commit every queued write, stop the writer and release the backend. Idempotent.

        Waits at most ``timeout_s`` seconds (10 by default; None waits as long as commits
        keep failing). When the time runs out, or the call is cancelled, the writes still
        pending are abandoned and logged as ``state_store_writes_abandoned`` with their
        count; the writer task and the backend (connection, pool, thread) are released
        either way, so nothing is left running.

        Raises:
            WritesAbandonedError: ``timeout_s`` passed with writes still pending; ``count``
                says how many were lost.
        """
        async with self._lock:
            if self._phase == "closed":
                return
            started = self._phase == "started"
            heartbeat, self._heartbeat = self._heartbeat, None
            if heartbeat is not None:
                heartbeat.cancel()
                await asyncio.wait([heartbeat])
            self._phase = "closed"
        try:
            await self._writer.close(timeout_s)
            if started:
                await self._end_lease_quietly()
        finally:
            if started:
                await self._release()

    async def _end_lease_quietly(self) -> None:
        """End the lease once everything is committed, bounded and best effort.

        What the store leaves running may then be taken over at once; if this fails, the
        lease simply expires.
        """
        try:
            async with asyncio.timeout(_END_LEASE_TIMEOUT_S):
                await self._end_lease(self.lease.lease_id)
        except Exception as exc:  # the database is gone: the lease expires by itself
            logger.warning(
                "state_store_lease_not_ended",
                extra={
                    "event": "state_store_lease_not_ended",
                    "store": self._name,
                    "exception": repr(exc),
                },
            )

    async def flush(self, timeout_s: float | None = None) -> None:
        """Wait until every write queued before this call is committed.

        Waits at most ``timeout_s`` seconds when given (``PenguiFlow.stop()`` passes 5);
        the writes stay queued and retried after a timeout.

        Raises:
            FlushTimeoutError: ``timeout_s`` passed first; ``pending`` says how many writes
                were not committed.
            StoreBrokenError: the writer task stopped before committing them.
        """
        await self._writer.flush(timeout_s)

    async def sync(self) -> None:
        """Wait until every write queued before this call is committed, unless failing.

        This is the group commit a flow waits on for a journaled trace's start and end
        (with ``durability="commit"``): callers waiting at one time share one commit.

        Raises:
            StoreFailingError: ``status`` is, or becomes, ``failing`` first; the writes stay
                queued and are retried.
            StoreBrokenError: the writer task stopped before committing them.
            StoreClosedError: the store was closed before they were committed.
        """
        await self._writer.sync()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # -------------------------------------------------------------------- writes

    async def save_event(self, event: StoredEvent) -> None:
        """Queue one event; waits only while the write buffer is full.

        Raises:
            StoreClosedError: the store was closed.
            StoreBrokenError: the writer task stopped unexpectedly.
        """
        if self._phase == "started":
            try:
                self._writer.put_nowait(event)  # the hot path: no await, no suspension
            except WriteBufferFull:
                await self._writer.put(event)
            return
        await self._enqueue(event)

    async def save_trace_start(
        self,
        trace_id: str,
        message_json: str,
        *,
        flow_key: str,
        targets: Sequence[str] | None = None,
    ) -> None:
        """Record that ``trace_id`` started (or started again) with this input, as running.

        ``message_json`` is kept verbatim; ``targets`` names the nodes it was sent to (None:
        every ingress node). The trace is this store's lease's. A restart keeps the first
        ``created_at``.
        """
        names = None if targets is None else encode_json(list(targets))
        op = TraceStart(trace_id, message_json, flow_key, self._clock(), self.lease.lease_id, names)
        await self._enqueue(op)

    async def save_trace_end(self, trace_id: str, status: str) -> None:
        """Record how a trace ended; a trace never started is left unrecorded.

        Raises:
            ValueError: ``status`` is not ``finished``, ``cancelled`` or ``failed``.
        """
        ended = END_STATUSES.get(status)
        if ended is None:
            raise ValueError(
                f"save_trace_end: status must be one of {tuple(END_STATUSES)}, got {status!r}"
            )
        await self._enqueue(TraceEnd(trace_id, ended, self._clock()))

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        """Save a binding, replacing the one with the same trace, context and task.

        A snapshot is queued, so later changes to ``binding`` are not saved.
        """
        snapshot = dataclasses.replace(binding, metadata=dict(binding.metadata))
        await self._enqueue(BindingSave(snapshot, self._clock()))

    async def mark_binding_terminal(
        self, *, trace_id: str, context_id: str | None, task_id: str
    ) -> None:
        """Record that a binding's remote task has finished; unknown bindings are ignored."""
        await self._enqueue(BindingTerminal(trace_id, context_id, task_id, self._clock()))

    async def _enqueue(self, op: WriteOp) -> None:
        if self._phase != "started":
            await self.start()
        await self._writer.put(op)

    # --------------------------------------------------------------------- reads

    async def load_history(self, trace_id: str) -> list[StoredEvent]:
        """Return the events of a trace in the order they were saved.

        Raises:
            CorruptRecordError: a stored event cannot be decoded.
        """
        await self._settle()
        return await self._read_history(trace_id)

    async def list_traces(
        self,
        *,
        status: TraceStatus | None = None,
        since: float | None = None,
        until: float | None = None,
        flow_key: str | None = None,
        limit: int = 100,
    ) -> list[StoredTrace]:
        """Return traces, most recently updated first.

        Args:
            status: Only traces with this status.
            since: Only traces updated at or after this time (epoch seconds).
            until: Only traces updated before this time (epoch seconds).
            flow_key: Only traces of this flow.
            limit: At most this many.

        Raises:
            ValueError: an unknown ``status`` or a negative ``limit``.
        """
        if status is not None and status not in TRACE_STATUSES:
            raise ValueError(
                f"list_traces: status must be one of {tuple(TRACE_STATUSES)}, got {status!r}"
            )
        if limit < 0:
            raise ValueError(f"list_traces: limit must be >= 0, got {limit}")
        await self._settle()
        query = TraceQuery(status, since, until, flow_key, limit)
        return await self._read_traces(query)

    async def unfinished_traces(self, flow_key: str) -> list[StoredTrace]:
        """Return the flow's traces that are still running, oldest first (for recovery)."""
        await self._settle()
        query = TraceQuery("running", flow_key=flow_key, limit=None, oldest_first=True)
        return await self._read_traces(query)

    async def claim_traces(self, flow_key: str) -> list[StoredTrace]:
        """Take over the flow's running traces that no other live lease holds, oldest first.

        A running trace is taken when it has no lease, or its lease has expired, or ended
        when its store closed, or was replaced by an ``owner_id`` given again; the traces of
        this store's own lease are returned too (the caller skips those it still runs).
        Each taken trace becomes this store's lease's, in the store, so two stores claiming
        at once never take one trace. Writes queued before the call are committed first.

        Raises:
            StoreClosedError: the store was closed.
        """
        await self._settle()
        claimed: list[StoredTrace] = []
        while True:
            batch = await self._claim(flow_key, self.lease.lease_id, self._clock(), _CLAIM_BATCH)
            claimed.extend(batch)
            if len(batch) < _CLAIM_BATCH:
                break
        claimed.sort(key=lambda trace: (trace.created_at, trace.trace_id))
        return claimed

    async def find_binding(
        self,
        *,
        router_session_id: str,
        agent_url: str,
        remote_skill: str | None,
        tenant_id: str | None = None,
        user_id: str | None = None,
    ) -> RemoteBinding | None:
        """Return the most recently saved binding matching every argument, or None.

        None arguments match only bindings where that field is None.
        """
        await self._settle()
        query = BindingQuery(router_session_id, agent_url, remote_skill, tenant_id, user_id)
        return await self._read_binding(query)

    async def list_bindings(self, *, router_session_id: str) -> list[RemoteBinding]:
        """Return the bindings of a routing session, least recently saved first."""
        await self._settle()
        return await self._read_bindings(router_session_id)

    # ----------------------------------------------------------------- retention

    async def prune(self, older_than_s: float = DEFAULT_RETENTION_S) -> int:
        """Remove the traces that ended more than ``older_than_s`` ago, with their data.

        A trace is removed when its status is ``finished``, ``failed`` or ``cancelled`` and it
        ended strictly before ``clock() - older_than_s``; its events and its remote bindings go
        with it, in one transaction. A running trace is never removed, however old (recovery
        needs it), nor are events saved without a trace id or for a trace never started.

        Writes queued before the call are committed first, so a trace ended before the call
        counts; writes queued after it are ordered against the removal by the backend's
        transactions (a restarted trace is either kept, or removed and then recorded anew).

        Args:
            older_than_s: The age, in seconds since a trace ended, past which it is removed.

        Returns:
            How many traces were removed.

        Raises:
            ValueError: ``older_than_s`` is negative or not finite.
            StoreClosedError: the store was closed.
            StoreBrokenError: the writer task stopped before committing the earlier writes.
        """
        if not math.isfinite(older_than_s) or older_than_s < 0:
            raise ValueError(
                f"prune: older_than_s must be a finite number of seconds >= 0, got {older_than_s!r}"
            )
        await self._settle()
        return await self._prune(self._clock() - older_than_s)

    async def _settle(self) -> None:
        if self._phase != "started":
            await self.start()
        # Read-your-writes, bounded: while commits keep failing (a full disk, a damaged file),
        # waiting for every queued write would hang each read, and flow.recover(), for good.
        # A read waits at most failing_after_s, and not at all once the store is failing; then
        # the writer's flush raises FlushTimeoutError and the writes stay queued.
        await self._writer.flush(0.0 if self.status == "failing" else self._failing_after_s)

    # ------------------------------------------------------------------- backend

    @abc.abstractmethod
    async def _open(self) -> None:
        """Connect and check or create the schema; write nothing to a foreign database."""

    @abc.abstractmethod
    async def _release(self) -> None:
        """Release what ``_open`` acquired."""

    @abc.abstractmethod
    async def _register_lease(self, lease: Lease, now: float, expires_at: float) -> None:
        """Record ``lease`` as held until ``expires_at``, committed before returning.

        For an ``exclusive`` lease, end (expire at 0) every other lease of the same owner.
        """

    @abc.abstractmethod
    async def _end_lease(self, lease_id: str) -> None:
        """Mark the lease ended (``expires_at`` 0), committed before returning."""

    @abc.abstractmethod
    async def _claim(
        self, flow_key: str, lease_id: str, now: float, limit: int
    ) -> list[StoredTrace]:
        """Give ``lease_id`` at most ``limit`` unowned running traces of the flow; return them.

        One transaction; see ``claim_traces`` and ``_rows.claim_traces_sql``.
        """

    @abc.abstractmethod
    async def _commit_batch(self, batch: Sequence[WriteOp]) -> None:
        """Apply ``batch`` in one transaction; on failure apply none of it and raise."""

    @abc.abstractmethod
    async def _read_history(self, trace_id: str) -> list[StoredEvent]:
        """Return the trace's events in save order."""

    @abc.abstractmethod
    async def _read_traces(self, query: TraceQuery) -> list[StoredTrace]:
        """Return the traces ``query`` selects, in its order."""

    @abc.abstractmethod
    async def _read_binding(self, query: BindingQuery) -> RemoteBinding | None:
        """Return the most recently saved binding ``query`` selects."""

    @abc.abstractmethod
    async def _prune(self, cutoff: float) -> int:
        """Remove, in one transaction, the ended traces last updated before ``cutoff``.

        Their events and remote bindings go too; return how many traces were removed.
        """

    @abc.abstractmethod
    async def _read_bindings(self, router_session_id: str) -> list[RemoteBinding]:
        """Return the session's bindings, least recently saved first."""
