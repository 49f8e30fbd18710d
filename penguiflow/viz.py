"""Render a flow's graph as Mermaid or Graphviz DOT text.

Both renderers read ``flow._floes``: every floe contributes its source and target as nodes
(in order of first appearance) and one edge. Anything that is not a ``Node`` is an endpoint
(OpenSea or Rookery).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .node import Node

if TYPE_CHECKING:
    from collections.abc import Iterable

    from .core import PenguiFlow

__all__ = ["flow_to_dot", "flow_to_mermaid"]

_UNSAFE = re.compile(r"[^0-9A-Za-z_]")
_ENDPOINT = "endpoint"
_CONTROLLER = "controller_loop"
_MERMAID_CLASS_DEFS = {
    _CONTROLLER: "fill:#fef3c7,stroke:#b45309,stroke-width:1px",
    _ENDPOINT: "fill:#e0f2fe,stroke:#0369a1,stroke-width:1px",
}
_DOT_STYLES = {
    _ENDPOINT: ', shape=oval, style="filled", fillcolor="#e0f2fe"',
    _CONTROLLER: ', style="rounded,filled", fillcolor="#fef3c7"',
}
_INDENT = "    "


@dataclass(slots=True)
class _VizNode:
    ident: str
    """Identifier safe for both syntaxes."""
    label: str
    """Displayed text."""
    classes: list[str] = field(default_factory=list)
    """``endpoint`` and/or ``controller_loop``."""


@dataclass(slots=True)
class _VizEdge:
    source: str
    target: str
    label: str | None


@dataclass(slots=True)
class _VizGraph:
    nodes: list[_VizNode]
    edges: list[_VizEdge]


def _label_of(obj: object) -> str:
    if isinstance(obj, Node):
        return obj.name or obj.node_id
    return str(getattr(obj, "name", obj))


def _identifier(label: str, used: set[str]) -> str:
    base = _UNSAFE.sub("_", label) or "node"
    ident, suffix = base, 2
    while ident in used:
        ident, suffix = f"{base}_{suffix}", suffix + 1
    used.add(ident)
    return ident


def _edge_label(source: object, target: object) -> str | None:
    if source is target:
        return "loop"
    if not isinstance(source, Node):
        return "ingress"
    if not isinstance(target, Node):
        return "egress"
    return None


def _collect(floes: Iterable[object]) -> _VizGraph:
    """Walk the floes once, naming every endpoint and classifying it."""
    pairs = [(getattr(f, "source", None), getattr(f, "target", None)) for f in floes]
    looping = {src for src, dst in pairs if src is not None and src is dst}
    known: dict[object, _VizNode] = {}
    used: set[str] = set()

    def register(obj: object) -> _VizNode:
        viz = known.get(obj)
        if viz is None:
            label = _label_of(obj)
            viz = known[obj] = _VizNode(_identifier(label, used), label)
            if not isinstance(obj, Node):
                viz.classes.append(_ENDPOINT)
            elif obj.allow_cycle or obj in looping:
                viz.classes.append(_CONTROLLER)
        return viz

    edges: list[_VizEdge] = []
    for src, dst in pairs:
        if src is None or dst is None:
            continue
        source, target = register(src), register(dst)
        edges.append(_VizEdge(source.ident, target.ident, _edge_label(src, dst)))
    return _VizGraph(list(known.values()), edges)


def flow_to_mermaid(flow: PenguiFlow, *, direction: str = "TD") -> str:
    """Return a Mermaid ``graph`` of the flow (no trailing newline).

    Self-edges are labelled ``loop``, edges from an endpoint ``ingress`` and edges to one
    ``egress``; endpoints and controller loops get a ``classDef`` style.

    Args:
        flow: The flow to draw; it need not be running.
        direction: Mermaid direction, e.g. ``TD`` or ``LR``.
    """
    graph = _collect(flow._floes)
    lines = [f"graph {direction}"]
    for node in graph.nodes:
        label = node.label.replace('"', '\\"')
        lines.append(f'{_INDENT}{node.ident}["{label}"]')
    in_use = sorted({cls for node in graph.nodes for cls in node.classes})
    lines.extend(f"{_INDENT}classDef {cls} {_MERMAID_CLASS_DEFS[cls]}" for cls in in_use)
    lines.extend(
        f"{_INDENT}class {node.ident} {' '.join(node.classes)}"
        for node in graph.nodes
        if node.classes
    )
    for edge in graph.edges:
        arrow = f"-->|{edge.label}|" if edge.label else "-->"
        lines.append(f"{_INDENT}{edge.source} {arrow} {edge.target}")
    return "\n".join(lines)


def flow_to_dot(flow: PenguiFlow, *, rankdir: str = "TB") -> str:
    """Return a Graphviz ``digraph PenguiFlow`` of the flow (no trailing newline).

    Edges are labelled as in ``flow_to_mermaid``; endpoints are filled ovals and controller
    loops filled boxes.

    Args:
        flow: The flow to draw; it need not be running.
        rankdir: Graphviz layout direction, e.g. ``TB`` or ``LR``.
    """
    graph = _collect(flow._floes)
    lines = [
        "digraph PenguiFlow {",
        f"{_INDENT}rankdir={rankdir}",
        f"{_INDENT}node [shape=box, style=rounded]",
    ]
    for node in graph.nodes:
        label = node.label.replace('"', '\\"')
        # A node has at most one class: endpoints never loop.
        style = _DOT_STYLES[node.classes[0]] if node.classes else ""
        lines.append(f'{_INDENT}{node.ident} [label="{label}"{style}]')
    for edge in graph.edges:
        suffix = f' [label="{edge.label}"]' if edge.label else ""
        lines.append(f"{_INDENT}{edge.source} -> {edge.target}{suffix}")
    lines.append("}")
    return "\n".join(lines)
