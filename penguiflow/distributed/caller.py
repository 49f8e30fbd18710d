"""``RemoteFlow``: a caller of a flow served by worker processes, with the in-process API.

Each caller has its own result stream (named by its ``client_id``). Its bound is applied at
emit: while the caller holds that many unread results, its emits wait, so a caller that stops
reading stops only its own traces. Workers never wait on a result stream (that would hold a
slot, and so every other caller's traces, for one that does not read); it can exceed its
bound by the results of the caller's traces already in flight. A result is acknowledged and deleted
once handed out, so a caller restarted with the same ``client_id`` gets what it had not
fetched yet. Streamed chunks are delivered once per ``(stream_id, seq)``: a node run again
after a crash streams from 0 again, and the chunks already seen are dropped.

A result this caller cannot decode (its payload type is not in the caller's registry or
``types``) is not dropped: it moves to the dead letters named ``RESULTS_DEAD_LETTERS``, and
the fetch that would have returned it raises the ``EnvelopeError`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any, Final

from pydantic import ValidationError

from .._runtime.constants import logger
from ..errors import TraceCancelled
from ..node import Node
from ..types import Message, StreamChunk
from ._envelope import Envelope, decode, encode, new_id
from ._keys import name_of
from ._scripts import EMIT_FULL
from .backend import sleep_backoff
from .errors import EnvelopeError

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Sequence
    from types import TracebackType

    from .._runtime.flow import PenguiFlow
    from ..registry import ModelRegistry
    from .backend import RedisBackend

__all__ = ["RESULTS_DEAD_LETTERS", "RemoteFlow"]

RESULTS_DEAD_LETTERS: Final = ">results"
"""Where results no caller could decode go: ``backend.dead_letters(RESULTS_DEAD_LETTERS)``.

No node can have this name (``>`` is not allowed in node names)."""
_GROUP: Final = "caller"
_FULL_BACKOFF_S: Final = (0.001, 0.02)
_Held = tuple[str, str | None, Any]
"""A result waiting to be fetched: entry id, trace, the item."""


class RemoteFlow:
    """Emit into and fetch from a distributed flow, as from an in-process one.

    Use it as an async context manager (or ``start``/``stop``).

    Args:
        flow: The flow's definition (its graph, names and bounds).
        backend: Where the flow lives.
        registry: Models for payload types (as given to the workers).
        client_id: Names this caller's result stream; give the same one again after a
            restart to get the results not fetched yet. Default: random.
    """

    def __init__(
        self,
        flow: PenguiFlow,
        backend: RedisBackend,
        *,
        registry: ModelRegistry | None = None,
        client_id: str | None = None,
    ) -> None:
        self.backend = backend
        self.topology = backend.topology(flow)
        self.types = backend.type_table(flow, registry)
        self.client_id = client_id or uuid.uuid4().hex
        self.results = backend.keys.results(self.client_id)
        """This caller's result stream."""
        self.bound = backend.result_bound(self.topology)
        """Emit waits while this many results are unread."""
        self._client: Any = None
        self._scripts: Any = None
        self._reader: asyncio.Task[None] | None = None
        self._reading: Any = None
        self._stopping = False
        self._shared: deque[_Held] = deque()
        self._inboxes: dict[str, deque[_Held]] = {}
        self._cancelled: dict[str, float] = {}
        self._seen: dict[tuple[str | None, str], int] = {}
        self._held_ids: set[str] = set()
        """Ids of the results read and not yet acknowledged."""
        self._arrived = asyncio.Event()

    async def __aenter__(self) -> RemoteFlow:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect and start reading this caller's result stream.

        Raises:
            BackendUnavailable: Redis does not answer.
        """
        client = self.backend.open()
        try:
            await self.backend.check(client)
            await self._create_group(client)
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        self._scripts = self.backend.scripts(client)
        # Blocking reads get a client of their own, so that no other command waits behind
        # them, and so that stop() can end a read by closing it.
        self._reading = self.backend.open()
        self._stopping = False
        self._reader = asyncio.get_running_loop().create_task(
            self._read(self._reading), name="penguiflow:results"
        )

    async def stop(self) -> None:
        """Stop reading and disconnect; results not fetched stay in the stream.

        Design note: a blocking read is ended by closing its connection rather than by
        cancelling it: a cancellation that lands in redis-py's read can be swallowed there
        (under Python 3.11's timeouts), leaving the reader waiting out its read for good.
        """
        reader, self._reader = self._reader, None
        reading, self._reading = self._reading, None
        self._stopping = True
        if reading is not None:
            await reading.aclose()
        if reader is not None:
            try:
                async with asyncio.timeout(self.backend.block_ms / 1000 + 1):
                    await asyncio.wait({reader})
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def stopping(self) -> bool:
        """Whether ``stop`` has begun."""
        return self._stopping

    def _connected(self) -> Any:
        if self._client is None:
            raise RuntimeError("RemoteFlow is not started; use `async with RemoteFlow(...)`")
        return self._client

    # -- emit -----------------------------------------------------------------------------------

    async def emit(self, msg: Any, to: Any = None, *, trace_id: str | None = None) -> None:
        """Send ``msg`` to the flow's ingress nodes (``to``: some of them), waiting for room.

        With ``trace_id``, the message is stamped with it and the trace's results are kept
        for ``fetch(trace_id=...)``. A retry after a lost reply is not sent twice.

        Raises:
            RuntimeError: not started.
            KeyError: ``to`` names a node that is not fed from OpenSea.
            EnvelopeError: the message's payload type is not declared, or not JSON.
            EnvelopeTooLarge: the envelope is over ``max_envelope_bytes``.
        """
        self._connected()
        if trace_id is not None:
            msg = _stamp(msg, trace_id)
        targets = self._ingress(to)
        envelope_id = new_id()
        own_trace = getattr(msg, "trace_id", None)
        own_trace = own_trace if isinstance(own_trace, str) else None
        body = encode(
            msg,
            reply_to=self.results,
            trace_id=own_trace,
            types=self.types,
            where=f"emit to {', '.join(targets)} (trace {own_trace})",
            limit=self.backend.max_envelope_bytes,
            envelope_id=envelope_id,
        )
        if trace_id is not None:
            self._inboxes.setdefault(trace_id, deque())
        streams = list(targets.values())
        keys = [self.backend.keys.emitted(envelope_id), self.results, *streams]
        args = [self.topology.maxsize, self.backend.cancel_ttl_s, body, self.bound]
        await self._send(keys, args)

    async def _send(self, keys: list[str], args: list[Any]) -> None:
        errors = self.backend.connection_errors()
        full = failures = 0
        while True:
            try:
                sent = await self._scripts.emit(keys=keys, args=args)
            except errors:
                failures += 1
                await sleep_backoff(failures)
                continue
            if sent != EMIT_FULL:
                return  # sent now, or by an earlier try whose reply was lost
            full += 1
            await asyncio.sleep(min(_FULL_BACKOFF_S[0] * 2 ** min(full, 10), _FULL_BACKOFF_S[1]))

    def _ingress(self, to: Any) -> dict[str, str]:
        """The chosen ingress nodes' names and streams."""
        ingress = self.topology.ingress
        chosen: Sequence[Any] = (
            list(ingress) if to is None else [to] if isinstance(to, Node) else list(to)
        )
        missing = [getattr(each, "name", each) for each in chosen if each not in ingress]
        if missing:
            raise KeyError(f"Unknown target {missing} for OpenSea")
        return {name_of(each): ingress[each] for each in chosen}

    # -- fetch ----------------------------------------------------------------------------------

    async def fetch(self, from_: Any = None, *, trace_id: str | None = None) -> Any:
        """Wait for this caller's next result (with ``trace_id``: that trace's next one).

        Raises:
            RuntimeError: not started, or ``from_`` given (results come from the Rookery).
            TraceCancelled: the trace was cancelled while waiting.
            EnvelopeError: the next result cannot be decoded here (its payload type is not
                in this caller's registry or ``types``); it was dead-lettered.
        """
        self._connected()
        if from_ is not None:
            raise RuntimeError("a RemoteFlow fetches from the Rookery only; from_ is not supported")
        while True:
            if trace_id is not None and trace_id in self._cancelled:
                self._inboxes.pop(trace_id, None)
                raise TraceCancelled(trace_id)
            queue = (
                self._shared if trace_id is None else self._inboxes.setdefault(trace_id, deque())
            )
            if queue:
                return await self._hand_out(queue, trace_id)
            self._arrived.clear()
            await self._arrived.wait()

    async def fetch_any(self, from_: Any = None, *, trace_id: str | None = None) -> Any:
        """Alias of ``fetch``."""
        return await self.fetch(from_, trace_id=trace_id)

    async def _hand_out(self, queue: deque[_Held], trace_id: str | None) -> Any:
        held = queue.popleft()
        item = held[2]
        if not isinstance(item, EnvelopeError):  # an undecodable one was dead-lettered
            try:
                await self._ack([held[0]])
            except BaseException:
                queue.appendleft(held)  # not handed out: the next fetch gets it
                raise
        if trace_id is not None and not queue and not _is_chunk(item):
            self._inboxes.pop(trace_id, None)
        if isinstance(item, EnvelopeError):
            raise item
        return item

    async def _ack(self, entry_ids: list[str]) -> None:
        """Acknowledge and delete results."""

        async def ack() -> None:
            async with self._connected().pipeline(transaction=False) as pipe:
                pipe.xack(self.results, _GROUP, *entry_ids)
                pipe.xdel(self.results, *entry_ids)
                await pipe.execute()

        await self._retrying(ack)
        self._held_ids.difference_update(entry_ids)

    async def _retrying(self, step: Callable[[], Awaitable[object]]) -> None:
        """Run ``step`` (idempotent) until it succeeds, backing off while Redis is away."""
        errors = self.backend.connection_errors()
        failures = 0
        while True:
            try:
                await step()
                return
            except errors:
                failures += 1
                await sleep_backoff(failures)

    # -- cancel ---------------------------------------------------------------------------------

    async def cancel(self, trace_id: str) -> bool:
        """Cancel ``trace_id`` everywhere: queued entries are dropped, running calls cancelled.

        Returns:
            True (whether the trace still had work is not known here).
        """
        client = self._connected()
        keys = self.backend.keys
        async with client.pipeline(transaction=True) as pipe:
            pipe.set(keys.cancelled(trace_id), "1", ex=self.backend.cancel_ttl_s)
            pipe.publish(keys.cancel_channel, trace_id)
            await pipe.execute()
        self._cancelled[trace_id] = time.monotonic()
        dropped = [held for held in self._shared if held[1] == trace_id]
        dropped += self._inboxes.get(trace_id, ())
        self._shared = deque(held for held in self._shared if held[1] != trace_id)
        if dropped:
            await self._ack([held[0] for held in dropped])
        self._arrived.set()
        return True

    # -- the reader -----------------------------------------------------------------------------

    async def _create_group(self, client: Any) -> None:
        try:
            await client.xgroup_create(self.results, _GROUP, id="0", mkstream=True)
        except Exception as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        await client.expire(self.results, self.backend.results_ttl_s)

    async def _read(self, client: Any) -> None:
        """Move results from the stream into the local queues until stopped."""
        errors = self.backend.connection_errors()
        start = "0"  # first what an earlier run of this caller left unfetched
        failures = 0
        while not self._stopping:
            try:
                if failures:
                    await self._create_group(client)
                reply = await client.xreadgroup(
                    _GROUP, _GROUP, {self.results: start}, block=self.backend.block_ms
                )
                failures = 0
            except errors:
                if self.stopping():
                    return
                # A reply lost on the way may have delivered entries: read the pending ones
                # again (those already here are recognised by their ids).
                start = "0"
                failures += 1
                await sleep_backoff(failures)
                continue
            except Exception as exc:
                if "NOGROUP" not in str(exc):
                    raise
                start = "0"
                failures += 1
                continue
            entries = [entry for _stream, items in reply or () for entry in items]
            if start != ">":
                start = entries[-1][0] if entries else ">"
            await self._dispatch(entries)

    async def _dispatch(self, entries: list[tuple[str, dict[str, str]]]) -> None:
        drop: list[str] = []
        for entry_id, fields in entries:
            if entry_id in self._held_ids:
                continue
            where = f"result stream {self.results} entry {entry_id}"
            text = (fields or {}).get("e", "")
            try:
                envelope, item = decode(text, self.types, where)
            except EnvelopeError as exc:
                await self._refuse(entry_id, text, exc)
                continue
            trace_id = envelope.trace_id
            if trace_id in self._cancelled or self._seen_before(trace_id, item):
                drop.append(entry_id)
                continue
            inbox = self._inboxes.get(trace_id) if trace_id is not None else None
            (self._shared if inbox is None else inbox).append((entry_id, trace_id, item))
            self._held_ids.add(entry_id)
        if drop:
            await self._ack(drop)
        if entries:
            self._arrived.set()

    async def _refuse(self, entry_id: str, text: str, error: EnvelopeError) -> None:
        """Dead-letter a result that cannot be decoded; its trace's next fetch raises ``error``."""
        logger.error(
            "distributed_bad_result",
            extra={"event": "distributed_bad_result", "error": str(error)},
        )
        keys = [self.results, self.backend.keys.dead_letters(RESULTS_DEAD_LETTERS)]
        args = [_GROUP, _GROUP, entry_id, str(error)]
        await self._retrying(lambda: self._scripts.dead_letter(keys=keys, args=args))
        trace_id = _trace_of(text)
        if trace_id in self._cancelled:
            return
        inbox = self._inboxes.get(trace_id) if trace_id is not None else None
        (self._shared if inbox is None else inbox).append((entry_id, trace_id, error))

    def _seen_before(self, trace_id: str | None, item: Any) -> bool:
        """Whether ``item`` is a chunk already delivered (a re-run streams again from 0)."""
        if not _is_chunk(item):
            return False
        chunk: StreamChunk = item.payload
        key = (trace_id, chunk.stream_id)
        if chunk.seq <= self._seen.get(key, -1):
            return True
        if chunk.done:
            self._seen.pop(key, None)
        else:
            self._seen[key] = chunk.seq
        return False


def _trace_of(text: str) -> str | None:
    """The trace of an envelope whose item cannot be rebuilt, if the envelope itself reads."""
    try:
        return Envelope.model_validate_json(text).trace_id
    except ValidationError:
        return None


def _is_chunk(item: Any) -> bool:
    return isinstance(item, Message) and isinstance(item.payload, StreamChunk)


def _stamp(msg: Any, trace_id: str) -> Any:
    if isinstance(msg, Message):
        return msg if msg.trace_id == trace_id else msg.model_copy(update={"trace_id": trace_id})
    try:
        msg.trace_id = trace_id
    except (AttributeError, TypeError) as exc:
        raise TypeError("emit(trace_id=...) needs a Message or an object with trace_id") from exc
    return msg
