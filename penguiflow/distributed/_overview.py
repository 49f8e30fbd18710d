"""Reading a ``FlowOverview`` from Redis: streams, groups, dead letters and heartbeats.

Design note: everything is read in one ``MULTI`` transaction, so the numbers of one overview
are of one instant (a stream's depth and its group's pending count agree). Only reads: any
process may ask, as often as it likes. A stream or group that does not exist yet (no worker
has started) reads as empty, not as an error.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from ..node import Node
from ._keys import name_of
from .health import ConsumerStats, FlowOverview, StreamStats, WorkerInfo

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._keys import Keys, Topology

__all__ = ["Edge", "discover", "edges_of", "read_overview"]

Edge = tuple[str | None, str, str]
"""An edge stream: source node (None: the ingress), target node, stream key."""

_PER_EDGE = 4
"""Commands read per edge stream (see ``read_overview``)."""


def edges_of(topology: Topology) -> tuple[list[Edge], list[str]]:
    """The edge streams of a flow, ingress first, and its node names."""
    edges: list[Edge] = [(None, name_of(node), stream) for node, stream in topology.ingress.items()]
    for source, targets in topology.outbound.items():
        edges += [
            (source, name_of(target), stream)
            for target, stream in targets.items()
            if isinstance(target, Node) and stream is not None  # not the Rookery: no stream
        ]
    return edges, list(topology.nodes)


async def discover(client: Any, keys: Keys) -> tuple[list[Edge], list[str]]:
    """The edge streams and nodes found in Redis (``SCAN``), for a reader without the flow."""
    edge_prefix, dlq_prefix = f"{keys.prefix}e:", f"{keys.prefix}dlq:"
    edges: list[Edge] = []
    async for key in client.scan_iter(match=_glob(edge_prefix) + "*", count=1000, _type="STREAM"):
        # Node names hold no '>' (checked by ``topology_of``): the last one splits the edge.
        source, _, target = key[len(edge_prefix) :].rpartition(">")
        edges.append((source or None, target, key))
    nodes = {target for _source, target, _key in edges}
    async for key in client.scan_iter(match=_glob(dlq_prefix) + "*", count=1000, _type="STREAM"):
        nodes.add(key[len(dlq_prefix) :])
    edges.sort(key=lambda edge: (edge[0] is not None, edge[0] or "", edge[1]))
    return edges, sorted(nodes)


def _glob(text: str) -> str:
    """``text`` with the characters special to Redis' glob patterns escaped."""
    for special in "\\*?[]":
        text = text.replace(special, "\\" + special)
    return text


async def read_overview(
    client: Any, keys: Keys, edges: Sequence[Edge], nodes: Sequence[str]
) -> FlowOverview:
    """Read the overview of ``edges`` and ``nodes`` in one transaction.

    Raises:
        redis.ConnectionError: the server went away.
    """
    async with client.pipeline(transaction=True) as pipe:
        pipe.time()
        pipe.zrange(keys.workers, 0, -1, withscores=True)
        pipe.hgetall(keys.worker_info)
        for _source, target, stream in edges:
            pipe.xlen(stream)
            pipe.xinfo_groups(stream)
            pipe.xinfo_consumers(stream, target)
            pipe.xpending_range(stream, target, "-", "+", 1)
        for node in nodes:
            pipe.xlen(keys.dead_letters(node))
        answers: list[Any] = await pipe.execute(raise_on_error=False)
    seconds, micros = answers[0]
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    workers = _workers(answers[1], answers[2], now_ms)
    alive = {worker.name for worker in workers if worker.alive}
    streams = []
    for index, (source, target, stream) in enumerate(edges):
        first = 3 + _PER_EDGE * index
        streams.append(_stream(source, target, stream, answers[first : first + _PER_EDGE], alive))
    dead = answers[3 + _PER_EDGE * len(edges) :]
    return FlowOverview(
        flow_id=keys.flow_id,
        at=now_ms / 1000,
        streams=tuple(streams),
        dead_letters=dict(zip(nodes, (int(count) for count in dead), strict=True)),
        workers=workers,
    )


def _stream(
    source: str | None, target: str, stream: str, answers: list[Any], alive: set[str]
) -> StreamStats:
    depth, groups, consumers, oldest = (
        [] if isinstance(answer, Exception) else answer for answer in answers
    )
    group = next((each for each in groups if each.get("name") == target), None)
    pending = int(group["pending"]) if group is not None else 0
    lag = group.get("lag") if group is not None else int(depth or 0)
    first = oldest[0] if oldest else None
    return StreamStats(
        stream=stream,
        source=source,
        target=target,
        depth=int(depth or 0),
        pending=pending,
        lag=None if lag is None else int(lag),
        oldest_pending_id=first["message_id"] if first else None,
        oldest_pending_idle_s=int(first["time_since_delivered"]) / 1000 if first else None,
        consumers=tuple(
            ConsumerStats(
                name=each["name"],
                pending=int(each["pending"]),
                idle_s=int(each["idle"]) / 1000,
                alive=each["name"] in alive,
            )
            for each in consumers
        ),
    )


def _workers(scored: list[Any], infos: dict[str, str], now_ms: int) -> tuple[WorkerInfo, ...]:
    workers = []
    for name, expires_ms in scored:
        info = _info(infos.get(name))
        ttl_ms = int(info.get("ttl_ms", 0))
        concurrency = {str(node): int(n) for node, n in dict(info.get("concurrency", {})).items()}
        workers.append(
            WorkerInfo(
                name=name,
                host=str(info.get("host", "")),
                pid=int(info.get("pid", 0)),
                nodes=tuple(concurrency),
                concurrency=concurrency,
                alive=expires_ms > now_ms,
                heartbeat_age_s=max(0.0, (now_ms - (expires_ms - ttl_ms)) / 1000),
            )
        )
    return tuple(sorted(workers, key=lambda worker: worker.name))


def _info(text: str | None) -> dict[str, Any]:
    """A worker's description; ``{}`` if it is missing or not what a worker writes."""
    try:
        found = json.loads(text) if text else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
