"""The ``StateStore`` protocol: where a flow persists its events and remote bindings.

Stores are adapters: the runtime depends only on this protocol, and a flow built with
``state_store=`` awaits ``save_event`` for every event (a failure is logged and the flow
carries on). Optional capabilities are separate protocols, checked with
``missing_capabilities`` / ``require_capabilities``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from .metrics import FlowEvent

__all__ = [
    "RemoteBinding",
    "StateStore",
    "StoredEvent",
    "SupportsConversationBindings",
    "SupportsTraceLifecycle",
    "UnfinishedTrace",
    "missing_capabilities",
    "require_capabilities",
]


@dataclass(slots=True)
class StoredEvent:
    """One flow event as a store keeps it."""

    trace_id: str | None
    """The event's trace, or None."""
    ts: float
    """Wall-clock time of the event (epoch seconds)."""
    kind: str
    """The event type, e.g. ``node_success``."""
    node_name: str | None
    """The node's or endpoint's name."""
    node_id: str | None
    """The node's id, or the endpoint's name."""
    # Event payloads hold user-defined extras of any type.
    payload: Mapping[str, Any]
    """``FlowEvent.to_payload()`` of the event."""

    @classmethod
    def from_flow_event(cls, event: FlowEvent) -> StoredEvent:
        """Build the stored form of ``event``; ``payload`` is a fresh dict."""
        return cls(
            trace_id=event.trace_id,
            ts=event.ts,
            kind=event.event_type,
            node_name=event.node_name,
            node_id=event.node_id,
            payload=event.to_payload(),
        )


@dataclass(slots=True)
class RemoteBinding:
    """Links a trace to a task running on a remote agent."""

    trace_id: str
    """The local trace."""
    context_id: str | None
    """The remote conversation context, if any."""
    task_id: str
    """The remote task."""
    agent_url: str
    """Where the remote agent lives."""
    router_session_id: str | None = None
    """The routing session the binding belongs to."""
    remote_skill: str | None = None
    """The remote skill invoked."""
    tenant_id: str | None = None
    """The tenant, if scoped."""
    user_id: str | None = None
    """The user, if scoped."""
    last_remote_task_id: str | None = None
    """The most recent remote task of this binding."""
    is_terminal: bool = False
    """Whether the remote task has finished."""
    # Free-form adapter data.
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """Anything else the adapter keeps."""


@runtime_checkable
class StateStore(Protocol):
    """Persistence for flow events and remote bindings.

    Implement the three methods, structurally or by subclassing; the default bodies raise
    ``NotImplementedError``.
    """

    async def save_event(self, event: StoredEvent) -> None:
        """Persist one event.

        Raises:
            Exception: anything; the runtime logs ``state_store_save_failed`` and carries on.
        """
        raise NotImplementedError

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        """Return the saved events of a trace, oldest first."""
        raise NotImplementedError

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        """Persist a remote binding.

        Raises:
            Exception: anything; the runtime logs ``state_store_binding_failed``.
        """
        raise NotImplementedError


@runtime_checkable
class SupportsConversationBindings(Protocol):
    """Optional store capability: look up and close remote bindings by conversation."""

    async def find_binding(
        self,
        *,
        router_session_id: str,
        agent_url: str,
        remote_skill: str | None,
        tenant_id: str | None = None,
        user_id: str | None = None,
    ) -> RemoteBinding | None:
        """Return the binding for this session, agent and skill, or None."""
        raise NotImplementedError

    async def list_bindings(self, *, router_session_id: str) -> Sequence[RemoteBinding]:
        """Return every binding of a routing session."""
        raise NotImplementedError

    async def mark_binding_terminal(
        self, *, trace_id: str, context_id: str | None, task_id: str
    ) -> None:
        """Record that a remote task has finished."""
        raise NotImplementedError


class UnfinishedTrace(Protocol):
    """What ``SupportsTraceLifecycle.unfinished_traces`` returns for each trace."""

    @property
    def trace_id(self) -> str:
        """The trace's id."""
        raise NotImplementedError

    @property
    def input_json(self) -> str:
        """The JSON of the ``Message`` that started the trace."""
        raise NotImplementedError


@runtime_checkable
class SupportsTraceLifecycle(Protocol):
    """Optional store capability (beyond the contract): the trace journal for recovery.

    A flow whose store has it records each trace's input message when the trace enters and
    how it ended; ``PenguiFlow.recover()`` drives again the traces that never ended.
    """

    async def save_trace_start(self, trace_id: str, message_json: str, *, flow_key: str) -> None:
        """Record that a trace started (again) with this input, as ``running``."""
        raise NotImplementedError

    async def save_trace_end(self, trace_id: str, status: str) -> None:
        """Record how a trace ended: ``finished``, ``cancelled`` or ``failed``."""
        raise NotImplementedError

    async def unfinished_traces(self, flow_key: str) -> Sequence[UnfinishedTrace]:
        """Return the flow's traces still ``running``, oldest first."""
        raise NotImplementedError


def missing_capabilities(store: object, methods: Iterable[str]) -> list[str]:
    """Return the names in ``methods`` that ``store`` does not have, in order."""
    return [name for name in methods if not hasattr(store, name)]


def require_capabilities(store: object, *, feature: str, methods: Iterable[str]) -> None:
    """Check that ``store`` has every method a feature needs.

    Raises:
        TypeError: some are missing; the message lists them and names the feature.
    """
    missing = missing_capabilities(store, methods)
    if missing:
        raise TypeError(f"StateStore missing {missing} required for feature={feature}")
