"""Snapshots of a distributed flow: one worker's health, and the whole flow as Redis sees it.

``Worker.health()`` builds a ``WorkerHealth`` synchronously from the worker's own counters (no
I/O: fit for liveness and readiness probes). Its ``status``, by rule:

- ``failing``: the worker is not running, or its last heartbeat is older than ``min_idle_s``
  (other processes see it as dead, and its entries may be taken over);
- ``degraded``: not failing, but its connection to Redis is down (it is reconnecting);
- ``ok``: otherwise.

``RedisBackend.overview()`` reads a ``FlowOverview`` from Redis alone, from any process: the
depth and consumer group of every edge stream, dead letters per node, and the workers known
by their heartbeats.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ..health import HealthStatus

__all__ = [
    "ConsumerStats",
    "FlowOverview",
    "NodeLoad",
    "RedisLink",
    "StreamStats",
    "WorkerHealth",
    "WorkerInfo",
]


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """One node served by a worker: its slots, and its entries since the worker started."""

    name: str
    """The node's name."""
    concurrency: int
    """Entries the worker runs at once for this node."""
    in_flight: int
    """Node calls running now."""
    held: int
    """Entries this worker owns now: running, read ahead, or waiting to run solo."""
    consumed: int
    """Entries read from the node's streams."""
    acked: int
    """Entries committed (outputs published, input acknowledged)."""
    fenced: int
    """Commits refused because another worker had taken the entry over."""
    failed: int
    """Entries left unfinished by a fault outside the node, for another take-over."""
    dead_lettered: int
    """Entries moved to the node's dead-letter stream by this worker."""
    taken_over: int
    """Entries this worker took over from workers presumed dead."""


@dataclass(frozen=True, slots=True)
class RedisLink:
    """A worker's connection to Redis."""

    url: str
    """The server's URL, password hidden."""
    connected: bool
    """Whether the last command succeeded."""
    down_since: float | None
    """While disconnected, since when (epoch seconds); None while connected."""
    last_error: str | None
    """The last connection error's type and text, password hidden (kept after recovery)."""
    last_error_at: float | None
    """When that error happened (epoch seconds)."""
    reconnects: int
    """Times the connection came back after being lost."""


@dataclass(frozen=True, slots=True)
class WorkerHealth:
    """A worker process's health; ``status`` follows the module's rule."""

    status: HealthStatus
    """``ok``, ``degraded`` or ``failing``."""
    reasons: tuple[str, ...]
    """Why the status is not ``ok`` (empty when it is)."""
    flow_id: str
    """The flow served."""
    consumer: str
    """The worker's consumer name (in every group it reads, and in its heartbeat)."""
    host: str
    """The host it runs on."""
    pid: int
    """Its process id."""
    running: bool
    """Whether it is serving now."""
    started_at: float | None
    """When it started serving (epoch seconds)."""
    heartbeat_at: float | None
    """When its last heartbeat reached Redis (epoch seconds, this host's clock)."""
    nodes: tuple[NodeLoad, ...]
    """The nodes it serves."""
    redis: RedisLink
    """Its connection to Redis."""


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    """One consumer of a node's group on one stream."""

    name: str
    """The consumer's name (a worker's)."""
    pending: int
    """Entries delivered to it and not acknowledged yet."""
    idle_s: float
    """Seconds since it last read or claimed from this stream."""
    alive: bool
    """Whether a worker of that name has a heartbeat that has not expired."""


@dataclass(frozen=True, slots=True)
class StreamStats:
    """One edge stream (a floe) and the consuming node's group on it."""

    stream: str
    """The stream's key."""
    source: str | None
    """The producing node's name; None for the ingress stream (OpenSea)."""
    target: str
    """The consuming node's name (its group's name)."""
    depth: int
    """Entries in the stream (``XLEN``): pending and not yet delivered alike, because every
    acknowledgement deletes its entry."""
    pending: int
    """Entries delivered to a consumer and not acknowledged yet."""
    lag: int | None
    """Entries not yet delivered to any consumer (None when Redis cannot tell)."""
    oldest_pending_id: str | None
    """The id of the oldest pending entry, if any."""
    oldest_pending_idle_s: float | None
    """Seconds since the oldest pending entry was delivered or heartbeated, if any."""
    consumers: tuple[ConsumerStats, ...]
    """The group's consumers."""


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker process known by its heartbeats (dead ones stay listed for an hour)."""

    name: str
    """Its consumer name."""
    host: str
    """The host it runs on."""
    pid: int
    """Its process id."""
    nodes: tuple[str, ...]
    """The nodes it serves."""
    concurrency: Mapping[str, int]
    """Entries it runs at once, per node."""
    alive: bool
    """Whether its last heartbeat has not expired (after ``min_idle_s``)."""
    heartbeat_age_s: float
    """Seconds since its last heartbeat, on the Redis server's clock."""


@dataclass(frozen=True, slots=True)
class FlowOverview:
    """A distributed flow as Redis holds it, read in one transaction."""

    flow_id: str
    """The flow."""
    at: float
    """When it was read, on the Redis server's clock (epoch seconds)."""
    streams: tuple[StreamStats, ...]
    """Every edge stream."""
    dead_letters: Mapping[str, int]
    """Entries in each node's dead-letter stream."""
    workers: tuple[WorkerInfo, ...]
    """Workers known by their heartbeats, live and recently dead."""

    def stream(self, source: str | None, target: str) -> StreamStats:
        """The stream of the edge ``source -> target`` (``source`` None: the ingress).

        Raises:
            KeyError: the flow has no such edge.
        """
        for each in self.streams:
            if (each.source, each.target) == (source, target):
                return each
        edges = [(each.source, each.target) for each in self.streams]
        raise KeyError(f"no edge {source!r} -> {target!r} in flow {self.flow_id}; edges: {edges}")

    def worker(self, name: str) -> WorkerInfo:
        """The worker of consumer name ``name``.

        Raises:
            KeyError: no worker of that name is known.
        """
        for each in self.workers:
            if each.name == name:
                return each
        known = [each.name for each in self.workers]
        raise KeyError(f"no worker {name!r} in flow {self.flow_id}; known: {known}")
