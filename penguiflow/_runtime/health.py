"""Reading a flow's live state: its ``FlowHealth`` snapshot, and the leak-check counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..health import FloeHealth, FlowHealth, HealthStatus, NodeHealth

if TYPE_CHECKING:
    from .flow import PenguiFlow

__all__ = ["health_of"]


def health_of(flow: PenguiFlow) -> FlowHealth:
    """Read every node's workers, breaker and last error and every floe's depth."""
    nodes = []
    for node in flow._nodes:
        workers = [w for w in flow._workers if w.node is node]
        alive = sum(1 for w in workers if w.task is not None and not w.task.done())
        status = flow._node_status[node]
        nodes.append(
            NodeHealth(
                name=node.name or node.node_id,
                workers=len(workers),
                workers_alive=alive,
                restarts=status.restarts,
                breaker=status.breaker.state if status.breaker is not None else None,
                last_error=status.last_error,
            )
        )
    floes = tuple(
        FloeHealth(
            source=getattr(floe.source, "name", None) or "",
            target=getattr(floe.target, "name", None) or "",
            depth=floe.queue.qsize(),
            capacity=max(floe.queue.maxsize, 0),
        )
        for floe in flow._floes
    )
    running = flow._running
    return FlowHealth(
        status=_status(running, nodes, floes),
        running=running,
        traces_in_flight=len(flow._traces.records),
        nodes=tuple(nodes),
        floes=floes,
    )


def _status(running: bool, nodes: list[NodeHealth], floes: tuple[FloeHealth, ...]) -> HealthStatus:
    if not running or any(n.workers_alive == 0 or n.breaker == "open" for n in nodes):
        return "failing"
    degraded = any(
        n.breaker == "half_open" or n.restarts or n.workers_alive < n.workers for n in nodes
    ) or any(f.capacity and f.depth >= f.capacity for f in floes)
    return "degraded" if degraded else "ok"


def residue_of(flow: PenguiFlow) -> dict[str, int]:
    """Count everything that must be empty once a flow has stopped (the tests' leak check)."""
    journal = flow._journal
    return {
        "traces": len(flow._traces.records),
        "trace_events": len(flow._traces.flags),
        "queued": sum(floe.queue.qsize() for floe in flow._floes),
        "rookery_buffer": len(flow._rookery._buffer),
        "inboxes": len(flow._roundtrip.inboxes),
        "shared": flow._roundtrip.shared.qsize(),
        "locks": len(flow._roundtrip.locks),
        "workers": len(flow._owner.workers),
        "helpers": len(flow._owner.helpers),
        "publishes": len(flow._owner.publishes),
        "external": len(flow._owner.external),
        "stream_counters": sum(len(ctx._stream_seqs) for ctx in flow._contexts.values()),
        "worker_index": len(flow._worker_of),
        "journal_starts": len(journal._starting) if journal is not None else 0,
    }
