"""Reading a flow's live state into its ``FlowHealth`` snapshot."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..health import FloeHealth, FlowHealth, HealthStatus, NodeHealth

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..node import Node
    from .floe import Floe
    from .nodes import NodeStatus
    from .results import Results
    from .worker import Worker

__all__ = ["health_of"]


def health_of(
    *,
    running: bool,
    nodes: Sequence[Node],
    workers: Sequence[Worker],
    statuses: Mapping[Node, NodeStatus],
    floes: Sequence[Floe[Any]],
    traces_in_flight: int,
    results: Results,
) -> FlowHealth:
    """Read every node's workers, breaker and last error and every floe's depth.

    Before the first ``run()`` a node counts the workers its policy asks for, none alive.
    """
    node_health = []
    for node in nodes:
        mine = [w for w in workers if w.node is node]
        alive = sum(1 for w in mine if w.task is not None and not w.task.done())
        status = statuses[node]
        node_health.append(
            NodeHealth(
                name=node.name or node.node_id,
                workers=len(mine) or node.policy.concurrency,
                workers_alive=alive,
                restarts=status.restarts,
                breaker=status.breaker.state if status.breaker is not None else None,
                last_error=status.last_error,
            )
        )
    floe_health = tuple(
        FloeHealth(
            source=getattr(floe.source, "name", None) or "",
            target=getattr(floe.target, "name", None) or "",
            depth=floe.qsize(),
            capacity=floe.maxsize,
        )
        for floe in floes
    )
    pressed = bool(results.capacity and results.held >= results.capacity) or bool(
        results.roundtrip_limit and len(results.inboxes) >= results.roundtrip_limit
    )
    overall = _status(running, node_health, floe_health)
    return FlowHealth(
        status="degraded" if overall == "ok" and pressed else overall,
        running=running,
        traces_in_flight=traces_in_flight,
        nodes=tuple(node_health),
        floes=floe_health,
        results_waiting=results.held,
        results_capacity=results.capacity,
        roundtrips=len(results.inboxes),
        roundtrip_limit=results.roundtrip_limit,
    )


def _status(running: bool, nodes: list[NodeHealth], floes: tuple[FloeHealth, ...]) -> HealthStatus:
    if not running or any(n.workers_alive == 0 or n.breaker == "open" for n in nodes):
        return "failing"
    degraded = any(
        n.breaker == "half_open" or n.restarts or n.workers_alive < n.workers for n in nodes
    ) or any(f.capacity and f.depth >= f.capacity for f in floes)
    return "degraded" if degraded else "ok"
