"""``RedisBackend``: where a distributed flow lives (a Redis server and a flow id).

It holds the settings every process of the flow shares, lists, inspects and re-drives dead
letters, and reads the flow's overview.
"""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ._connection import check_reachable, check_url, open_client, redact, require_redis, scrub
from ._envelope import TypeTable
from ._keys import Keys, name_of, topology_of
from ._overview import discover, edges_of, read_overview
from ._scripts import DEAD_LETTER, EMIT, HEARTBEAT

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from pydantic import BaseModel

    from .._runtime.flow import PenguiFlow
    from ..registry import ModelRegistry
    from ._keys import Topology
    from .health import FlowOverview

__all__ = ["DeadLetter", "RedisBackend"]

DEFAULT_MAX_ENVELOPE_BYTES: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A message a node's workers gave up on, kept in the node's dead-letter stream."""

    id: str
    """Its id in the dead-letter stream."""
    node: str
    """The node it was for."""
    stream: str
    """The stream it came from (where ``redrive`` puts it back)."""
    entry_id: str
    """Its id in that stream."""
    reason: str
    """Why it was dead-lettered."""
    deliveries: int
    """How many times it had been delivered."""
    envelope: str
    """The envelope's JSON, as it was in the stream."""


class RedisBackend:
    """A flow's home on Redis: server URL, flow id and the settings every process shares.

    Construction does no I/O; the first command connects. Workers (``serve``) and callers
    (``RemoteFlow``) of the same flow use equal settings.

    TLS: use ``rediss://`` and give the CA that signed the server's certificate in the URL's
    query, as redis-py reads it: ``rediss://user:pw@host:6380/0?ssl_ca_certs=/path/ca.pem``
    (a client certificate: ``&ssl_certfile=...&ssl_keyfile=...``). The URL is the one
    setting every process takes (``--redis``, ``PENGUIFLOW_REDIS_URL``), so TLS needs
    nothing else. A certificate that does not verify fails like an unreachable server.

    Unreachable at start (refused, no answer, TLS handshake or credentials refused):
    ``serve``, ``RemoteFlow.start`` and ``connect`` raise ``BackendUnavailable`` at once when
    the connection is refused, else within the connect timeout (5 s) or the socket timeout
    (``max(5 s, 3 * block_ms)``) when nothing answers. Once running, both retry with
    backoff; workers log a warning per failure.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` for TLS, or
            ``unix://path``; options of redis-py's connections in the query. Its password
            is shown as ``***`` in ``url``, ``repr``, logs and errors.
        flow_id: Names the flow's keys; processes of one flow share it.
        types: Payload models to accept besides the registry's and penguiflow's own.
        max_envelope_bytes: Larger envelopes are refused at emit (a caller's, or a node's
            output: that call fails) and dead-lettered if met in a stream.
        min_idle_s: How long an entry may go without a heartbeat before another worker
            takes it over (its worker presumed dead).
        max_deliveries: Deliveries after which an entry is dead-lettered instead of run.
        block_ms: The longest a blocking read waits (at most 2000).
        cancel_ttl_s: How long a trace's cancel marker lives.
        results_maxsize: The bound of each caller's result stream (None: the flow's
            ``queue_maxsize``, or 64 if that is unbounded).
        results_ttl_s: A caller's result stream expires this long after the caller's last
            read, so callers that never come back leave nothing behind.

    Raises:
        ValueError: a setting is out of range, or ``url`` is not a Redis URL (unknown
            scheme, bad port; unknown query options are named at the first connection).
    """

    def __init__(
        self,
        url: str,
        *,
        flow_id: str = "default",
        types: Iterable[type[BaseModel]] = (),
        max_envelope_bytes: int = DEFAULT_MAX_ENVELOPE_BYTES,
        min_idle_s: float = 10.0,
        max_deliveries: int = 3,
        block_ms: int = 1000,
        cancel_ttl_s: int = 3600,
        results_maxsize: int | None = None,
        results_ttl_s: int = 86400,
    ) -> None:
        if not 0 < block_ms <= 2000:
            raise ValueError(f"block_ms must be in (0, 2000], got {block_ms}")
        if min_idle_s <= 0 or max_deliveries < 1 or max_envelope_bytes < 1:
            raise ValueError(
                "min_idle_s must be > 0, max_deliveries >= 1 and max_envelope_bytes >= 1; got "
                f"{min_idle_s}, {max_deliveries}, {max_envelope_bytes}"
            )
        check_url(url)
        if "{" in flow_id or "}" in flow_id or not flow_id:
            raise ValueError(f"flow_id must be non-empty without braces, got {flow_id!r}")
        self._url = url
        self.flow_id = flow_id
        self.keys = Keys(flow_id)
        self.types: tuple[type[BaseModel], ...] = tuple(types)
        self.max_envelope_bytes = max_envelope_bytes
        self.min_idle_s = min_idle_s
        self.max_deliveries = max_deliveries
        self.block_ms = block_ms
        self.cancel_ttl_s = cancel_ttl_s
        self.results_maxsize = results_maxsize
        self.results_ttl_s = results_ttl_s
        self._client: Any = None

    @property
    def url(self) -> str:
        """The server's URL with its password hidden."""
        return redact(self._url)

    def __repr__(self) -> str:
        return f"RedisBackend({self.url!r}, flow_id={self.flow_id!r})"

    def scrub(self, text: str) -> str:
        """``text`` (an error's, say) with the server's password hidden."""
        return scrub(text, self._url)

    def describe(self) -> str:
        """Name the server (password hidden) and the flow, for logs and errors."""
        return f"Redis {self.url} flow {self.flow_id}"

    # -- connections ----------------------------------------------------------------------------

    def open(self) -> Any:
        """A new client (its own pool) for this backend's server; the caller closes it.

        Returns ``Any``: a ``redis.asyncio.Redis`` (redis-py is an optional dependency).
        """
        return open_client(self._url, block_ms=self.block_ms)

    async def connect(self) -> Any:
        """The backend's shared client for short commands, checked on first use.

        Raises:
            BackendUnavailable: Redis does not answer.
        """
        if self._client is None:
            client = self.open()
            try:
                await check_reachable(client, self._url)
            except BaseException:
                await client.aclose()
                raise
            self._client = client
        return self._client

    async def check(self, client: Any) -> None:
        """Ping the server through ``client``.

        Raises:
            BackendUnavailable: Redis does not answer (named by its URL, password hidden).
        """
        await check_reachable(client, self._url)

    async def close(self) -> None:
        """Close the shared client."""
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def scripts(self, client: Any) -> Scripts:
        """The flow's Lua scripts registered on ``client``."""
        return Scripts(client)

    def connection_errors(self) -> tuple[type[BaseException], ...]:
        """The errors after which a loop backs off and retries (the server went away)."""
        redis = require_redis()
        return (redis.ConnectionError, redis.TimeoutError, OSError)

    # -- the flow's layout ----------------------------------------------------------------------

    def topology(self, flow: PenguiFlow) -> Topology:
        """Where each node of ``flow`` reads and writes."""
        return topology_of(flow, self.keys)

    def type_table(self, flow: PenguiFlow, registry: ModelRegistry | None) -> TypeTable:
        """The payload models ``flow`` may send: the registry's, penguiflow's, ``types``."""
        models: list[type[BaseModel]] = list(self.types)
        if registry is not None:
            for node in self.topology(flow).nodes.values():
                name = name_of(node)
                if registry.has(name):
                    models.extend(registry.models(name))
        return TypeTable(models)

    def result_bound(self, topology: Topology) -> int:
        """The bound of each caller's result stream."""
        if self.results_maxsize is not None:
            return self.results_maxsize
        return topology.maxsize or 64

    @staticmethod
    def consumer_name() -> str:
        """A consumer name unique to this process: host, pid and a random suffix."""
        return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"

    # -- the flow as Redis holds it -------------------------------------------------------------

    async def overview(self, flow: PenguiFlow | None = None) -> FlowOverview:
        """Read the flow's state from Redis: its streams, groups, dead letters and workers.

        Per edge stream: its depth, the consuming node's pending count and lag, the idle time
        of its oldest pending entry, and each consumer with its idle time and whether its
        worker's heartbeat is alive. Per node: its dead letters. And every worker known by its
        heartbeat, with the nodes it serves. All of it is read in one transaction, so the
        numbers are of one instant. Only reads: any process may call it, as often as it likes.

        Args:
            flow: The flow, for its exact edges; without it, the streams found in Redis
                (``SCAN``) are read, so a process that lacks the flow's code can watch it.

        Raises:
            BackendUnavailable: Redis does not answer (at the first connection).
            redis.ConnectionError: the server went away since, and a second try failed too.
        """
        client = await self.connect()
        try:
            return await self._overview(client, flow)
        except self.connection_errors():
            # A pooled connection from before a server restart fails once; reads are safe
            # to repeat, on a fresh connection.
            return await self._overview(client, flow)

    async def _overview(self, client: Any, flow: PenguiFlow | None) -> FlowOverview:
        if flow is None:
            edges, nodes = await discover(client, self.keys)
        else:
            edges, nodes = edges_of(self.topology(flow))
        return await read_overview(client, self.keys, edges, nodes)

    # -- dead letters ---------------------------------------------------------------------------

    async def dead_letters(self, node: str, *, count: int = 100) -> list[DeadLetter]:
        """The oldest ``count`` dead letters of ``node``.

        Raises:
            BackendUnavailable: Redis does not answer.
        """
        client = await self.connect()
        entries = await client.xrange(self.keys.dead_letters(node), count=count)
        return [_dead_letter(node, entry_id, fields) for entry_id, fields in entries]

    async def dead_letter(self, node: str, letter_id: str) -> DeadLetter | None:
        """One dead letter of ``node`` by its id, or None."""
        client = await self.connect()
        entries = await client.xrange(self.keys.dead_letters(node), letter_id, letter_id)
        return _dead_letter(node, *entries[0]) if entries else None

    async def redrive(self, node: str, letter_ids: Sequence[str] | None = None) -> int:
        """Put dead letters of ``node`` back on the streams they came from, to run again.

        Each goes back and leaves the dead-letter stream in one transaction. The streams'
        bounds do not apply (these were admitted once already).

        Returns:
            How many were re-driven.
        """
        client = await self.connect()
        letters = (
            await self.dead_letters(node, count=10_000)
            if letter_ids is None
            else [
                letter
                for letter in [await self.dead_letter(node, each) for each in letter_ids]
                if letter is not None
            ]
        )
        for letter in letters:
            async with client.pipeline(transaction=True) as pipe:
                pipe.xadd(letter.stream, {"e": letter.envelope})
                pipe.xdel(self.keys.dead_letters(node), letter.id)
                await pipe.execute()
        return len(letters)


def _dead_letter(node: str, letter_id: str, fields: dict[str, str]) -> DeadLetter:
    return DeadLetter(
        id=letter_id,
        node=node,
        stream=fields.get("stream", ""),
        entry_id=fields.get("id", ""),
        reason=fields.get("reason", ""),
        deliveries=int(fields.get("deliveries", "0") or 0),
        envelope=fields.get("e", ""),
    )


class Scripts:
    """The Lua scripts (see ``_scripts``) registered on one client (commits: ``Committer``)."""

    __slots__ = ("dead_letter", "emit", "heartbeat")

    def __init__(self, client: Any) -> None:
        self.emit = client.register_script(EMIT)
        self.heartbeat = client.register_script(HEARTBEAT)
        self.dead_letter = client.register_script(DEAD_LETTER)


async def sleep_backoff(attempt: int) -> None:
    """Sleep before retrying after a connection error: 50 ms doubling up to 1 s."""
    await asyncio.sleep(min(0.05 * (2 ** min(attempt, 5)), 1.0))
