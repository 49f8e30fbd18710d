"""Reading a flow's live state into its ``FlowHealth`` snapshot.

The state store is read duck-typed (``status``, ``last_error``, ``describe``, as penguiflow's
own stores have them): the engine imports no store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ..health import FloeHealth, FlowHealth, HealthStatus, NodeHealth

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from ..node import Node
    from .floe import Floe
    from .nodes import NodeStatus
    from .results import Results
    from .worker import Worker

__all__ = [
    "STORE_FLUSH_TIMED_OUT",
    "STORE_FLUSH_TIMEOUT_S",
    "check_store_accepts_traces",
    "describe_store",
    "health_of",
    "store_status",
]

STORE_FLUSH_TIMEOUT_S: Final = 5.0
"""How long ``PenguiFlow.stop()`` waits for the state store's ``flush()``."""
STORE_FLUSH_TIMED_OUT: Final = "state_store_flush_timed_out"
"""Logged by ``stop()`` when the store's flush did not finish in ``STORE_FLUSH_TIMEOUT_S``."""

_STATUSES: Final[frozenset[object]] = frozenset({"ok", "degraded", "failing"})
_RANK: Final = {"ok": 0, "degraded": 1, "failing": 2}


def store_status(store: object) -> HealthStatus | None:
    """Return the store's ``status`` when it has one of the three health values, else None."""
    status = getattr(store, "status", None)
    return status if status in _STATUSES else None


def describe_store(store: object) -> str | None:
    """Name the store (its ``describe()`` or repr) and, while it is not ok, its last error."""
    if store is None:
        return None
    describe = getattr(store, "describe", None)
    name = describe() if callable(describe) else repr(store)
    error = getattr(store, "last_error", None)
    if error is not None and store_status(store) not in (None, "ok"):
        return f"{name}: {error!r}"
    return str(name)


def check_store_accepts_traces(store: object) -> None:
    """Refuse a new trace while the store's commits keep failing.

    Raises:
        RuntimeError: the store's ``status`` is ``failing``; the message names the store
            and its last error.
    """
    if store_status(store) == "failing":
        raise RuntimeError(
            f"the state_store {describe_store(store)} is failing (its commits have kept "
            "failing); new traces are refused until a commit succeeds"
        )


def health_of(
    *,
    running: bool,
    nodes: Sequence[Node],
    workers: Sequence[Worker],
    statuses: Mapping[Node, NodeStatus],
    floes: Sequence[Floe[Any]],
    traces_in_flight: int,
    results: Results,
    store: object = None,
) -> FlowHealth:
    """Read every node's workers, breaker and last error, every floe's depth, the store's status.

    Before the first ``run()`` a node counts the workers its policy asks for, none alive.
    """
    node_health = [_node_health(node, workers, statuses[node]) for node in nodes]
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
    if overall == "ok" and pressed:
        overall = "degraded"
    stored = store_status(store)
    if stored is not None and _RANK[stored] > _RANK[overall]:
        overall = stored
    return FlowHealth(
        status=overall,
        running=running,
        traces_in_flight=traces_in_flight,
        nodes=tuple(node_health),
        floes=floe_health,
        results_waiting=results.held,
        results_capacity=results.capacity,
        roundtrips=len(results.inboxes),
        roundtrip_limit=results.roundtrip_limit,
        store_status=stored,
        store=describe_store(store),
    )


def _node_health(node: Node, workers: Sequence[Worker], status: NodeStatus) -> NodeHealth:
    mine = [w for w in workers if w.node is node]
    return NodeHealth(
        name=node.name or node.node_id,
        workers=len(mine) or node.policy.concurrency,
        workers_alive=sum(1 for w in mine if w.task is not None and not w.task.done()),
        restarts=status.restarts,
        breaker=status.breaker.state if status.breaker is not None else None,
        last_error=status.last_error,
        in_flight=sum(1 for w in mine if w.item is not None),
    )


def _status(running: bool, nodes: list[NodeHealth], floes: tuple[FloeHealth, ...]) -> HealthStatus:
    if not running or any(n.workers_alive == 0 or n.breaker == "open" for n in nodes):
        return "failing"
    degraded = any(
        n.breaker == "half_open" or n.restarts or n.workers_alive < n.workers for n in nodes
    ) or any(f.capacity and f.depth >= f.capacity for f in floes)
    return "degraded" if degraded else "ok"
