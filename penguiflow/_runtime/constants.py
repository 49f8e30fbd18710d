"""Texts, event names and defaults fixed by the public contract, kept in one place."""

from __future__ import annotations

import logging
from typing import Final

DEFAULT_QUEUE_MAXSIZE: Final = 64

BUDGET_EXCEEDED_TEXT: Final = "Hop budget exhausted"
DEADLINE_EXCEEDED_TEXT: Final = "Deadline exceeded"
TOKEN_BUDGET_EXCEEDED_TEXT: Final = "Token budget exhausted"

LOGGER_NAME: Final = "penguiflow.core"
logger: Final = logging.getLogger(LOGGER_NAME)

# Error texts.
NOT_ATTACHED: Final = "Context is not attached to a running flow"
NOT_RUNNING: Final = "PenguiFlow is not running"
ALREADY_RUNNING: Final = "PenguiFlow already running"
NO_INCOMING: Final = "context has no incoming floes to fetch from"
CYCLE: Final = "Flow contains a cycle; enable allow_cycles to bypass"
NO_STATE_STORE: Final = "PenguiFlow was created without a state_store"
EMIT_NOWAIT_TRACE: Final = (
    "emit_nowait(trace_id=...) is not supported; use await emit(..., trace_id=...)"
)
EMIT_TRACE_TYPE: Final = "emit(trace_id=...) requires a Message (or object with writable .trace_id)"
FETCH_TRACE_FROM: Final = "fetch(trace_id=...) does not support from_ filtering"
FETCH_FROM_DISPATCH: Final = (
    "fetch(from_=...) is not supported once trace-scoped fetching is enabled"
)

# Event names.
NODE_START: Final = "node_start"
NODE_SUCCESS: Final = "node_success"
NODE_ERROR: Final = "node_error"
NODE_TIMEOUT: Final = "node_timeout"
NODE_RETRY: Final = "node_retry"
NODE_FAILED: Final = "node_failed"
NODE_CANCELLED: Final = "node_cancelled"
NODE_TRACE_CANCELLED: Final = "node_trace_cancelled"
DEADLINE_SKIP: Final = "deadline_skip"
TRACE_CANCEL_DROP: Final = "trace_cancel_drop"
TRACE_CANCEL_START: Final = "trace_cancel_start"
TRACE_CANCEL_FINISH: Final = "trace_cancel_finish"
# Beyond the contract: items discarded because the flow stopped with them still queued, and a
# worker restarted after a runtime fault.
FLOE_DRAINED: Final = "floe_drained"
WORKER_RESTARTED: Final = "worker_restarted"
# Circuit breaker transitions (opt-in per node).
CIRCUIT_OPEN: Final = "circuit_open"
CIRCUIT_HALF_OPEN: Final = "circuit_half_open"
CIRCUIT_CLOSED: Final = "circuit_closed"

EVENT_LEVELS: Final[dict[str, int]] = {
    NODE_START: logging.DEBUG,
    NODE_SUCCESS: logging.INFO,
    NODE_ERROR: logging.ERROR,
    NODE_TIMEOUT: logging.WARNING,
    NODE_RETRY: logging.INFO,
    NODE_FAILED: logging.ERROR,
    NODE_CANCELLED: logging.DEBUG,
    NODE_TRACE_CANCELLED: logging.INFO,
    DEADLINE_SKIP: logging.INFO,
    TRACE_CANCEL_DROP: logging.INFO,
    TRACE_CANCEL_START: logging.INFO,
    TRACE_CANCEL_FINISH: logging.INFO,
    FLOE_DRAINED: logging.WARNING,
    WORKER_RESTARTED: logging.ERROR,
    CIRCUIT_OPEN: logging.WARNING,
    CIRCUIT_HALF_OPEN: logging.INFO,
    CIRCUIT_CLOSED: logging.INFO,
}
