"""Small flows for the ``penguiflow`` command's tests, named as ``tests/cli/flows.py:ATTR``."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel

from penguiflow import Message, ModelRegistry, Node, NodePolicy, PenguiFlow, create

NO_VALIDATION = NodePolicy(validate="none")


async def double(message: Message, _ctx: Any) -> Message:
    """Doubles a number; fails on a negative one (no retries)."""
    value = message.payload
    if isinstance(value, int | float) and value < 0:
        raise ValueError(f"negative: {value}")
    return message.model_copy(update={"payload": value * 2})


async def describe(message: Message, _ctx: Any) -> Message:
    return message.model_copy(update={"payload": {"value": message.payload}})


def chain() -> PenguiFlow:
    """double -> describe: ``{"value": 2 * x}`` for each x; fails for x < 0."""
    first = Node(double, name="double", policy=NO_VALIDATION)
    second = Node(describe, name="describe", policy=NO_VALIDATION)
    return create(first.to(second), second.to())


flow = chain()
"""A flow object, as a module would define one."""


def reporting() -> PenguiFlow:
    """``chain`` that delivers its failures to the Rookery as ``FlowError`` items."""
    first = Node(double, name="double", policy=NO_VALIDATION)
    second = Node(describe, name="describe", policy=NO_VALIDATION)
    return create(first.to(second), second.to(), emit_errors_to_rookery=True)


async def keep_even(message: Message, _ctx: Any) -> Message | None:
    """Drops odd numbers (delivers nothing for them)."""
    return message if message.payload % 2 == 0 else None


async def split(message: Message, ctx: Any) -> None:
    """Delivers each word of the payload as a result of its own."""
    for word in str(message.payload).split():
        await ctx.emit(message.model_copy(update={"payload": word}))


async def shout(message: Message, _ctx: Any) -> str:
    """Returns a bare string (no trace id of its own)."""
    return str(message.payload).upper()


def filtering() -> PenguiFlow:
    return create(Node(keep_even, name="keep_even", policy=NO_VALIDATION).to())


def splitting() -> PenguiFlow:
    return create(Node(split, name="split", policy=NO_VALIDATION).to())


def bare() -> PenguiFlow:
    return create(Node(shout, name="shout", policy=NO_VALIDATION).to())


def two_entries() -> PenguiFlow:
    """Two ingress nodes: ``double`` and ``shout``."""
    return create(
        Node(double, name="double", policy=NO_VALIDATION).to(),
        Node(shout, name="shout", policy=NO_VALIDATION).to(),
    )


class Question(BaseModel):
    text: str


class Answer(BaseModel):
    text: str
    words: int


async def answer(question: Question, _ctx: Any) -> Answer:
    if not question.text:
        raise ValueError("empty question")
    return Answer(text=question.text.upper(), words=len(question.text.split()))


def typed() -> tuple[PenguiFlow, ModelRegistry]:
    """One node with a registry: input lines are validated as ``Question``."""
    registry = ModelRegistry()
    registry.register("answer", Question, Answer)
    return create(Node(answer, name="answer").to()), registry


class Job(BaseModel):
    trace_id: str | None = None
    size: int


class Done(BaseModel):
    size: int


async def work(job: Job, _ctx: Any) -> Done:
    await asyncio.sleep(0)
    return Done(size=job.size)


def traced_models() -> tuple[PenguiFlow, ModelRegistry]:
    """An entry model with a ``trace_id`` field: lines run concurrently, by trace."""
    registry = ModelRegistry()
    registry.register("work", Job, Done)
    return create(Node(work, name="work").to()), registry


def not_a_flow() -> int:
    return 42


def broken() -> PenguiFlow:
    raise RuntimeError("cannot build")


def unregistered() -> tuple[PenguiFlow, ModelRegistry]:
    """A validating node the registry lacks: the flow refuses to run."""
    return create(Node(answer, name="answer").to(), Node(work, name="work").to()), _only_answer()


def _only_answer() -> ModelRegistry:
    registry = ModelRegistry()
    registry.register("answer", Question, Answer)
    return registry


async def cancel_own_trace(message: Message, ctx: Any) -> Message:
    """Cancels the trace of the message it holds (its caller is told: TraceCancelled)."""
    await ctx.runtime.cancel(message.trace_id)
    return message


def cancelling() -> PenguiFlow:
    return create(Node(cancel_own_trace, name="cancel", policy=NO_VALIDATION).to())


def two_typed() -> tuple[PenguiFlow, ModelRegistry]:
    """Two entry nodes, both registered: input needs ``--to`` to pick a model."""
    registry = ModelRegistry()
    registry.register("answer", Question, Answer)
    registry.register("work", Job, Done)
    return create(Node(answer, name="answer").to(), Node(work, name="work").to()), registry


def stored() -> PenguiFlow:
    """A flow built with a store of its own (not opened)."""
    from penguiflow.stores import MemoryStore

    return create(Node(double, name="double", policy=NO_VALIDATION).to(), state_store=MemoryStore())


def hide_negatives(text: str) -> str:
    """A redaction for ``--redact``: every ``negative`` becomes ``[redacted]``."""
    return text.replace("negative", "[redacted]")


def broken_redaction(text: str) -> str:
    """A redaction that fails: what it was to hide must not be shown."""
    raise RuntimeError("no")
