"""Spec section 2: the message and controller-loop models in ``penguiflow.types``."""

from __future__ import annotations

import time

import pydantic
import pytest

import penguiflow
from penguiflow import types
from penguiflow.types import WM, FinalAnswer, Headers, Message, PlanStep, StreamChunk, Thought

TABLE_ORDER = ["Headers", "Message", "StreamChunk", "PlanStep", "Thought", "WM", "FinalAnswer"]


def test_all_lists_the_seven_models_in_table_order() -> None:
    assert types.__all__ == TABLE_ORDER


@pytest.mark.parametrize("name", TABLE_ORDER)
def test_models_are_reexported_from_the_package(name: str) -> None:
    assert getattr(penguiflow, name) is getattr(types, name)
    assert issubclass(getattr(types, name), pydantic.BaseModel)


def test_headers_defaults_and_required_tenant() -> None:
    h = Headers(tenant="acme")
    assert (h.tenant, h.topic, h.priority) == ("acme", None, 0)
    with pytest.raises(pydantic.ValidationError):
        Headers()  # type: ignore[call-arg]


def test_message_defaults() -> None:
    before = time.time()
    m = Message(payload={"a": 1}, headers=Headers(tenant="t"))
    after = time.time()
    assert isinstance(m.trace_id, str)
    assert len(m.trace_id) == 32
    int(m.trace_id, 16)  # a uuid4 hex
    assert before <= m.ts <= after
    assert m.deadline_s is None
    assert m.meta == {}


def test_message_requires_payload_and_headers() -> None:
    with pytest.raises(pydantic.ValidationError):
        Message(headers=Headers(tenant="t"))  # type: ignore[call-arg]
    with pytest.raises(pydantic.ValidationError):
        Message(payload=1)  # type: ignore[call-arg]


def test_messages_in_sequence_get_fresh_trace_ids_increasing_ts_and_own_meta() -> None:
    a = Message(payload=1, headers=Headers(tenant="t"))
    b = Message(payload=1, headers=Headers(tenant="t"))
    assert a.trace_id != b.trace_id
    assert a.ts < b.ts
    a.meta["k"] = "v"
    assert b.meta == {}


def test_models_are_mutable_ignore_unknown_keys_and_compare_by_fields() -> None:
    h = Headers(tenant="t", unknown="x")  # type: ignore[call-arg]
    assert not hasattr(h, "unknown")
    h.priority = 5
    assert h.priority == 5
    assert Headers(tenant="t", priority=5) == h
    assert Headers(tenant="t") != h
    m1 = Message(payload=1, headers=Headers(tenant="t"), trace_id="x", ts=1.0)
    m2 = Message(payload=1, headers=Headers(tenant="t"), trace_id="x", ts=1.0)
    assert m1 == m2
    m2.payload = 2
    assert m1 != m2


def test_stream_chunk_defaults_and_no_trace_id() -> None:
    c = StreamChunk(stream_id="s", seq=0, text="hi")
    assert (c.done, c.meta) == (False, {})
    assert not hasattr(c, "trace_id")
    other = StreamChunk(stream_id="s", seq=1, text="x")
    c.meta["k"] = 1
    assert other.meta == {}
    with pytest.raises(pydantic.ValidationError):
        StreamChunk(stream_id="s", seq=0)  # type: ignore[call-arg]


@pytest.mark.parametrize("kind", ["retrieve", "web", "sql", "summarize", "route", "stop"])
def test_plan_step_accepts_each_kind(kind: str) -> None:
    step = PlanStep(kind=kind)  # type: ignore[arg-type]
    assert (step.kind, step.args, step.max_concurrency) == (kind, {}, 1)


def test_plan_step_rejects_other_kinds() -> None:
    with pytest.raises(pydantic.ValidationError):
        PlanStep(kind="fly")  # type: ignore[arg-type]


def test_thought_defaults() -> None:
    t = Thought(steps=[PlanStep(kind="web")], rationale="why")
    assert t.done is False
    assert t.steps == [PlanStep(kind="web")]
    with pytest.raises(pydantic.ValidationError):
        Thought(steps=[])  # type: ignore[call-arg]


def test_wm_defaults() -> None:
    wm = WM(query="q")
    assert wm.facts == []
    assert (wm.hops, wm.budget_hops, wm.tokens_used, wm.budget_tokens, wm.confidence) == (
        0,
        8,
        0,
        None,
        0.0,
    )
    assert WM(query="q").facts is not wm.facts
    with pytest.raises(pydantic.ValidationError):
        WM()  # type: ignore[call-arg]


def test_final_answer_defaults() -> None:
    fa = FinalAnswer(text="done")
    assert fa.citations == []
    assert FinalAnswer(text="x").citations is not fa.citations
    with pytest.raises(pydantic.ValidationError):
        FinalAnswer()  # type: ignore[call-arg]
