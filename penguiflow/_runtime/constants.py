"""Texts and defaults fixed by the public contract, kept in one place (event kinds: ``_events``)."""

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
NO_NODES: Final = (
    "PenguiFlow has no nodes, so nothing would receive what is emitted: build it from "
    "adjacencies, e.g. create(a.to(b), b.to())"
)
OTHER_LOOP: Final = (
    "PenguiFlow is running in another event loop: a flow belongs to the loop it was run() "
    "in; stop() it there, or build a new flow for this loop"
)
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
