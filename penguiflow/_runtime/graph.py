"""Wiring adjacencies into nodes and floes, and checking the graph for cycles."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import CycleError
from ..node import Node
from .constants import CYCLE
from .endpoints import OPEN_SEA, ROOKERY
from .floe import Floe

__all__ = ["Wiring", "wire"]


@dataclass(slots=True)
class Wiring:
    """The shape of a flow: its nodes in order of first appearance and all of its floes."""

    nodes: list[Node]
    successors: dict[Node, dict[Node, None]]
    floes: list[Floe[Any]]


def _check_adjacency(index: int, adjacency: Any) -> tuple[Node, Sequence[Node]]:
    shape = "a (Node, Sequence[Node]) pair as made by node.to(...)"
    if not (isinstance(adjacency, tuple) and len(adjacency) == 2):
        raise TypeError(
            f"adjacency #{index} must be {shape}, got {type(adjacency).__name__} {adjacency!r}"
        )
    source, targets = adjacency
    if not isinstance(source, Node):
        raise TypeError(
            f"adjacency #{index}: source must be a Node, got {type(source).__name__} {source!r}"
        )
    if isinstance(targets, str | bytes) or not isinstance(targets, Sequence):
        raise TypeError(
            f"adjacency #{index} ({source.name}): successors must be a sequence of Nodes, "
            f"got {type(targets).__name__}"
        )
    for target in targets:
        if not isinstance(target, Node):
            raise TypeError(
                f"adjacency #{index} ({source.name}): successor must be a Node, "
                f"got {type(target).__name__} {target!r}"
            )
    return source, targets


def _collect(adjacencies: Sequence[Any]) -> tuple[list[Node], dict[Node, dict[Node, None]]]:
    nodes: dict[Node, None] = {}
    successors: dict[Node, dict[Node, None]] = {}
    for index, adjacency in enumerate(adjacencies):
        source, targets = _check_adjacency(index, adjacency)
        nodes.setdefault(source, None)
        edges = successors.setdefault(source, {})
        for target in targets:
            nodes.setdefault(target, None)
            successors.setdefault(target, {})
            edges.setdefault(target, None)  # duplicate edges collapse
    by_name: dict[str, Node] = {}
    for node in nodes:
        name = node.name or node.node_id
        other = by_name.setdefault(name, node)
        if other is not node:
            raise ValueError(
                f"Flow has two distinct nodes named '{name}' (node_id {other.node_id} and "
                f"{node.node_id}); node names must be unique within a flow because the "
                "registry, routing by name and events identify nodes by name"
            )
    return list(nodes), successors


def _has_cycle(nodes: list[Node], successors: dict[Node, dict[Node, None]]) -> bool:
    """Kahn's algorithm; self-edges of ``allow_cycle`` nodes are not counted."""
    indegree = dict.fromkeys(nodes, 0)
    edges: dict[Node, list[Node]] = {}
    for source in nodes:
        kept = [t for t in successors[source] if not (t is source and source.allow_cycle)]
        edges[source] = kept
        for target in kept:
            indegree[target] += 1
    ready = [node for node in nodes if indegree[node] == 0]
    seen = 0
    while ready:
        node = ready.pop()
        seen += 1
        for target in edges[node]:
            indegree[target] -= 1
            if indegree[target] == 0:
                ready.append(target)
    return seen != len(nodes)


def wire(adjacencies: Sequence[Any], *, maxsize: int, allow_cycles: bool) -> Wiring:
    """Build the floes of a flow.

    Raises:
        TypeError: an adjacency is not a (Node, Sequence[Node]) pair.
        ValueError: two distinct nodes share a name.
        CycleError: the graph has a cycle and ``allow_cycles`` is False.
    """
    nodes, successors = _collect(adjacencies)
    if not allow_cycles and _has_cycle(nodes, successors):
        raise CycleError(CYCLE)
    floes: list[Floe[Any]] = []
    has_parent: set[Node] = set()
    for source in nodes:
        for target in successors[source]:
            floes.append(Floe(source, target, maxsize=maxsize))
            if not (target is source and source.allow_cycle):
                has_parent.add(target)
    floes.extend(Floe(OPEN_SEA, node, maxsize=maxsize) for node in nodes if node not in has_parent)
    for node in nodes:
        targets = successors[node]
        if not targets or (len(targets) == 1 and node in targets):
            floes.append(Floe(node, ROOKERY, maxsize=maxsize))
    return Wiring(nodes=nodes, successors=successors, floes=floes)
