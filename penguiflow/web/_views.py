"""The JSON the page reads: the graph, each node's live figures, traces and a trace's timeline.

Everything here is built from public reads: ``flow.health()``, ``flow.active_traces()``, the
``Recorder``'s counts and logs, and a store's ``list_traces`` / ``load_history``. Every value
taken from user data goes through the ``Sanitizer``; names and numbers the runtime makes do
not.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final, Protocol, final, runtime_checkable

from .._events import STANDARD_PAYLOAD_FIELDS

if TYPE_CHECKING:
    from collections.abc import Sequence

    from .._sanitize import Sanitizer
    from ..core import PenguiFlow
    from ..health import FlowHealth, NodeError
    from ..metrics import FlowEvent
    from ..state import StoredEvent
    from ._recorder import Recorder

__all__ = [
    "TRACE_LIST_LIMIT",
    "MemoryTraces",
    "StoreTraces",
    "TraceReader",
    "TraceSource",
    "figures",
    "graph",
]

TRACE_LIST_LIMIT: Final = 100
"""The most traces one listing returns."""
TIMELINE_LIMIT: Final = 500
"""The most events one timeline returns (the latest ones)."""


JSON = dict[str, Any]
"""A JSON object as the API sends it (values are JSON-ready)."""


def graph(health: FlowHealth) -> JSON:
    """Nodes (in order of first appearance) and edges, from the health snapshot's floes."""
    nodes = {node.name: node.workers for node in health.nodes}
    seen: dict[str, JSON] = {}
    edges = []
    for floe in health.floes:
        for name in (floe.source, floe.target):
            if name not in seen:
                kind = "node" if name in nodes else "endpoint"
                seen[name] = {"name": name, "kind": kind, "workers": nodes.get(name, 0)}
        edges.append({"source": floe.source, "target": floe.target, "capacity": floe.capacity})
    for name, workers in nodes.items():  # a node without floes still shows
        seen.setdefault(name, {"name": name, "kind": "node", "workers": workers})
    return {"nodes": list(seen.values()), "edges": edges}


def figures(
    health: FlowHealth,
    recorder: Recorder,
    rates: dict[str, float],
    sanitizer: Sanitizer,
    now: float,
) -> JSON:
    """The live snapshot the stream pushes: overall health, per-node figures, floe depths."""
    depth: dict[str, int] = {}
    capacity: dict[str, int | None] = {}
    for floe in health.floes:
        depth[floe.target] = depth.get(floe.target, 0) + floe.depth
        # A node with one unbounded incoming floe has no bound at all (None).
        previous = capacity.get(floe.target, 0)
        if previous is None or not floe.capacity:
            capacity[floe.target] = None
        else:
            capacity[floe.target] = previous + floe.capacity
    nodes = {}
    for node in health.nodes:
        counts = recorder.counts.get(node.name)
        nodes[node.name] = {
            "queue_depth": depth.get(node.name, 0),
            "queue_capacity": capacity.get(node.name, 0),
            "in_flight": node.in_flight,
            "workers": node.workers,
            "workers_alive": node.workers_alive,
            "restarts": node.restarts,
            "breaker": node.breaker,
            "rate": round(rates.get(node.name, 0.0), 3),
            "succeeded": counts.succeeded if counts else 0,
            "errors": counts.errors if counts else 0,
            "failed": counts.failed if counts else 0,
            "retries": counts.retries if counts else 0,
            "last_error": _error(node.last_error, sanitizer),
        }
    return {
        "ts": now,
        "health": {
            "status": health.status,
            "running": health.running,
            "traces_in_flight": health.traces_in_flight,
            "results_waiting": health.results_waiting,
            "results_capacity": health.results_capacity,
            "roundtrips": health.roundtrips,
            "roundtrip_limit": health.roundtrip_limit,
            "store_status": health.store_status,
            "store": sanitizer.optional(health.store),
        },
        "nodes": nodes,
        "edges": [
            {"source": f.source, "target": f.target, "depth": f.depth, "capacity": f.capacity}
            for f in health.floes
        ],
    }


def _error(error: NodeError | None, sanitizer: Sanitizer) -> JSON | None:
    if error is None:
        return None
    return {
        "code": error.code,
        "message": sanitizer.text(error.message),
        "trace_id": error.trace_id,
        "ts": error.ts,
    }


class TraceSource(Protocol):
    """Where the page's traces come from: the flow's events in memory, or a store."""

    kind: str
    """``memory`` or ``store``."""

    def notes(self) -> list[str]:
        """What this source cannot show, said plainly for the page."""
        ...

    async def traces(self, limit: int) -> list[JSON]:
        """The most recent traces, newest first."""
        ...

    async def timeline(self, trace_id: str) -> JSON | None:
        """One trace's status, input and events, oldest first; None if unknown."""
        ...


@runtime_checkable
class TraceReader(Protocol):
    """The reads of a store the page uses (penguiflow's stores have them)."""

    async def list_traces(self, *, limit: int = 100) -> Sequence[Any]:
        """Traces with ``trace_id``, ``status``, ``created_at``, ``updated_at``, ``input_json``."""
        ...

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        """A trace's events in the order they were saved."""
        ...


@final
class MemoryTraces:
    """Traces from the ``Recorder``'s logs; live status from ``flow.active_traces()``."""

    kind = "memory"

    def __init__(self, flow: PenguiFlow, recorder: Recorder, sanitizer: Sanitizer) -> None:
        self._flow = flow
        self._recorder = recorder
        self._sanitizer = sanitizer

    def notes(self) -> list[str]:
        """Say what memory cannot give: no inputs, a bound, nothing from before the start."""
        recorder = self._recorder
        return [
            "No state store: traces are kept in memory from this process's events only "
            "(nothing from before this page started, nothing after a restart).",
            f"At most {recorder.max_traces} traces of {recorder.max_events} events each "
            "are kept; older ones are forgotten.",
            "A trace's input is not kept in memory; a trace shows up once a node has handled it.",
        ]

    async def traces(self, limit: int) -> list[JSON]:
        """The most recently touched traces first."""
        live = set(self._flow.active_traces())
        logs = list(self._recorder.traces.values())[-limit:]
        return [
            {
                "trace_id": log.trace_id,
                "status": _memory_status(log.trace_id in live, log.failed, log.cancelled),
                "started_at": log.first_ts,
                "updated_at": log.last_ts,
                "events": len(log.events) + log.dropped,
            }
            for log in reversed(logs)
        ]

    async def timeline(self, trace_id: str) -> JSON | None:
        """The recorded events of ``trace_id``; None if it was never seen or is forgotten."""
        log = self._recorder.traces.get(trace_id)
        if log is None:
            return None
        live = trace_id in set(self._flow.active_traces())
        return {
            "trace_id": trace_id,
            "status": _memory_status(live, log.failed, log.cancelled),
            "input": None,
            "omitted": log.dropped,
            "events": [self._entry(event) for event in log.events],
        }

    def _entry(self, event: FlowEvent) -> JSON:
        extra = dict(event.extra)
        return _entry(
            event.ts,
            event.event_type,
            event.node_name,
            event.attempt,
            event.latency_ms,
            self._sanitizer.text(extra) if extra else None,
        )


def _memory_status(live: bool, failed: bool, cancelled: bool) -> str:
    # The order the runtime's own trace end uses: cancelled, then failed, then finished.
    if cancelled:
        return "cancelled"
    if live:
        return "running"
    return "failed" if failed else "finished"


@final
class StoreTraces:
    """Traces and histories read from a store (``list_traces``, ``load_history``)."""

    kind = "store"

    def __init__(self, store: TraceReader, sanitizer: Sanitizer) -> None:
        self._store = store
        self._sanitizer = sanitizer

    def notes(self) -> list[str]:
        """Name the store; histories hold only the events it keeps."""
        describe = getattr(self._store, "describe", None)
        name = describe() if callable(describe) else type(self._store).__name__
        return [
            f"Traces and histories are read from {name}; a history holds the events this "
            "store keeps, committed ones only."
        ]

    async def traces(self, limit: int) -> list[JSON]:
        """The most recently updated traces first, with their input."""
        stored = await self._store.list_traces(limit=limit)
        return [self._trace(each) for each in stored]

    def _trace(self, stored: Any) -> JSON:
        return {
            "trace_id": stored.trace_id,
            "status": stored.status,
            "started_at": stored.created_at,
            "updated_at": stored.updated_at,
            "input": self._sanitizer.optional(stored.input_json),
        }

    async def timeline(self, trace_id: str) -> JSON | None:
        """The stored history of ``trace_id`` (its latest ``TIMELINE_LIMIT`` events)."""
        history = list(await self._store.load_history(trace_id))
        listed = {t.trace_id: t for t in await self._store.list_traces(limit=TRACE_LIST_LIMIT)}
        stored = listed.get(trace_id)
        if not history and stored is None:
            return None
        omitted = max(0, len(history) - TIMELINE_LIMIT)
        return {
            "trace_id": trace_id,
            "status": stored.status if stored is not None else None,
            "input": self._sanitizer.optional(stored.input_json) if stored else None,
            "omitted": omitted,
            "events": [self._entry(event) for event in history[omitted:]],
        }

    def _entry(self, event: StoredEvent) -> JSON:
        payload = event.payload
        extra = {key: value for key, value in payload.items() if key not in STANDARD_PAYLOAD_FIELDS}
        latency = payload.get("latency_ms")
        attempt = payload.get("attempt")
        return _entry(
            event.ts,
            event.kind,
            event.node_name,
            attempt if isinstance(attempt, int) else 0,
            latency if isinstance(latency, (int, float)) else None,
            self._sanitizer.text(extra) if extra else None,
        )


def _entry(
    ts: float,
    kind: str,
    node: str | None,
    attempt: int,
    latency_ms: float | None,
    detail: str | None,
) -> JSON:
    return {
        "ts": ts,
        "kind": kind,
        "node": node,
        "attempt": attempt,
        "latency_ms": latency_ms,
        "detail": detail,
    }
