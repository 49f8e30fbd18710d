"""PenguiFlow: a typed, bounded, observable asyncio runtime for agent and data pipelines."""

from __future__ import annotations

from . import testkit as testkit
from .bus import BusEnvelope, MessageBus
from .core import (
    DEFAULT_QUEUE_MAXSIZE,
    Context,
    CycleError,
    PenguiFlow,
    call_playbook,
    create,
)
from .debug import format_flow_event
from .errors import FlowError, FlowErrorCode
from .logging import ExtraFormatter, StructuredFormatter, configure_logging
from .metrics import FlowEvent
from .middlewares import LatencyCallback, Middleware, log_flow_events
from .node import Node, NodePolicy
from .patterns import join_k, map_concurrent, predicate_router, union_router
from .policies import DictRoutingPolicy, RoutingPolicy, RoutingRequest
from .registry import ModelRegistry
from .state import RemoteBinding, StateStore, StoredEvent, SupportsConversationBindings
from .streaming import chunk_to_ws_json, emit_stream_events, format_sse_event, stream_flow
from .types import WM, FinalAnswer, Headers, Message, PlanStep, StreamChunk, Thought
from .viz import flow_to_dot, flow_to_mermaid

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_QUEUE_MAXSIZE",
    "WM",
    "BusEnvelope",
    "Context",
    "CycleError",
    "DictRoutingPolicy",
    "ExtraFormatter",
    "FinalAnswer",
    "FlowError",
    "FlowErrorCode",
    "FlowEvent",
    "Headers",
    "LatencyCallback",
    "Message",
    "MessageBus",
    "Middleware",
    "ModelRegistry",
    "Node",
    "NodePolicy",
    "PenguiFlow",
    "PlanStep",
    "RemoteBinding",
    "RoutingPolicy",
    "RoutingRequest",
    "StateStore",
    "StoredEvent",
    "StreamChunk",
    "StructuredFormatter",
    "SupportsConversationBindings",
    "Thought",
    "__version__",
    "call_playbook",
    "chunk_to_ws_json",
    "configure_logging",
    "create",
    "emit_stream_events",
    "flow_to_dot",
    "flow_to_mermaid",
    "format_flow_event",
    "format_sse_event",
    "join_k",
    "log_flow_events",
    "map_concurrent",
    "predicate_router",
    "stream_flow",
    "testkit",
    "union_router",
]
