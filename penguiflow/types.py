"""Message envelopes and the controller-loop payload models.

Every model here is a plain pydantic v2 ``BaseModel`` with the default configuration: mutable,
unknown keys ignored, equality by fields.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, Field

__all__ = ["Headers", "Message", "StreamChunk", "PlanStep", "Thought", "WM", "FinalAnswer"]  # noqa: RUF022 - spec order


def _new_trace_id() -> str:
    return uuid.uuid4().hex


class Headers(BaseModel):
    """Routing metadata that travels with a message unchanged from hop to hop."""

    tenant: str
    topic: str | None = None
    priority: int = 0


class Message(BaseModel):
    """The envelope the runtime moves between nodes.

    ``deadline_s`` is an absolute wall-clock time (epoch seconds); a message read by a worker
    after that time is answered with a ``FinalAnswer`` instead of being processed.
    """

    # A user payload can be anything a node understands; the runtime never inspects it except
    # for the WM / FinalAnswer / StreamChunk cases, which it narrows with isinstance.
    payload: Any
    headers: Headers
    trace_id: str = Field(default_factory=_new_trace_id)
    ts: float = Field(default_factory=time.time)
    deadline_s: float | None = None
    meta: dict[str, Any] = Field(default_factory=dict)


class StreamChunk(BaseModel):
    """One piece of a streamed answer; ``seq`` counts from 0 within a stream."""

    stream_id: str
    seq: int
    text: str
    done: bool = False
    meta: dict[str, Any] = Field(default_factory=dict)


class PlanStep(BaseModel):
    """One step of a controller's plan."""

    kind: Literal["retrieve", "web", "sql", "summarize", "route", "stop"]
    args: dict[str, Any] = Field(default_factory=dict)
    max_concurrency: int = 1


class Thought(BaseModel):
    """A controller's plan with its rationale."""

    steps: list[PlanStep]
    rationale: str
    done: bool = False


class WM(BaseModel):
    """Working memory of a controller loop, with its hop and token budgets."""

    query: str
    facts: list[Any] = Field(default_factory=list)
    hops: int = 0
    budget_hops: int | None = 8
    tokens_used: int = 0
    budget_tokens: int | None = None
    confidence: float = 0.0


class FinalAnswer(BaseModel):
    """The terminal answer of a controller loop; it bypasses successors and goes to the Rookery."""

    text: str
    citations: list[str] = Field(default_factory=list)
