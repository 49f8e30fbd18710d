"""The consume loop of one node in one worker process.

Design note (the loop): read at most as many entries as there are free slots, plus as many
read ahead as there are slots (so that a freed slot does not wait for a read), decode them
(an entry that cannot be decoded is dead-lettered, never run), drop cancelled traces (one
pipelined ``EXISTS`` per batch), and start one task per entry on a free slot. The next read
waits for a freed slot (an event, not a poll). The janitor, every ``min_idle / 4``, renews
the idle time of every entry this consumer holds (fenced heartbeats: long calls are not taken
over while their worker lives) and takes over entries idle longer than ``min_idle`` (their
worker died). A taken-over entry is counted: past ``max_deliveries`` it is dead-lettered;
otherwise it runs *solo*, with nothing else in flight, so that a message that crashes its
worker cannot take others down with it.

``NOGROUP`` (the stream or its group was lost) recreates the groups; connection errors back
off and retry. Neither loses an entry: what is not committed stays pending in Redis. An entry
read (or taken over) that a Redis error keeps from starting is released: no longer
heartbeated, it is taken over after ``min_idle`` like the entry of a worker that died.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from .._runtime.constants import logger
from ._envelope import check_size, decode
from ._keys import name_of
from ._scripts import COMMIT_FULL
from ._slot import Slot
from .backend import sleep_backoff
from .errors import EnvelopeError, EnvelopeTooLarge

if TYPE_CHECKING:
    from .._runtime.events import EventSink
    from .._runtime.nodes import NodeStatus
    from ..node import Node
    from ..registry import ModelRegistry
    from ._cancels import CancelBook
    from ._commit import Committer
    from ._envelope import Envelope, TypeTable
    from ._keys import Topology
    from ._tally import Link, NodeTally
    from .backend import RedisBackend, Scripts

__all__ = ["Entry", "NodeConsumer"]

_CLAIM_BATCH: Final = 16
_FULL_BACKOFF_S: Final = (0.001, 0.05)
"""First and longest sleep before a commit retries a full output stream."""


@dataclass(slots=True)
class Entry:
    """One stream entry this consumer holds."""

    stream: str
    id: str
    text: str
    """The envelope's JSON ("" when the entry has none)."""


class NodeConsumer:
    """Serves one node from its inbound streams with ``concurrency`` slots."""

    def __init__(
        self,
        node: Node,
        *,
        backend: RedisBackend,
        topology: Topology,
        client: Any,
        scripts: Scripts,
        committer: Committer,
        types: TypeTable,
        registry: ModelRegistry | None,
        sink: EventSink,
        status: NodeStatus,
        book: CancelBook[NodeConsumer],
        concurrency: int,
        consumer: str,
        tally: NodeTally,
        link: Link,
    ) -> None:
        self.node = node
        self.group = name_of(node)
        self.streams = topology.inbound[self.group]
        self.backend, self.client, self.scripts = backend, client, scripts
        self.committer, self.types, self.book = committer, types, book
        self.consumer = consumer
        self.tally, self.link = tally, link  # counted here, read by the worker's health
        self.read_ahead = 2
        """Entries held per slot: one running, one read ahead."""
        self.runs = f"{backend.keys.prefix}runs:{self.group}"
        """Hash of the solo runs started per taken-over entry (see ``_adopt``)."""
        # Result streams are bounded at the caller's emit, never by a worker (see caller).
        maxsizes = (topology.maxsize, 0)
        self.slots = [
            Slot(
                node,
                streams=topology.outbound[self.group],
                maxsizes=maxsizes,
                types=types,
                limit=backend.max_envelope_bytes,
                registry=registry,
                status=status,
                sink=sink,
                chunk=self._send_chunk,
            )
            for _ in range(concurrency)
        ]
        self.free = list(self.slots)
        self.freed = asyncio.Event()
        self.backlog: deque[tuple[Entry, Envelope, Any]] = deque()
        self.solo: deque[Entry] = deque()
        self.held: dict[tuple[str, str], str | None] = {}
        """Every entry this consumer owns (heartbeated), with its trace."""
        self.jobs: set[asyncio.Task[None]] = set()
        self.stopping = False
        self.errors = backend.connection_errors()

    # -- the read loop ----------------------------------------------------------------------------

    async def run(self) -> None:
        """Read and start entries until ``request_stop``; survives Redis going away."""
        failures = 0
        while not self.stopping:
            try:
                if failures:
                    # The server may have come back without the groups (kill -9 under
                    # appendfsync everysec loses the last second).
                    await self.create_groups()
                await self._step()
                failures = 0
                self.link.up()
            except self.errors as exc:
                failures += 1
                self.link.lost(exc)
                _warn("distributed_redis_unavailable", self, exc)
                await sleep_backoff(failures)
            except Exception as exc:
                if "NOGROUP" not in str(exc):
                    raise
                _warn("distributed_group_recreated", self, exc)
                await self.create_groups()

    async def create_groups(self) -> None:
        """Create the node's group on each inbound stream (and the stream), if missing."""
        for stream in self.streams:
            try:
                await self.client.xgroup_create(stream, self.group, id="0", mkstream=True)
            except Exception as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def request_stop(self) -> None:
        """Stop reading (the current read ends within ``block_ms``)."""
        self.stopping = True
        self.freed.set()

    async def _step(self) -> None:
        if self.solo:
            await self._run_solo()
            return
        # Read ahead as many entries as there are slots, so that a slot that frees up starts
        # its next entry at once, without waiting for a read. They are held (heartbeated,
        # still counted in their stream's depth) until a slot takes them.
        busy = len(self.slots) - len(self.free)
        room = self.read_ahead * len(self.slots) - busy - len(self.backlog)
        if room <= 0:
            self.freed.clear()
            await self.freed.wait()
            return
        count = max(1, room // len(self.streams))
        reply = await self.client.xreadgroup(
            self.group,
            self.consumer,
            dict.fromkeys(self.streams, ">"),
            count=count,
            block=self.backend.block_ms,
        )
        entries = [
            Entry(stream, entry_id, (fields or {}).get("e", ""))
            for stream, items in reply or ()
            for entry_id, fields in items
        ]
        if entries:
            await self._admit(entries)

    async def _admit(self, entries: list[Entry]) -> None:
        self.tally.consumed += len(entries)
        for entry in entries:
            self.held[entry.stream, entry.id] = None
        decoded: list[tuple[Entry, Envelope, Any]] = []
        try:
            for entry in entries:
                found = await self._decode(entry)
                if found is not None:
                    decoded.append(found)
            await self._check_cancelled([envelope.trace_id for _e, envelope, _i in decoded])
        except BaseException:
            self._release(entries)
            raise
        for found in decoded:
            if self.free:
                self._start(self.free.pop(), *found)
            else:
                self.backlog.append(found)

    async def _decode(self, entry: Entry) -> tuple[Entry, Envelope, Any] | None:
        """Decode ``entry``; dead-letter it (and return None) if it cannot be."""
        where = f"stream {entry.stream} entry {entry.id} (node {self.group})"
        try:
            check_size(entry.text, self.backend.max_envelope_bytes, where)
            envelope, item = decode(entry.text, self.types, where)
        except (EnvelopeError, EnvelopeTooLarge) as exc:
            logger.error(
                "distributed_bad_envelope",
                extra={
                    "event": "distributed_bad_envelope",
                    "node_name": self.group,
                    "error": str(exc),
                },
            )
            await self.dead_letter(entry, str(exc))
            return None
        self.held[entry.stream, entry.id] = envelope.trace_id
        return entry, envelope, item

    async def _check_cancelled(self, traces: list[str | None]) -> None:
        """Mark the traces of a batch whose cancel marker exists.

        One ``EXISTS`` over all the markers answers the common case (none) in one command;
        only a batch with a cancelled trace asks trace by trace.
        """
        wanted = sorted({trace for trace in traces if trace is not None})
        if not wanted:
            return
        keys = self.backend.keys
        markers = [keys.cancelled(trace) for trace in wanted]
        if not await self.client.exists(*markers):
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for marker in markers:
                pipe.exists(marker)
            found = await pipe.execute()
        for trace, exists in zip(wanted, found, strict=True):
            if exists:
                self.book.traces.ensure_flag(trace).set()

    async def _run_solo(self) -> None:
        """Run the next taken-over entry with nothing else in flight."""
        while len(self.free) < len(self.slots):
            self.freed.clear()
            await self.freed.wait()
        entry = self.solo.popleft()
        field = f"{entry.stream}/{entry.id}"
        try:
            found = await self._decode(entry)
            if found is None:
                return
            # A cancel sent before this process listened is known by its marker only.
            await self._check_cancelled([found[1].trace_id])
            # Counted before it runs: if it takes this worker down, the next taker knows.
            async with self.client.pipeline(transaction=False) as pipe:
                pipe.hincrby(self.runs, field, 1)
                pipe.expire(self.runs, self.backend.cancel_ttl_s)
                await pipe.execute()
        except BaseException:
            self._release([entry])
            raise
        await asyncio.wait({self._start(self.free.pop(), *found)})
        await self.client.hdel(self.runs, field)

    def _release(self, entries: list[Entry]) -> None:
        """Stop holding (heartbeating) ``entries`` that Redis errors kept from starting.

        Held, they would never run; released, they are taken over after ``min_idle``.
        """
        for entry in entries:
            self.held.pop((entry.stream, entry.id), None)

    # -- one entry ------------------------------------------------------------------------------

    def _start(self, slot: Slot, entry: Entry, envelope: Envelope, item: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(
            self._job(slot, entry, envelope, item), name=f"penguiflow:{self.group}"
        )
        self.jobs.add(task)
        task.add_done_callback(self.jobs.discard)
        return task

    def give_back(self, slot: Slot) -> None:
        """A slot is free: start the next waiting entry on it, or mark it free."""
        if self.backlog and not self.stopping:
            self._start(slot, *self.backlog.popleft())
        else:
            self.free.append(slot)
        self.freed.set()

    async def _job(self, slot: Slot, entry: Entry, envelope: Envelope, item: Any) -> None:
        key = (entry.stream, entry.id)
        trace_id = envelope.trace_id
        try:
            await slot.run(item, trace_id, envelope.reply_to)
            code = await self._commit(slot, entry, trace_id)
        except Exception as exc:
            # A fault outside the node (the node's own failures became FlowErrors): the entry
            # stays pending, no longer heartbeated, and is taken over after min_idle (by any
            # worker, this one included), counted as a delivery.
            self.held.pop(key, None)
            self.tally.failed += 1
            logger.exception(
                "distributed_entry_failed",
                extra={
                    "event": "distributed_entry_failed",
                    "node_name": self.group,
                    "stream": entry.stream,
                    "entry_id": entry.id,
                    "exception": repr(exc),
                },
            )
        else:
            self.held.pop(key, None)
            self.tally.settled(code)
        finally:
            self.give_back(slot)
            if trace_id is not None and self.book.traces.is_cancelled(trace_id):
                self.book.forget(trace_id)

    async def _commit(self, slot: Slot, entry: Entry, trace_id: str | None) -> int:
        """Publish the slot's outputs and acknowledge ``entry`` (see ``_scripts.COMMIT_MANY``).

        Waits while an output edge is full, holding the slot (backpressure: this node reads
        no more until its successor has room).
        """
        keys = self.backend.keys
        outputs = slot.outbox.outputs
        marker = keys.cancelled(trace_id) if trace_id is not None else keys.cancelled("")
        names = [entry.stream, marker, *(stream for stream, _max, _body in outputs)]
        args: list[str | int] = [self.group, self.consumer, entry.id]
        for _stream, maxsize, body in outputs:
            args += [maxsize, body]
        attempt = 0
        while True:
            try:
                code, _index = await self.committer.commit(names, args)
            except self.errors as exc:
                attempt += 1
                self.link.lost(exc)
                _warn("distributed_commit_retry", self, exc)
                await sleep_backoff(attempt)
                continue
            if code != COMMIT_FULL:
                return code
            attempt += 1
            await asyncio.sleep(min(_FULL_BACKOFF_S[0] * 2 ** min(attempt, 10), _FULL_BACKOFF_S[1]))

    async def _send_chunk(self, stream: str, body: str) -> None:
        await self.client.xadd(stream, {"e": body})

    def cancel_trace(self, trace_id: str) -> None:
        """Cancel the node calls of ``trace_id`` running here."""
        for slot in self.slots:
            slot.cancel_trace(trace_id)

    def holds_trace(self, trace_id: str) -> bool:
        """Whether an entry of ``trace_id`` is held here."""
        return trace_id in self.held.values()

    # -- the janitor ------------------------------------------------------------------------------

    async def janitor(self) -> None:
        """Heartbeat held entries and take over idle ones, every ``min_idle / 4``."""
        period = self.backend.min_idle_s / 4
        while True:
            await asyncio.sleep(period)
            try:
                await self.heartbeat()
                if not self.stopping:
                    await self._reclaim()
            except self.errors as exc:
                self.link.lost(exc)
                _warn("distributed_redis_unavailable", self, exc)
            except Exception as exc:
                if "NOGROUP" in str(exc):
                    await self.create_groups()
                    continue
                # A fault of this loop must not stop the heartbeats for good: log, go on.
                logger.exception(
                    "distributed_janitor_failed",
                    extra={"event": "distributed_janitor_failed", "node_name": self.group},
                )

    async def heartbeat(self) -> None:
        """Reset the idle time of the entries this consumer still owns (fenced)."""
        for stream in self.streams:
            ids = [entry_id for (where, entry_id) in list(self.held) if where == stream]
            if ids:
                await self.scripts.heartbeat(keys=[stream], args=[self.group, self.consumer, *ids])

    async def _reclaim(self) -> None:
        min_idle_ms = int(self.backend.min_idle_s * 1000)
        for stream in self.streams:
            answer = await self.client.xautoclaim(
                stream, self.group, self.consumer, min_idle_ms, "0-0", count=_CLAIM_BATCH
            )
            claimed = [(entry_id, fields) for entry_id, fields in answer[1] if fields]
            if claimed:
                await self._adopt(stream, claimed)

    async def _adopt(self, stream: str, claimed: list[tuple[str, dict[str, str]]]) -> None:
        """Queue taken-over entries to run solo, or dead-letter those that ran too often.

        Design note: an entry counts the runs it started, not Redis' delivery count: an entry
        read along with a poison message, or queued behind it, is delivered again each time
        the poison takes its worker down, without ever running. It counts one run for its
        first delivery and one per solo run (``runs``, counted before each starts).
        """
        async with self.client.pipeline(transaction=False) as pipe:
            for entry_id, _fields in claimed:
                pipe.hget(self.runs, f"{stream}/{entry_id}")
            counts = await pipe.execute()
        limit = self.backend.max_deliveries
        self.tally.taken_over += len(claimed)
        for (entry_id, fields), solo_runs in zip(claimed, counts, strict=True):
            entry = Entry(stream, entry_id, fields.get("e", ""))
            runs = 1 + int(solo_runs or 0)
            if runs >= limit:
                await self.client.hdel(self.runs, f"{stream}/{entry_id}")
                await self.dead_letter(
                    entry,
                    f"ran {runs} times (max_deliveries={limit}): its worker died or "
                    "stopped before finishing it each time",
                )
            else:
                self.held[stream, entry_id] = None  # heartbeated until it runs
                self.solo.append(entry)
        self.freed.set()

    async def dead_letter(self, entry: Entry, reason: str) -> None:
        """Move ``entry`` to the node's dead-letter stream."""
        moved = await self.scripts.dead_letter(
            keys=[entry.stream, self.backend.keys.dead_letters(self.group)],
            args=[self.group, self.consumer, entry.id, reason],
        )
        self.held.pop((entry.stream, entry.id), None)
        self.tally.dead_lettered += int(moved)  # 0: another worker had taken it over
        logger.error(
            "distributed_dead_letter",
            extra={
                "event": "distributed_dead_letter",
                "node_name": self.group,
                "stream": entry.stream,
                "entry_id": entry.id,
                "reason": reason,
            },
        )

    # -- stopping ---------------------------------------------------------------------------------

    async def drain(self, grace_s: float) -> None:
        """Let running entries finish for ``grace_s``; cancel the rest and hand them back.

        Handed back means still pending but marked long idle, so another worker takes each
        over at its next janitor round rather than after ``min_idle``.
        """
        if self.jobs:
            await asyncio.wait(set(self.jobs), timeout=grace_s)
        for task in list(self.jobs):
            task.cancel()
        if self.jobs:
            await asyncio.wait(set(self.jobs))
        await self.hand_back()

    async def hand_back(self) -> None:
        """Mark every entry still held as long idle (see ``drain``)."""
        idle_ms = int(self.backend.min_idle_s * 1000) * 10
        for stream in self.streams:
            ids = [entry_id for (where, entry_id) in list(self.held) if where == stream]
            if ids:
                await self.client.xclaim(
                    stream, self.group, self.consumer, 0, ids, idle=idle_ms, justid=True
                )
        self.held.clear()
        self.backlog.clear()
        self.solo.clear()


def _warn(event: str, consumer: NodeConsumer, exc: BaseException) -> None:
    logger.warning(
        event,
        extra={
            "event": event,
            "node_name": consumer.group,
            "redis": consumer.backend.url,
            "exception": repr(exc),
        },
    )
