"""Redis key names of one distributed flow, and the flow's topology read from its floes.

Every key carries the flow id in a hash tag (``pf:{F}:...``), so that all the keys one script
touches live on one Redis Cluster slot.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._runtime.endpoints import OPEN_SEA, ROOKERY, Endpoint
from ..node import Node

if TYPE_CHECKING:
    from .._runtime.flow import PenguiFlow

__all__ = ["Keys", "Topology", "name_of", "topology_of"]


@dataclass(frozen=True, slots=True)
class Keys:
    """Names the keys of the flow ``flow_id``."""

    flow_id: str

    @property
    def prefix(self) -> str:
        """The common prefix, with the flow id as the hash tag."""
        return f"pf:{{{self.flow_id}}}:"

    def edge(self, source: str | None, target: str) -> str:
        """The stream of the floe ``source -> target`` (``source`` None: from OpenSea)."""
        return f"{self.prefix}e:{source or ''}>{target}"

    def results(self, client_id: str) -> str:
        """The result stream of one caller."""
        return f"{self.prefix}rk:{client_id}"

    def dead_letters(self, node: str) -> str:
        """The dead-letter stream of one node."""
        return f"{self.prefix}dlq:{node}"

    def cancelled(self, trace_id: str) -> str:
        """The cancel marker of one trace."""
        return f"{self.prefix}cx:{trace_id}"

    def emitted(self, envelope_id: str) -> str:
        """The marker that an envelope was emitted already (a retried emit is not doubled)."""
        return f"{self.prefix}dd:{envelope_id}"

    @property
    def workers(self) -> str:
        """The sorted set of worker names, scored by when their heartbeat expires (ms)."""
        return f"{self.prefix}workers"

    @property
    def worker_info(self) -> str:
        """The hash of what each worker serves (JSON by worker name)."""
        return f"{self.prefix}worker-info"

    @property
    def cancel_channel(self) -> str:
        """The pub/sub channel that announces cancelled traces."""
        return f"{self.prefix}cancel"


@dataclass(slots=True)
class Topology:
    """Where each node reads and writes, in stream names."""

    nodes: dict[str, Node] = field(default_factory=dict)
    """The flow's nodes by name."""
    inbound: dict[str, list[str]] = field(default_factory=dict)
    """Per node, the streams it consumes (its group is named after it on each)."""
    outbound: dict[str, dict[Node | Endpoint, str | None]] = field(default_factory=dict)
    """Per node, its targets and their streams (None: the Rookery, i.e. the caller's)."""
    ingress: dict[Node, str] = field(default_factory=dict)
    """The nodes fed from OpenSea, and their ingress stream."""
    maxsize: int = 0
    """Every floe's bound (the flow's ``queue_maxsize``; 0 is unbounded)."""


def topology_of(flow: PenguiFlow, keys: Keys) -> Topology:
    """Map the floes of ``flow`` onto stream names.

    Raises:
        ValueError: a node name cannot name a stream (empty, or holding ``>``).
    """
    topo = Topology()
    floes: list[Any] = flow._floes
    for floe in floes:
        source, target = floe.source, floe.target
        topo.maxsize = floe.maxsize
        for end in (source, target):
            if isinstance(end, Node):
                _check_name(end)
                name = name_of(end)
                topo.nodes[name] = end
                topo.inbound.setdefault(name, [])
                topo.outbound.setdefault(name, {})
        if target is ROOKERY:
            assert isinstance(source, Node)
            topo.outbound[name_of(source)][ROOKERY] = None
            continue
        assert isinstance(target, Node)
        if source is OPEN_SEA:
            stream = keys.edge(None, name_of(target))
            topo.ingress[target] = stream
        else:
            assert isinstance(source, Node)
            stream = keys.edge(name_of(source), name_of(target))
            topo.outbound[name_of(source)][target] = stream
        topo.inbound[name_of(target)].append(stream)
    return topo


def _check_name(node: Node) -> None:
    name = node.name
    if not name or ">" in name or "\n" in name:
        raise ValueError(
            f"node name {name!r} cannot name a Redis stream: use a non-empty name without '>'"
        )


def name_of(node: Node) -> str:
    """The name a node goes by in stream and group names."""
    return node.name or node.node_id
