from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

import penguiflow.state as state
from penguiflow.metrics import FlowEvent
from penguiflow.state import (
    RemoteBinding,
    StateStore,
    StoredEvent,
    SupportsConversationBindings,
    missing_capabilities,
    require_capabilities,
)

if TYPE_CHECKING:
    from collections.abc import Sequence


def make_event(**overrides: Any) -> FlowEvent:
    fields: dict[str, Any] = {
        "event_type": "node_success",
        "ts": 3.5,
        "node_name": "n",
        "node_id": "nid",
        "trace_id": "t",
        "attempt": 0,
        "latency_ms": 1.0,
        "queue_depth_in": 0,
        "queue_depth_out": 1,
        "outgoing_edges": 1,
        "queue_maxsize": 64,
        "trace_pending": 2,
        "trace_inflight": 1,
        "trace_cancelled": False,
        "extra": {"k": "v"},
    }
    fields.update(overrides)
    return FlowEvent(**fields)


def test_stored_event_fields_and_slots() -> None:
    names = [f.name for f in dataclasses.fields(StoredEvent)]
    assert names == ["trace_id", "ts", "kind", "node_name", "node_id", "payload"]
    ev = StoredEvent("t", 1.0, "k", None, None, {})
    assert not hasattr(ev, "__dict__")


def test_stored_event_from_flow_event() -> None:
    event = make_event()
    stored = StoredEvent.from_flow_event(event)
    assert stored.trace_id == "t"
    assert stored.ts == 3.5
    assert stored.kind == "node_success"
    assert stored.node_name == "n"
    assert stored.node_id == "nid"
    assert stored.payload == event.to_payload()
    assert stored.payload["k"] == "v"


def test_stored_event_from_traceless_event() -> None:
    stored = StoredEvent.from_flow_event(
        make_event(event_type="node_cancelled", trace_id=None, trace_pending=None)
    )
    assert stored.trace_id is None
    assert stored.kind == "node_cancelled"
    assert "trace_pending" not in stored.payload


def test_remote_binding_required_and_optional_fields() -> None:
    fields = {f.name: f for f in dataclasses.fields(RemoteBinding)}
    assert list(fields) == [
        "trace_id",
        "context_id",
        "task_id",
        "agent_url",
        "router_session_id",
        "remote_skill",
        "tenant_id",
        "user_id",
        "last_remote_task_id",
        "is_terminal",
        "metadata",
    ]
    binding = RemoteBinding("t", None, "task", "http://agent")
    assert binding.router_session_id is None
    assert binding.remote_skill is None
    assert binding.tenant_id is None
    assert binding.user_id is None
    assert binding.last_remote_task_id is None
    assert binding.is_terminal is False
    assert binding.metadata == {}
    other = RemoteBinding("t", None, "task", "http://agent")
    assert binding.metadata is not other.metadata
    assert not hasattr(binding, "__dict__")
    with pytest.raises(TypeError):
        RemoteBinding("t", None, "task")  # type: ignore[call-arg]


class MemoryStore:
    def __init__(self) -> None:
        self.events: list[StoredEvent] = []
        self.bindings: list[RemoteBinding] = []

    async def save_event(self, event: StoredEvent) -> None:
        self.events.append(event)

    async def load_history(self, trace_id: str) -> Sequence[StoredEvent]:
        return [e for e in self.events if e.trace_id == trace_id]

    async def save_remote_binding(self, binding: RemoteBinding) -> None:
        self.bindings.append(binding)


async def test_state_store_is_runtime_checkable_and_structural() -> None:
    store = MemoryStore()
    assert isinstance(store, StateStore)
    assert not isinstance(object(), StateStore)
    typed: StateStore = store
    await typed.save_event(StoredEvent.from_flow_event(make_event()))
    history = await typed.load_history("t")
    assert [e.kind for e in history] == ["node_success"]


async def test_state_store_may_be_subclassed_and_defaults_raise() -> None:
    class Partial(StateStore):
        async def save_event(self, event: StoredEvent) -> None:
            return None

    store = Partial()
    assert isinstance(store, StateStore)
    await store.save_event(StoredEvent("t", 0.0, "k", None, None, {}))
    with pytest.raises(NotImplementedError):
        await store.load_history("t")
    with pytest.raises(NotImplementedError):
        await store.save_remote_binding(RemoteBinding("t", None, "x", "u"))


def test_supports_conversation_bindings_protocol() -> None:
    class BindingStore(MemoryStore):
        async def find_binding(
            self,
            *,
            router_session_id: str,
            agent_url: str,
            remote_skill: str | None,
            tenant_id: str | None = None,
            user_id: str | None = None,
        ) -> RemoteBinding | None:
            return None

        async def list_bindings(self, *, router_session_id: str) -> Sequence[RemoteBinding]:
            return []

        async def mark_binding_terminal(
            self, *, trace_id: str, context_id: str | None, task_id: str
        ) -> None:
            return None

    assert isinstance(BindingStore(), SupportsConversationBindings)
    assert not isinstance(MemoryStore(), SupportsConversationBindings)


def test_missing_capabilities_lists_names_failing_hasattr_in_order() -> None:
    store = MemoryStore()
    methods = ["save_event", "find_binding", "load_history", "list_bindings"]
    assert missing_capabilities(store, methods) == ["find_binding", "list_bindings"]
    assert missing_capabilities(store, iter(["save_event"])) == []


def test_require_capabilities_error_text() -> None:
    store = MemoryStore()
    require_capabilities(store, feature="history", methods=["load_history"])
    with pytest.raises(TypeError) as excinfo:
        require_capabilities(store, feature="bindings", methods=["find_binding", "save_event"])
    assert str(excinfo.value) == "StateStore missing ['find_binding'] required for feature=bindings"


def test_all_lists_public_names() -> None:
    assert set(state.__all__) == {
        "StateStore",
        "StoredEvent",
        "RemoteBinding",
        "SupportsConversationBindings",
        "missing_capabilities",
        "require_capabilities",
        # Beyond the contract: the trace journal capability used for crash recovery.
        "SupportsTraceLifecycle",
        "UnfinishedTrace",
    }


def test_import_pulls_in_nothing_out_of_scope() -> None:
    code = (
        "import sys, penguiflow.state;"
        "bad = [m for m in sys.modules if m.startswith('penguiflow') and m not in "
        "{'penguiflow', 'penguiflow.state', 'penguiflow.metrics', 'penguiflow.types', "
        "'penguiflow.errors', 'penguiflow.node', 'penguiflow.registry'}];"
        "print(','.join(sorted(bad)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    # penguiflow/__init__ may import the public package surface; nothing beyond it.
    for name in out.split(",") if out else []:
        assert not any(
            word in name for word in ("planner", "catalog", "remote", "session", "cli", "a2a")
        ), name
