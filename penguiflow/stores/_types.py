"""The records the stores share: stored traces, trace queries and the queued write operations.

A store turns every write (an event, a trace starting or ending, a binding saved or closed)
into one of the operation records below and queues it on its writer, so that all writes of a
store are committed in the order they were made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, get_args

from ..state import RemoteBinding, StoredEvent

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "END_STATUSES",
    "TRACE_STATUSES",
    "BindingQuery",
    "BindingSave",
    "BindingTerminal",
    "LeaseRenew",
    "StoredTrace",
    "TraceEnd",
    "TraceQuery",
    "TraceStart",
    "TraceStatus",
    "WriteOp",
]

TraceStatus: TypeAlias = Literal["running", "finished", "cancelled", "failed"]
"""Where a trace stands: ``running`` until ``save_trace_end`` records how it ended."""

END_STATUSES: Final[Mapping[str, TraceStatus]] = {
    "finished": "finished",
    "cancelled": "cancelled",
    "failed": "failed",
}
"""The statuses a trace may end with, each mapped to itself (so a lookup narrows a ``str``)."""
TRACE_STATUSES: Final[Mapping[str, TraceStatus]] = {"running": "running", **END_STATUSES}
"""Every status, each mapped to itself."""
assert set(TRACE_STATUSES) == set(get_args(TraceStatus))


@dataclass(slots=True)
class StoredTrace:
    """One trace as a store keeps it, for listing and for recovery after a crash."""

    trace_id: str
    """The trace."""
    status: TraceStatus
    """``running`` until the trace ends, then how it ended."""
    input_json: str | None
    """The message that started the trace, as the JSON text given to ``save_trace_start``."""
    created_at: float
    """When the trace was (last) started, epoch seconds."""
    updated_at: float
    """When the trace last changed status, epoch seconds."""
    flow_key: str
    """Names the flow that runs the trace, so that a restarted flow finds its own traces."""
    targets: str | None = None
    """The names of the nodes the input was sent to (``emit(..., to=...)``), as a JSON list;
    None when it went to every ingress node."""
    lease_id: str | None = None
    """The lease of the store (one per process) that runs the trace; None if unknown."""


@dataclass(frozen=True, slots=True)
class TraceQuery:
    """What ``list_traces`` and ``unfinished_traces`` ask a backend for."""

    status: TraceStatus | None = None
    """Only traces with this status; None for any."""
    since: float | None = None
    """Only traces updated at or after this time (epoch seconds)."""
    until: float | None = None
    """Only traces updated strictly before this time (epoch seconds)."""
    flow_key: str | None = None
    """Only traces of this flow; None for any."""
    limit: int | None = 100
    """At most this many traces; None for all."""
    oldest_first: bool = False
    """Order by creation, oldest first (recovery), instead of newest update first."""


@dataclass(frozen=True, slots=True)
class TraceStart:
    """Queued by ``save_trace_start``."""

    trace_id: str
    input_json: str
    flow_key: str
    at: float
    lease_id: str | None = None
    targets: str | None = None


@dataclass(frozen=True, slots=True)
class TraceEnd:
    """Queued by ``save_trace_end``."""

    trace_id: str
    status: TraceStatus
    at: float


@dataclass(frozen=True, slots=True)
class BindingSave:
    """Queued by ``save_remote_binding``; ``binding`` is a snapshot taken at the call."""

    binding: RemoteBinding
    at: float


@dataclass(frozen=True, slots=True)
class BindingTerminal:
    """Queued by ``mark_binding_terminal``."""

    trace_id: str
    context_id: str | None
    task_id: str
    at: float


@dataclass(frozen=True, slots=True)
class LeaseRenew:
    """Queued by a store's heartbeat: its lease is held until ``expires_at`` (epoch seconds)."""

    lease_id: str
    owner: str
    expires_at: float
    at: float


WriteOp: TypeAlias = (
    StoredEvent | TraceStart | TraceEnd | BindingSave | BindingTerminal | LeaseRenew
)
"""Everything a store's writer commits."""


@dataclass(frozen=True, slots=True)
class BindingQuery:
    """What ``find_binding`` asks a backend for; every field must match (None matches None)."""

    router_session_id: str
    agent_url: str
    remote_skill: str | None
    tenant_id: str | None
    user_id: str | None
